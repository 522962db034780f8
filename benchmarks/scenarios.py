"""The six scenarios: which stacks run, at what sizes, and how the runs are driven.

Each measurement is one worker process (``benchmarks.worker``). The runs of a
scenario go round-robin over its rows (run 1 of every row, then run 2, ...),
so that a change in the machine's load during the scenario touches every
stack alike instead of spoiling one stack's figures. A fresh bench server is
started for each scenario.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .server import ServerProcess, fd_limit
from .stacks import LABELS, missing_packages

__all__ = [
    "FULL",
    "QUICK",
    "SCENARIOS",
    "Row",
    "Sizes",
    "build_rows",
    "import_top",
    "run_import",
    "run_rows",
    "run_worker",
]

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("throughput", "latency", "concurrency", "long", "gateway", "import")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each scenario is (``FULL`` for figures, ``QUICK`` for the smoke test)."""

    throughput_pieces: int
    openai_pieces: int  # the openai stack is ~50x slower: a tenth of the pieces, same rate
    latency_calls: int
    latency_warmup: int
    levels: tuple[int, ...]  # concurrent streams
    reference_level: int  # the level the aiohttp and naive-httpx references run at
    quadratic_level: int  # the level that once showed the pool's quadratic cost (5,000)
    scale_level: int  # the top level: wall time grows at most linearly up to it (10,000)
    stream_pieces: int  # pieces per concurrent stream
    reference_cap: float  # seconds before a reference run is stopped ("> cap")
    sdk_cap: float
    long_pieces: int
    sample_every: int
    gateway_pieces: int  # the one stream through the gateway (and the SDK direct)
    gateway_streams: int  # concurrent streaming clients of the gateway
    runs: dict[str, int]
    worker_timeout: float  # a worker that has not answered by then has hung: a crash


FULL = Sizes(
    throughput_pieces=200_000,
    openai_pieces=20_000,
    latency_calls=200,
    latency_warmup=20,
    levels=(100, 1000, 5000, 10_000),
    reference_level=1000,
    quadratic_level=5000,
    scale_level=10_000,
    stream_pieces=1000,
    reference_cap=120.0,
    sdk_cap=300.0,
    long_pieces=1_000_000,
    sample_every=100_000,
    gateway_pieces=200_000,
    gateway_streams=1000,
    runs={
        "throughput": 5,
        "latency": 5,
        "concurrency": 3,
        "long": 3,
        "gateway": 3,
        "import": 10,
    },
    worker_timeout=600.0,
)

QUICK = Sizes(
    throughput_pieces=3000,
    openai_pieces=300,
    latency_calls=5,
    latency_warmup=1,
    levels=(5, 20, 50, 100),
    reference_level=20,
    quadratic_level=50,
    scale_level=100,
    stream_pieces=50,
    reference_cap=20.0,
    sdk_cap=20.0,
    long_pieces=20_000,
    sample_every=5_000,
    gateway_pieces=2000,
    gateway_streams=20,
    runs={"throughput": 1, "latency": 1, "concurrency": 1, "long": 1, "gateway": 1, "import": 1},
    worker_timeout=60.0,
)


@dataclasses.dataclass
class Row:
    """One line of a scenario's table: a stack, its settings, and its runs' results."""

    key: str
    label: str
    spec: dict[str, Any]
    cap: float | None = None
    skip: str | None = None
    max_runs: int | None = None  # fewer runs than the scenario's: a slow row no target needs
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    crashed: list[str] = dataclasses.field(default_factory=list)
    capped: bool = False
    profile: str | None = None

    def median(self, name: str) -> float | None:
        values = [r[name] for r in self.results if r.get(name) is not None]
        return statistics.median(values) if values else None

    def spread(self, name: str) -> tuple[float, float] | None:
        values = [r[name] for r in self.results if r.get(name) is not None]
        return (min(values), max(values)) if values else None


def _sdk_parser_label(parser: str) -> str:
    if parser == "stdlib":
        return "json (orjson blocked)"
    return "orjson" if importlib.util.find_spec("orjson") else "json (orjson absent)"


#: Descriptors a process needs besides one per connection (interpreter, pipes, epoll, ...).
FD_MARGIN = 200


def fd_need(stack: str, streams: int) -> int:
    """Open files the busiest process of a measurement of ``streams`` streams needs.

    One per connection in the worker and in the bench server (which raises its own limit
    the same way); the gateway holds two per stream (its client's and its upstream).
    """
    return streams * (2 if stack == "gateway" else 1) + FD_MARGIN


