"""The client soak: many streamed chats through ONE client, every outcome checked.

``run_client_soak(config)`` starts the bundled server in a child process (``upstream.py``,
with the run's ``FaultMix``), so the measured process holds the client alone: its RSS, its
descriptors and its connections are the SDK's, and client and server get a core each. Then
one client streams ``config.streams`` chats, ``config.concurrency`` at a time: tasks of one
``AsyncClient`` on asyncio or trio, or threads sharing one blocking ``Client``. Only the
public API is used (``stream()`` with a ``conversation_id``, ``.text``, ``.retries``,
``.anomalies``, ``StreamInterrupted.partial``), so the harness runs unchanged whatever
carries the bytes underneath.

Each finished stream is judged at once (``check.Tally``) and forgotten, so the harness itself
holds nothing per stream. ``Probe`` takes the samples when 10 %, 50 % and 100 % of the streams
are done: the peak RSS so far, then the Python heap (``sys.getallocatedblocks()``) right after
a full garbage collection (also with the client idle: after its warm-up and after the last
stream, "start" and "end"). The
two differ on purpose: a failed attempt leaves reference cycles (its exception, traceback and
frames, which hold the connection's objects) that wait for CPython's next full collection,
which runs less often as the heap grows, so garbage raises the peak for a while; a leak raises
the heap after a collection. Also: descriptors before the client is made and after it is
closed; the client's TCP connections to the server after the warm-up, at the end, and after
the close.
"""

from __future__ import annotations

import functools
import gc
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from aichatonline import AsyncClient, Client, RetryPolicy, Timeout
from aichatonline.testing import FaultMix, ServerOptions

from . import procfs
from .check import Plan, Tally
from .upstream import Upstream

__all__ = ["ClientConfig", "ClientRun", "Probe", "run_client_soak"]

SAMPLE_POINTS = (10, 50, 100)
_CLOSE_SETTLE = 0.2  # seconds for closed transports to let go of their sockets


@dataclass(frozen=True)
class ClientConfig:
    """One client soak's settings (the command line's, with the defaults filled in)."""

    flavor: str  # "asyncio", "trio" or "sync"
    streams: int
    concurrency: int
    seed: int
    mix: FaultMix
    words: int
    piece_size: int
    read_timeout: float
    max_retries: int
    progress: bool


@dataclass
class ClientRun:
    """What one client soak measured."""

    tally: Tally
    wall_s: float = 0.0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    heap_kblocks: dict[str, float] = field(default_factory=dict)
    fds_start: int | None = None
    fds_end: int | None = None
    connections: dict[str, int | None] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    """The server's own account at the end (``upstream.Upstream.stats``)."""


class Probe:
    """Samples at 10/50/100 % of the streams done (peak RSS so far; the heap after a full
    collection), and a progress line on a terminal."""

    def __init__(self, run: ClientRun, total: int, flavor: str, progress: bool) -> None:
        self.run, self.total, self.flavor, self.progress = run, total, flavor, progress
        self._points = [(point, math.ceil(total * point / 100)) for point in SAMPLE_POINTS]
        self.started = time.perf_counter()

    def done(self, finished: int) -> None:
        """Called with the number of streams finished; samples when it crosses a point."""
        while self._points and finished >= self._points[0][1]:
            point, _ = self._points.pop(0)
            self.run.peak_rss_mib[f"{point}%"] = round(procfs.peak_rss() / procfs.MIB, 1)
            self.run.heap_kblocks[f"{point}%"] = _heap_kblocks()

    def line(self, tally: Tally) -> str:
        elapsed = time.perf_counter() - self.started
        errors = sum(tally.typed_errors.values())
        return (
            f"\r  soak {self.flavor}: {tally.streams:,}/{self.total:,} streams, "
            f"{tally.exact:,} exact, {errors:,} typed errors, {tally.wrong:,} wrong, "
            f"{tally.retries:,} retries, {elapsed:.0f} s, "
            f"RSS {(procfs.rss() or 0) / procfs.MIB:.0f} MiB "
        )

    def show(self, tally: Tally, final: bool = False) -> None:
        if self.progress:
            sys.stderr.write(self.line(tally) + ("\n" if final else ""))
            sys.stderr.flush()


def _heap_kblocks() -> float:
    """Thousands of blocks the interpreter has allocated, right after a full collection."""
    gc.collect()
    return round(sys.getallocatedblocks() / 1000, 1)


def run_client_soak(config: ClientConfig) -> ClientRun:
    """Start the server, run the soak of ``config.flavor``, stop the server; return the run."""
    options = ServerOptions(fault_mix=config.mix, piece_size=config.piece_size)
    with Upstream(options) as server:
        plan = Plan(config.seed, config.mix, config.words)
        if config.flavor == "sync":
            run = _run_sync(config, server.base_url, server.port, plan)
        else:
            run = anyio.run(
                _run_async, config, server.base_url, server.port, plan, backend=config.flavor
            )
        run.server = server.stats()
        return run


