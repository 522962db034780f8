"""``python -m benchmarks soak --gateway``: the OpenAI-compatible gateway under churn.

Three parties, as in production: the bundled server (upstream, in a child process,
``upstream.py``, dealing a ``FaultMix`` of 1 % drops mid-stream, its pieces ``PIECE_DELAY``
apart so that a client that leaves does so while the upstream answer is still coming), the
gateway as users run it (``python -m aichatonline gateway --workers 2``: real uvicorn, a
supervisor and two worker processes, its log in a file), and the real ``openai`` client (one
``AsyncOpenAI``, many requests at once, ``max_retries=0`` so that nothing is hidden, and time
limits long enough that a loaded machine cannot fail a request: latency is not what is
measured here). One request in ten is a client that disconnects at a random point: before the
answer's head arrives, right after it, or after one or two chunks. The others must read the
whole answer, exactly, ending with ``finish_reason="stop"``.

Checked at the end: no ``Traceback`` in the gateway's log (shutdown included), every completed
stream exact, the gateway's streams in flight back to 0 (the ``streams_in_flight`` gauge of
``GET /metrics`` when the gateway has one; otherwise the check is skipped with a note), the
workers' RSS flat after the warm-up (sampled at 10/50/100 %). The upstream's account says how
many drops it dealt and how many answers the gateway left unfinished (clients that left).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from aichatonline.testing import FaultMix, ServerOptions

from . import procfs
from .check import Plan, Tally, char_damage
from .report import environment, rss_problem
from .upstream import Upstream

__all__ = ["GatewayConfig", "gateway_rows", "run_gateway_soak"]

READY = re.compile(r"serving on http://([\d.]+):(\d+)/v1")
DISCONNECT_SHARE = 0.1
UPSTREAM_DROPS = 0.01
PIECE_DELAY = 0.005  # seconds between the upstream's pieces: ~0.1 s an answer
IN_FLIGHT = "aichatonline_gateway_streams_in_flight"
_SETTLE = 3.0  # seconds for the gateway to finish closing what disconnected clients left


@dataclass(frozen=True)
class GatewayConfig:
    streams: int
    concurrency: int
    seed: int
    words: int
    piece_size: int
    max_retries: int
    progress: bool
    workers: int = 2


@dataclass
class _Counts:
    completed: int = 0
    exact: int = 0
    disconnected: int = 0
    errors: int = 0


class Gateway:
    """``python -m aichatonline gateway`` in a child process, its stderr in a log file."""

    def __init__(self, upstream: str, config: GatewayConfig, log: Path) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env.pop("AICHATONLINE_GATEWAY_API_KEY", None)
        self.log = log
        argv = [sys.executable, "-m", "aichatonline", "gateway", "--base-url", upstream]
        argv += ["--port", "0", "--workers", str(config.workers)]
        argv += ["--max-retries", str(config.max_retries)]
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=env, cwd=root
            )
        deadline = time.monotonic() + 60
        while not (match := READY.search(log.read_text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the gateway did not start:\n{log.read_text()}")
            time.sleep(0.05)
        self.base_url = f"http://{match.group(1)}:{match.group(2)}"
        self.workers = config.workers

    def worker_pids(self) -> list[int]:
        return procfs.children(self.process.pid)

    def rss_mib(self) -> float:
        return sum(procfs.rss(pid) or 0 for pid in self.worker_pids()) / procfs.MIB

    def fds(self) -> int:
        return sum(procfs.fd_count(pid) or 0 for pid in self.worker_pids())

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _metrics(base_url: str) -> dict[str, float] | None:
    """The gateway's ``/metrics`` as {name: value summed over labels}, None if it has none."""
    try:
        response = httpx.get(base_url + "/metrics", timeout=10, trust_env=False)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_and_labels, _, value = line.rpartition(" ")
        name = name_and_labels.split("{", 1)[0]
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return values