def _row(key: str, stack: str, label: str, spec: dict[str, Any], **kwargs: Any) -> Row:
    parser = spec.get("parser", "stdlib")
    backend = spec.get("backend") or "asyncio"
    check_parser = "orjson" if (stack.startswith("floor") and parser == "orjson") else "stdlib"
    missing = missing_packages(stack, check_parser, backend)
    skip = f"skipped: {', '.join(missing)} not installed" if missing else None
    streams = spec.get("streams", 0)
    if skip is None and streams and fd_need(stack, streams) > fd_limit():
        skip = (
            f"skipped: {streams:,} streams need about {fd_need(stack, streams):,} open files, "
            f"the limit is {fd_limit():,} and this process may not raise it further (see the "
            "header; a higher hard limit, e.g. `ulimit -Hn` as root, lets it run)"
        )
    return Row(key, label, {"stack": stack, **spec}, skip=skip, **kwargs)


def build_rows(scenario: str, sizes: Sizes) -> list[Row]:
    """The rows of ``scenario``: the SDK's and the references', in table order."""
    rows: list[Row] = []
    has_orjson = importlib.util.find_spec("orjson") is not None
    if scenario == "throughput":
        common = {"scenario": "throughput", "pieces": sizes.throughput_pieces, "warm_pieces": 100}
        rows += [
            _row("floor", "floor", LABELS["floor"], {**common, "parser": "stdlib"}),
            _row("floor-orjson", "floor", LABELS["floor-orjson"], {**common, "parser": "orjson"}),
        ]
        for stack, backend in (("sdk-sync", None), ("sdk-async", "asyncio"), ("sdk-async", "trio")):
            where = "" if backend is None else f" ({backend})"
            parsers = ("stdlib", "default") if backend != "trio" else ("default",)
            for parser in parsers:
                key = f"{stack}{'-trio' if backend == 'trio' else ''}+{parser}"
                label = f"{LABELS[stack]}{where}, {_sdk_parser_label(parser)}"
                row = _row(key, stack, label, {**common, "parser": parser, "backend": backend})
                if parser == "default" and not has_orjson and row.skip is None:
                    row.skip = "skipped: orjson not installed (the stdlib row is the SDK)"
                rows.append(row)
        rows += [
            _row("original", "original", LABELS["original"], {**common, "backend": "asyncio"}),
            _row("httpx-sync", "httpx-sync", LABELS["httpx-sync"], common),
            _row(
                "httpx-async",
                "httpx-async",
                LABELS["httpx-async"] + " (asyncio)",
                {**common, "backend": "asyncio"},
            ),
            _row(
                "aiohttp",
                "aiohttp",
                LABELS["aiohttp"] + ", lines + json.loads",
                {**common, "backend": "asyncio", "parser": "stdlib"},
            ),
            _row(
                "openai",
                "openai",
                LABELS["openai"],
                {**common, "pieces": sizes.openai_pieces},
            ),
        ]
    elif scenario == "latency":
        common = {
            "scenario": "latency",
            "calls": sizes.latency_calls,
            "warmup": sizes.latency_warmup,
            "parser": "default",
        }
        rows += [
            _row("sdk-sync", "sdk-sync", LABELS["sdk-sync"] + " (warm client)", common),
            _row("floor-1req", "floor-1req", LABELS["floor-1req"], {**common, "parser": "stdlib"}),
            _row(
                "httpx-sync",
                "httpx-sync",
                "bare httpx.Client POST, same headers (warm client)",
                common,
            ),
            _row(
                "sdk-async",
                "sdk-async",
                LABELS["sdk-async"] + " (asyncio, warm client)",
                {**common, "backend": "asyncio"},
            ),
            _row(
                "aiohttp",
                "aiohttp",
                LABELS["aiohttp"] + " (the async reference)",
                {**common, "backend": "asyncio", "parser": "stdlib"},
            ),
            _row(
                "httpx-async",
                "httpx-async",
                "bare httpx.AsyncClient POST, same headers (asyncio, warm client)",
                {**common, "backend": "asyncio"},
            ),
            _row(
                "sdk-async-trio",
                "sdk-async",
                LABELS["sdk-async"] + " (trio, warm client)",
                {**common, "backend": "trio"},
            ),
            _row(
                "original",
                "original",
                "original provider's way (aiohttp: new session + token per call)",
                {**common, "backend": "asyncio", "parser": "stdlib"},
            ),
            _row(
                "floor",
                "floor",
                "raw socket, token + chat per call, one kept-alive socket",
                {**common, "parser": "stdlib"},
            ),
        ]
    elif scenario == "concurrency":
        common = {
            "scenario": "concurrency",
            "pieces": sizes.stream_pieces,
            "warm_pieces": 10,
            "parser": "default",
        }
        for level in sizes.levels:
            for backend in ("asyncio", "trio"):
                spec = {**common, "streams": level, "backend": backend, "cap": sizes.sdk_cap}
                label = f"SDK, one AsyncClient ({backend})"
                rows.append(
                    _row(f"sdk-{backend}@{level}", "sdk-async", label, spec, cap=sizes.sdk_cap)
                )
        level, cap = sizes.reference_level, sizes.reference_cap
        spec = {**common, "streams": level, "backend": "asyncio", "cap": cap, "parser": "stdlib"}
        rows += [
            _row(f"original@{level}", "original", LABELS["original"], spec, cap=cap),
            _row(f"aiohttp@{level}", "aiohttp", LABELS["aiohttp"], spec, cap=cap),
            # ~25-40 s a run and no target depends on it: one run keeps the full bench short.
            _row(
                f"httpx-naive@{level}",
                "httpx-naive",
                LABELS["httpx-naive"],
                spec,
                cap=cap,
                max_runs=1,
            ),
        ]
    elif scenario == "long":
        common = {
            "scenario": "long",
            "pieces": sizes.long_pieces,
            "warm_pieces": 100,
            "sample_every": sizes.sample_every,
            "parser": "default",
        }
        rows += [
            _row("sdk-sync", "sdk-sync", LABELS["sdk-sync"], common),
            _row(
                "sdk-async",
                "sdk-async",
                LABELS["sdk-async"] + " (asyncio)",
                {**common, "backend": "asyncio"},
            ),
            _row(
                "floor",
                "floor",
                LABELS["floor"] + " (keeps no text)",
                {**common, "parser": "stdlib"},
            ),
        ]
    elif scenario == "gateway":
        rows += _gateway_rows(sizes)
    else:
        raise ValueError(f"no such scenario: {scenario}")
    for row in rows:
        row.spec.setdefault("backend", None)
    return rows