def _client_options(config: ClientConfig, base_url: str) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "trust_env": False,
        "timeout": Timeout(10.0, read=config.read_timeout),
        "retry_policy": RetryPolicy(max_retries=config.max_retries),
    }


async def _run_async(config: ClientConfig, base_url: str, port: int, plan: Plan) -> ClientRun:
    tally = Tally()
    run = ClientRun(tally, fds_start=procfs.fd_count())
    async with AsyncClient(**_client_options(config, base_url)) as client:
        async with client.stream("warm-up", conversation_id=plan.warmup_id()) as warm:
            async for _ in warm:
                pass
        run.connections["after warm-up"] = procfs.connections_to(port)
        run.heap_kblocks["start"] = _heap_kblocks()
        probe = Probe(run, config.streams, config.flavor, config.progress)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < config.streams:
                index, next_index = next_index, next_index + 1
                pieces: list[str] = []
                error: Exception | None = None
                stream = client.stream(
                    plan.prompt(index), conversation_id=plan.conversation_id(index)
                )
                try:
                    async with stream:
                        async for piece in stream:
                            pieces.append(piece)
                except Exception as exc:  # every outcome is judged, none may escape
                    error = exc
                tally.record(plan.expected(index), pieces, stream, error, plan.kind(index))
                probe.done(tally.streams)

        async with anyio.create_task_group() as outer:
            if config.progress:
                outer.start_soon(_show_every, probe, tally)
            async with anyio.create_task_group() as workers:
                for _ in range(min(config.concurrency, config.streams)):
                    workers.start_soon(worker)
            outer.cancel_scope.cancel()
        run.wall_s = time.perf_counter() - probe.started
        probe.show(tally, final=True)
        run.heap_kblocks["end"] = _heap_kblocks()
        run.connections["at the end"] = procfs.connections_to(port)
    await anyio.sleep(_CLOSE_SETTLE)
    run.connections["after close"] = procfs.connections_to(port)
    run.fds_end = procfs.fd_count()
    return run


async def _show_every(probe: Probe, tally: Tally) -> None:
    while True:
        probe.show(tally)
        await anyio.sleep(0.5)


def _run_sync(config: ClientConfig, base_url: str, port: int, plan: Plan) -> ClientRun:
    total = Tally()
    run = ClientRun(total, fds_start=procfs.fd_count())
    with Client(**_client_options(config, base_url)) as client:
        with client.stream("warm-up", conversation_id=plan.warmup_id()) as warm:
            for _ in warm:
                pass
        run.connections["after warm-up"] = procfs.connections_to(port)
        run.heap_kblocks["start"] = _heap_kblocks()
        probe = Probe(run, config.streams, "sync", config.progress)
        lock = threading.Lock()
        state = {"next": 0, "finished": 0}
        tallies = [Tally() for _ in range(min(config.concurrency, config.streams))]

        def worker(tally: Tally) -> None:
            while True:
                with lock:
                    index = state["next"]
                    state["next"] += 1
                if index >= config.streams:
                    return
                pieces: list[str] = []
                error: Exception | None = None
                stream = client.stream(
                    plan.prompt(index), conversation_id=plan.conversation_id(index)
                )
                try:
                    with stream:
                        for piece in stream:
                            pieces.append(piece)
                except Exception as exc:  # every outcome is judged, none may escape
                    error = exc
                tally.record(plan.expected(index), pieces, stream, error, plan.kind(index))
                with lock:
                    state["finished"] += 1
                    probe.done(state["finished"])

        stop = threading.Event()
        shown = _thread(lambda: _show_sync(probe, tallies, stop), "soak-progress")
        threads = [_thread(functools.partial(worker, tally), "soak-worker") for tally in tallies]
        for thread in threads:
            thread.join()
        run.wall_s = time.perf_counter() - probe.started
        stop.set()
        shown.join()
        for tally in tallies:
            total.merge(tally)
        probe.show(total, final=True)
        run.heap_kblocks["end"] = _heap_kblocks()
        run.connections["at the end"] = procfs.connections_to(port)
    time.sleep(_CLOSE_SETTLE)
    run.connections["after close"] = procfs.connections_to(port)
    run.fds_end = procfs.fd_count()
    return run


def _thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def _show_sync(probe: Probe, tallies: list[Tally], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        # Read while the workers write: whole numbers and a copied Counter only, never an
        # iteration over a dict another thread may grow (the line may lag a stream or two).
        snapshot = Tally()
        for tally in tallies:
            snapshot.streams += tally.streams
            snapshot.exact += tally.exact
            snapshot.wrong += tally.wrong
            snapshot.retries += tally.retries
            snapshot.typed_errors["any"] += sum(tally.typed_errors.copy().values())
        probe.show(snapshot)