async def _clients(
    config: GatewayConfig, gateway: Gateway, plan: Plan, state: dict[str, Any]
) -> None:
    from openai import APIError, AsyncOpenAI

    counts: _Counts = state["counts"]
    tally: Tally = state["tally"]
    client = AsyncOpenAI(
        base_url=gateway.base_url + "/v1",
        api_key="soak",
        max_retries=0,
        timeout=300.0,  # every limit (connect included): see the module docstring
    )
    next_index = 0
    points = [(point, config.streams * point // 100) for point in (10, 50, 100)]

    async def one(index: int) -> None:
        rng = random.Random(config.seed * 7_919 + index)
        leave = rng.choice((-1, 0, 1, 2)) if rng.random() < DISCONNECT_SHARE else None
        expected, finish = plan.expected(index), None
        delivered: list[str] = []
        error: BaseException | None = None
        with anyio.move_on_after(rng.uniform(0, 0.02) if leave == -1 else None) as scope:
            try:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": plan.prompt(index)}],
                    stream=True,
                )
                async with stream:
                    async for chunk in stream:
                        if leave is not None and leave >= 0 and len(delivered) >= leave:
                            break
                        if chunk.choices:
                            delivered.append(chunk.choices[0].delta.content or "")
                            finish = chunk.choices[0].finish_reason or finish
                    else:
                        leave = None  # read to its end: a completed stream after all
            except APIError as exc:
                error = exc
            except Exception as exc:  # every outcome is judged, none may escape
                error = exc
                tally.wrong += 1
                _example(tally, f"request {index}: {exc!r}")
        text = "".join(delivered)
        # cancel_called, not cancelled_caught: openai reports a cancellation that reaches it
        # while connecting as an APITimeoutError, which the scope then never sees.
        if scope.cancel_called or (leave is not None and error is None):
            counts.disconnected += 1
            lost, repeated = char_damage(expected, text, complete=False)
        elif error is not None:
            counts.errors += 1
            tally.typed_errors[type(error).__name__] += 1
            lost, repeated = char_damage(expected, text, complete=False)
            if len(state["error_examples"]) < 5:
                cause = error.__cause__ or error.__context__
                state["error_examples"].append(
                    f"request {index} ({'leaving' if leave is not None else 'staying'}, "
                    f"{len(text)} characters in): {error!r}, from {cause!r}"
                )
        else:
            counts.completed += 1
            lost, repeated = char_damage(expected, text, complete=True)
            if text == expected and finish == "stop":
                counts.exact += 1
            else:
                tally.wrong += 1
                _example(tally, f"request {index}: finish {finish!r}, {text!r}")
        tally.chars_lost += lost
        tally.chars_repeated += repeated
        tally.streams += 1
        while points and tally.streams >= points[0][1]:
            point, _ = points.pop(0)
            state["rss_mib"][f"{point}%"] = round(gateway.rss_mib(), 1)

    async def worker() -> None:
        nonlocal next_index
        while next_index < config.streams:
            index, next_index = next_index, next_index + 1
            await one(index)

    async def show() -> None:
        while True:
            sys.stderr.write(
                f"\r  soak gateway: {tally.streams:,}/{config.streams:,} requests, "
                f"{counts.exact:,} exact, {counts.disconnected:,} disconnected, "
                f"{counts.errors:,} errors, {tally.wrong:,} wrong, "
                f"workers' RSS {gateway.rss_mib():.0f} MiB "
            )
            await anyio.sleep(0.5)

    async with client, anyio.create_task_group() as outer:
        if config.progress:
            outer.start_soon(show)
        async with anyio.create_task_group() as workers:
            for _ in range(min(config.concurrency, config.streams)):
                workers.start_soon(worker)
        outer.cancel_scope.cancel()
    if config.progress:
        sys.stderr.write("\n")


def _example(tally: Tally, text: str) -> None:
    if len(tally.examples) < 5:
        tally.examples.append(text)


def run_gateway_soak(config: GatewayConfig) -> dict[str, Any]:
    """Run the gateway soak; return its summary (``problems`` empty when it held)."""
    plan = Plan(config.seed, FaultMix(drop=UPSTREAM_DROPS, seed=config.seed), config.words)
    state: dict[str, Any] = {
        "counts": _Counts(),
        "tally": Tally(),
        "rss_mib": {},
        "error_examples": [],
    }
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="aichatonline-soak-") as directory:
        log = Path(directory) / "gateway.log"
        options = ServerOptions(fault_mix=plan.mix, piece_size=config.piece_size, delay=PIECE_DELAY)
        with Upstream(options) as upstream:
            gateway = Gateway(upstream.base_url, config, log)
            try:
                started = time.perf_counter()
                anyio.run(_clients, config, gateway, plan, state)
                wall = time.perf_counter() - started
                time.sleep(_SETTLE)
                metrics = _metrics(gateway.base_url)
                fds_end = gateway.fds()
            finally:
                exit_code = gateway.stop()
            upstream_stats = upstream.stats()
        text = log.read_text()
    return _summary(config, state, wall, metrics, fds_end, exit_code, upstream_stats, text, notes)