def _gateway_rows(sizes: Sizes) -> list[Row]:
    """The SDK direct and through the gateway: one stream, then many concurrent clients.

    The gateway rows run the worker's throughput and concurrency measurements on the
    ``gateway`` stack (a fresh gateway process per measurement); the SDK rows the same
    measurements on ``AsyncClient`` directly, so that the gateway's cost per piece can be
    set beside the SDK's own. Without Starlette or uvicorn the whole scenario is skipped.
    """
    # uvicorn runs the gateway on uvloop when it is installed: the SDK direct runs on the
    # same event loop, so that the comparison is of the gateway's work, not of the loops.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    one = {
        "scenario": "throughput",
        "pieces": sizes.gateway_pieces,
        "warm_pieces": 100,
        "parser": "default",
        "backend": "asyncio",
        "loop": loop,
    }
    streams = sizes.gateway_streams
    many = {
        "scenario": "concurrency",
        "pieces": sizes.stream_pieces,
        "warm_pieces": 10,
        "parser": "default",
        "backend": "asyncio",
        "streams": streams,
        "cap": sizes.sdk_cap,
        "loop": loop,
    }
    on = "asyncio on uvloop, as the gateway" if loop == "uvloop" else "asyncio, as the gateway"
    direct = f"{LABELS['sdk-async']} direct ({on})"
    rows = [
        _row("sdk", "sdk-async", direct, one),
        _row("gateway", "gateway", LABELS["gateway"], one),
        _row(f"sdk@{streams}", "sdk-async", direct, many, cap=sizes.sdk_cap),
        _row(f"gateway@{streams}", "gateway", LABELS["gateway"], many, cap=sizes.sdk_cap),
    ]
    missing = next((row.skip for row in rows if row.spec["stack"] == "gateway" and row.skip), None)
    if missing and "not installed" in missing:
        for row in rows:  # the SDK rows too: they only exist to be set beside the gateway
            row.skip = missing + " (the gateway extra: pip install -e '.[bench]')"
    return rows


def _env() -> dict[str, str]:
    """The workers' environment: this checkout importable, loopback never proxied."""
    env = {k: v for k, v in os.environ.items() if k != "AICHATONLINE_PROXY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # A proxy from the environment must not carry loopback traffic (httpx honours these).
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, [env.get(name), "127.0.0.1", "localhost"]))
    return env


