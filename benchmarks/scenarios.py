"""The six scenarios: their sizes, and how the runs are driven (the rows: ``rows.py``).

Each measurement is one worker process (``benchmarks.worker``). The runs of a
scenario go round-robin over its rows (run 1 of every row, then run 2, ...),
so that a change in the machine's load during the scenario touches every
stack alike instead of spoiling one stack's figures. A fresh bench server is
started for each scenario.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .server import ServerProcess

__all__ = [
    "FULL",
    "QUICK",
    "SCENARIOS",
    "Row",
    "Sizes",
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