def _summary(
    config: GatewayConfig,
    state: dict[str, Any],
    wall: float,
    metrics: dict[str, float] | None,
    fds_end: int,
    exit_code: int | None,
    upstream: dict[str, Any],
    log: str,
    notes: list[str],
) -> dict[str, Any]:
    counts: _Counts = state["counts"]
    tally: Tally = state["tally"]
    tracebacks = log.count("Traceback (most recent call last)")
    in_flight = None if metrics is None else metrics.get(IN_FLIGHT)
    growth, rss_issue = rss_problem(
        state["rss_mib"], config.streams >= 10 * config.concurrency, "the workers' RSS"
    )
    problems = []
    if tally.wrong:
        problems.append(f"{tally.wrong} wrong outcome(s)")
    if tally.chars_lost or tally.chars_repeated:
        problems.append(f"{tally.chars_lost} character(s) lost, {tally.chars_repeated} repeated")
    if tracebacks:
        problems.append(f"{tracebacks} traceback(s) in the gateway's log")
    if in_flight:
        problems.append(f"{in_flight:g} stream(s) still in flight at the end")
    if in_flight is None:
        notes.append(f"in-flight check skipped: the gateway has no {IN_FLIGHT} gauge at /metrics")
    if rss_issue:
        problems.append(rss_issue)
    if exit_code not in (0, None):
        problems.append(f"the gateway exited with code {exit_code}")
    return {
        "kind": "gateway",
        "flavor": "gateway",
        "streams": tally.streams,
        "concurrency": config.concurrency,
        "workers": config.workers,
        "seed": config.seed,
        "completed": counts.completed,
        "exact": counts.exact,
        "disconnected": counts.disconnected,
        "errors": counts.errors,
        "typed_errors": dict(tally.typed_errors),
        "wrong": tally.wrong,
        "chars_lost": tally.chars_lost,
        "chars_repeated": tally.chars_repeated,
        "upstream_drops": upstream["mixed_faults"]["drop"],
        "upstream": upstream,
        "wall_s": round(wall, 2),
        "tracebacks": tracebacks,
        "log_lines": len(log.splitlines()),
        "in_flight_end": in_flight,
        "metrics": metrics and {k: v for k, v in metrics.items() if "aichatonline" in k},
        "rss_mib": state["rss_mib"],
        "rss_growth_pct": None if growth is None else round(growth, 1),
        "fds_end": fds_end,
        "exit_code": exit_code,
        "examples": tally.examples[:5],
        "error_examples": state["error_examples"],
        "notes": notes,
        "problems": problems,
        "environment": environment(),
    }


def gateway_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The table's rows for a gateway soak summary."""
    streams = summary["streams"]
    rss = " / ".join(
        f"{summary['rss_mib'][p]:.0f}" for p in ("10%", "50%", "100%") if p in summary["rss_mib"]
    )
    growth = summary["rss_growth_pct"]
    in_flight = summary["in_flight_end"]
    return [
        (
            "requests (at once)",
            f"{streams:,} ({summary['concurrency']:,}), {summary['workers']} workers",
        ),
        ("completed, exact", f"{summary['completed']:,}, {summary['exact']:,}"),
        ("clients that disconnected", f"{summary['disconnected']:,}"),
        (
            "errors (the openai client's exceptions)",
            ", ".join(f"{k} {v:,}" for k, v in summary["typed_errors"].items()) or "none",
        ),
        ("wrong outcomes", f"{summary['wrong']:,}"),
        ("characters lost / repeated", f"{summary['chars_lost']} / {summary['chars_repeated']}"),
        ("upstream drops dealt", f"{summary['upstream_drops']:,}"),
        (
            "upstream answers the gateway left unfinished",
            f"{summary['upstream']['disconnects']:,}",
        ),
        ("wall time", f"{summary['wall_s']:.0f} s"),
        ("tracebacks in the gateway's log", f"{summary['tracebacks']}"),
        (
            "streams in flight at the end",
            "n/a (no /metrics)" if in_flight is None else f"{in_flight:g}",
        ),
        (
            "workers' RSS MiB at 10 / 50 / 100 %",
            rss + (f" ({growth:+.1f} %)" if growth is not None else ""),
        ),
        ("verdict", "PASS" if not summary["problems"] else "FAIL"),
    ]