def run_worker(spec: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run one worker; (its result, "") or (None, why it failed)."""
    argv = [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return None, f"the worker did not finish in {timeout:g} s"
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :]), ""
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
    return None, f"exit code {done.returncode}: {tail}"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(scenario: str, result: dict[str, Any]) -> str:
    if "streams" in result:  # concurrency, and the gateway's many clients
        text = f"{result['seconds']:.2f} s, {result['errors']} errors"
        return text + (" (cap reached)" if result["timed_out"] else "")
    if scenario == "latency":
        return f"p50 {result['p50'] * 1e3:.3f} ms"
    return f"{result['rate']:,.0f} pieces/s"


def run_rows(
    scenario: str,
    rows: list[Row],
    runs: int,
    sizes: Sizes,
    profile_dir: Path | None = None,
    profiler: str = "cprofile",
) -> None:
    """Measure every row ``runs`` times, round-robin, on a fresh server; then profile."""
    with ServerProcess() as server:
        for run in range(runs):
            for row in rows:
                if row.skip or row.capped or row.crashed:
                    continue
                if row.max_runs is not None and run >= row.max_runs:
                    continue
                spec = {**row.spec, "base_url": server.base_url}
                timeout = sizes.worker_timeout if row.cap is None else row.cap + 60
                started = time.perf_counter()
                result, why = run_worker(spec, timeout)
                took = time.perf_counter() - started
                if result is None:
                    row.crashed.append(why)
                    _progress(f"[{scenario}] run {run + 1}/{runs} {row.key}: CRASH {why}")
                    continue
                if result.get("error"):
                    row.crashed.append(f"wrong answer: {result['error']}")
                row.results.append(result)
                if result.get("timed_out"):
                    row.capped = True  # one run past the cap is enough to know
                _progress(
                    f"[{scenario}] run {run + 1}/{runs} {row.key}: "
                    f"{_summary(scenario, result)} ({took:.1f} s)"
                )
        if profile_dir is not None:
            _profile_rows(scenario, rows, server.base_url, sizes, profile_dir, profiler)


def _profile_rows(
    scenario: str,
    rows: list[Row],
    base_url: str,
    sizes: Sizes,
    profile_dir: Path,
    profiler: str,
) -> None:
    """One extra, profiled run of every SDK row (profilers distort timings: not counted)."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if not row.spec["stack"].startswith("sdk") or row.skip or row.crashed:
            continue
        name = f"{scenario}-{row.key}".replace("@", "-").replace("+", "-")
        path = profile_dir / (name + (".prof" if profiler == "cprofile" else ".txt"))
        spec = {**row.spec, "base_url": base_url, "profile": str(path), "profiler": profiler}
        timeout = sizes.worker_timeout if row.cap is None else row.cap + 60
        result, why = run_worker(spec, timeout)
        if result is None:
            row.profile = f"profiling failed: {why}"
            continue
        text = result.get("profile", "")
        if profiler == "cprofile":
            (profile_dir / (name + ".txt")).write_text(text)
        row.profile = str(path)
        _progress(f"[{scenario}] profiled {row.key} -> {path}")


# -- scenario 5: import time -----------------------------------------------------------

_IMPORT_PROBE = "import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"


def run_import(runs: int, profile_dir: Path | None = None) -> list[Row]:
    """``import aichatonline`` against ``import httpx``, fresh interpreters, interleaved.

    The package loads its names lazily, so ``import aichatonline`` alone may
    import little; the second row is what using the SDK costs (the clients
    import httpx, anyio and tenacity).
    """
    statements = {
        "aichatonline": "import aichatonline",
        "aichatonline-clients": "from aichatonline import AsyncClient, Client",
        "httpx": "import httpx",
    }
    rows = [
        Row(key, statement, {"stack": "import", "statement": statement})
        for key, statement in statements.items()
    ]
    # One unmeasured round first: it writes the bytecode caches a user's second import finds.
    for run in range(runs + 1):
        for row in rows:
            code = _IMPORT_PROBE.format(statement=row.spec["statement"])
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT
            )
            if done.returncode != 0:
                row.crashed.append(done.stderr.strip().splitlines()[-1:][0] if done.stderr else "?")
                continue
            if run:
                row.results.append({"seconds": float(done.stdout.strip())})
        if run:
            _progress(f"[import] run {run}/{runs}")
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        for row in rows:
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", row.spec["statement"]],
                capture_output=True,
                text=True,
                env=_env(),
                cwd=ROOT,
            )
            path = profile_dir / f"import-{row.key}.txt"
            path.write_text(done.stderr)
            row.profile = str(path)
    return rows


def import_top(path: str, count: int = 12) -> list[tuple[int, int, str]]:
    """The largest self times in a ``-X importtime`` log: (self µs, cumulative µs, module)."""
    entries = []
    for line in Path(path).read_text().splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|", 2)
        entries.append((int(self_us), int(cumulative), name.strip()))
    return sorted(entries, reverse=True)[:count]
