"""One measurement in a fresh interpreter: ``python -m benchmarks.worker '<json spec>'``.

The bench runs every measurement in its own process, so that

- peak RSS (``ru_maxrss``, a high-water mark) belongs to that measurement alone;
- the SDK can be measured without orjson: when the spec says ``"parser":
  "stdlib"`` for an SDK stack, ``sys.modules["orjson"] = None`` is set before
  anything is imported, which makes ``import orjson`` fail inside the SDK;
- a crash, a hang or a leak in one stack cannot spoil another's figures.

The worker drives the server's control endpoint itself: a short warm-up at a
small size (first-call costs and connection set-up are not what is being
measured), then the measured size, with the server's counters and CPU seconds
read just before and just after the timed section. It prints one line,
``RESULT {json}``, as its last line of output.
"""

from __future__ import annotations

import http.client
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .drains import (
    adrain,
    adrain_sampled,
    afirst_then_drain,
    drain,
    drain_sampled,
    first_then_drain,
    rss,
)
from .profilers import PROFILERS
from .server import raise_fd_limit

__all__ = ["main"]


def peak_rss() -> int:
    """The process's peak resident set size so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without float error
    return ordered[int(rank) - 1]


class Control:
    """The server's control endpoint, over a fresh connection per call (never timed)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def _get(self, target: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:  # a setting refused: the measurement would be wrong
                raise RuntimeError(f"the bench server refused {target}: {body.decode()}")
            return json.loads(body)  # type: ignore[no-any-return]
        finally:
            conn.close()

    def configure(self, pieces: int, hold: int = 0, shape: str = "usual") -> None:
        """Answers of ``pieces`` pieces in lines of ``shape``; with ``hold``, chats wait
        until that many are open."""
        self._get(f"/_bench/config?pieces={pieces}&hold={hold}&shape={shape}")

    def stats(self) -> dict[str, Any]:
        return self._get("/_bench/stats")


class Section:
    """The timed section: wall time, server counters and CPU, optional profile.

    ``probe``, when the stack has one (the gateway's), reads another process's CPU
    seconds and RSS just before and just after the section: the gateway does the SDK's
    work there, not in this process.
    """

    def __init__(
        self,
        control: Control,
        spec: dict[str, Any],
        probe: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.control = control
        self.probe = probe
        path: str | None = spec.get("profile")
        self.profiler: Any = None
        if path:
            self.profiler = PROFILERS[spec.get("profiler", "cprofile")](path)
        self.seconds = 0.0

    def __enter__(self) -> Section:
        self.before = self.control.stats()
        self.probe_before = self.probe() if self.probe is not None else None
        if self.profiler is not None:
            self.profiler.start()
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        return self

    def mark(self) -> None:
        """A moment of interest for a memory profile (a stream's first piece)."""
        if self.profiler is not None:
            self.profiler.mark()

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu_start
        if self.profiler is not None:
            self.profiler.stop()
        self.probe_after = self.probe() if self.probe is not None else None
        self.after = self.control.stats()

    def result(self) -> dict[str, Any]:
        before, after = self.before, self.after
        out: dict[str, Any] = {
            "seconds": self.seconds,
            "client_cpu": self.cpu,
            "server_cpu": after["cpu"] - before["cpu"],
            "server_peak_open": after["peak_open"],
            "requests": {
                key: after[key] - before[key]
                for key in ("token", "chat", "openai", "unauthorized", "other")
            },
            "server_disconnects": after["disconnects"] - before["disconnects"],
            "server_released_early": after["released_early"] - before["released_early"],
        }
        if self.probe_before is not None and self.probe_after is not None:
            out["gateway_cpu"] = self.probe_after["cpu"] - self.probe_before["cpu"]
            out["gateway_rss_before"] = self.probe_before["rss"]
            out["gateway_peak_rss"] = self.probe_after["peak_rss"]
        if self.profiler is not None:
            out["profile"] = self.profiler.report()
        return out


def _check(
    count: int, chars: int, pieces: int, piece_bytes: int, coalesced: bool = False
) -> str | None:
    """What is wrong with a stream's pieces, or None. A ``coalesced`` stack (the gateway
    joins the service's pieces into fewer SSE events) is checked by its text only."""
    if (count != pieces and not coalesced) or chars != pieces * piece_bytes:
        return f"got {count} pieces / {chars} chars, expected {pieces} / {pieces * piece_bytes}"
    return None


def _cpu_per_piece(out: dict[str, Any], pieces: int) -> float | None:
    """CPU seconds per piece of the process doing the SDK's work: the gateway's, else ours."""
    if not pieces:
        return None
    return float(out.get("gateway_cpu", out["client_cpu"])) / pieces


# -- the scenarios, as run inside the worker -----------------------------------------


def _stack(spec: dict[str, Any]) -> tuple[Any, bool]:
    from .stacks import ASYNC_STACKS, SYNC_STACKS

    name, base, parser = spec["stack"], spec["base_url"], spec.get("parser", "stdlib")
    if name in SYNC_STACKS:
        return SYNC_STACKS[name](base, parser), False
    stack = ASYNC_STACKS[name](base, parser)
    if hasattr(stack, "max_concurrency"):  # the gateway: admit every stream of the batch
        stack.max_concurrency = max(1000, spec.get("streams", 1) + 10)
    return stack, True


def _run_async(spec: dict[str, Any], main: Callable[[], Any]) -> Any:
    """Run ``main`` on the spec's backend; ``"loop": "uvloop"`` puts asyncio on uvloop."""
    import anyio

    backend = spec.get("backend") or "asyncio"
    options = {"use_uvloop": True} if spec.get("loop") == "uvloop" else {}
    return anyio.run(main, backend=backend, backend_options=options)


def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """One stream of ``pieces`` pieces (in lines of the spec's ``shape``): pieces per second."""
    from .server import PIECE_BYTES

    control = Control(spec["base_url"])
    stack, is_async = _stack(spec)
    pieces, shape = spec["pieces"], spec.get("shape", "usual")
    section = Section(control, spec, getattr(stack, "probe", None))
    if not is_async:
        stack.warm()
        control.configure(spec["warm_pieces"], shape=shape)
        drain(stack.stream())
        control.configure(pieces, shape=shape)
        with section:
            count, chars = drain(stack.stream())
        stack.close()
    else:

        async def main() -> tuple[int, int]:
            await stack.warm()
            control.configure(spec["warm_pieces"], shape=shape)
            await adrain(stack.stream())
            control.configure(pieces, shape=shape)
            with section:
                result = await adrain(stack.stream())
            await stack.aclose()
            return result

        count, chars = _run_async(spec, main)
    out = section.result()
    coalesced = getattr(stack, "coalesces", False)
    out.update(
        rate=pieces / section.seconds if coalesced else count / section.seconds,
        pieces=pieces if coalesced else count,
        events=count,
        cpu_per_piece=_cpu_per_piece(out, pieces),
        peak_rss=peak_rss(),
        error=_check(count, chars, pieces, PIECE_BYTES, coalesced),
    )
    return out


def latency(spec: dict[str, Any]) -> dict[str, Any]:
    """``calls`` sequential one-piece chats on a warm stack: first-piece p50 / p99."""
    control = Control(spec["base_url"])
    stack, is_async = _stack(spec)
    calls, warmup = spec["calls"], spec["warmup"]
    section = Section(control, spec)
    firsts: list[float] = []
    control.configure(1)
    if not is_async:
        stack.warm()
        for _ in range(warmup):
            drain(stack.stream())
        with section:
            for _ in range(calls):
                start = time.perf_counter()
                firsts.append(first_then_drain(stack.stream(), start)[0])
        stack.close()
    else:

        async def main() -> None:
            await stack.warm()
            for _ in range(warmup):
                await adrain(stack.stream())
            with section:
                for _ in range(calls):
                    start = time.perf_counter()
                    firsts.append((await afirst_then_drain(stack.stream(), start))[0])
            await stack.aclose()

        _run_async(spec, main)
    out = section.result()
    requests = out["requests"]
    out.update(
        p50=percentile(firsts, 50),
        p99=percentile(firsts, 99),
        calls=calls,
        requests_per_chat=(requests["token"] + requests["chat"] + requests["openai"]) / calls,
        error=None if len(firsts) == calls else f"{len(firsts)} of {calls} calls",
    )
    return out


def concurrency(spec: dict[str, Any]) -> dict[str, Any]:
    """``streams`` concurrent streams of ``pieces`` pieces on one client (or the stack's way)."""
    import anyio

    from .server import PIECE_BYTES

    control = Control(spec["base_url"])
    stack, _ = _stack(spec)
    streams, pieces, cap = spec["streams"], spec["pieces"], spec["cap"]
    section = Section(control, spec, getattr(stack, "probe", None))
    coalesced = getattr(stack, "coalesces", False)
    firsts: list[float] = []
    errors: list[str] = []
    wrong: list[str] = []  # streams that ended normally with the wrong text: a bug, not load
    events: list[int] = []
    done = 0

    async def one(start: float) -> None:
        nonlocal done
        try:
            # First-piece time from the moment the batch started, not from the task's own start.
            first, count, chars = await afirst_then_drain(stack.stream(), start, section.mark)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        problem = _check(count, chars, pieces, PIECE_BYTES, coalesced)
        if problem:
            errors.append(problem)
            wrong.append(problem)
            return
        firsts.append(first)
        events.append(count)
        done += 1

    rss_before = 0

    async def main() -> bool:
        nonlocal rss_before
        await stack.warm()
        control.configure(spec["warm_pieces"])
        await adrain(stack.stream())
        rss_before = rss()  # imports, the client and one warm connection: not the streams
        # The server holds the answers until all streams are open: N concurrent streams.
        control.configure(pieces, hold=streams)
        with section:
            with anyio.move_on_after(cap) as scope:
                start = time.perf_counter()
                async with anyio.create_task_group() as group:
                    for _ in range(streams):
                        group.start_soon(one, start)
        with anyio.move_on_after(30):
            await stack.aclose()
        return bool(scope.cancelled_caught)

    timed_out = _run_async(spec, main)
    out = section.result()
    out.update(
        streams=streams,
        completed=done,
        timed_out=timed_out,
        errors=len(errors),
        error_samples=sorted(set(errors))[:3],
        rate=done * pieces / section.seconds,
        first_p50=percentile(firsts, 50),
        first_p99=percentile(firsts, 99),
        rss_before=rss_before,
        peak_rss=peak_rss(),
        events=sorted(events)[len(events) // 2] if events else None,
        cpu_per_piece=_cpu_per_piece(out, done * pieces),
        # A stream that raised counts as failed (judged by the targets); wrong text fails the run.
        error=f"{len(wrong)} stream(s) with the wrong text, e.g. {wrong[0]}" if wrong else None,
    )
    return out


def long_answer(spec: dict[str, Any]) -> dict[str, Any]:
    """One stream of a very long answer: rate, RSS samples while streaming, peak RSS."""
    from .server import PIECE_BYTES

    control = Control(spec["base_url"])
    stack, is_async = _stack(spec)
    pieces, every = spec["pieces"], spec["sample_every"]
    section = Section(control, spec)
    if not is_async:
        stack.warm()
        control.configure(spec["warm_pieces"])
        drain(stack.stream())
        control.configure(pieces)
        before = rss()
        with section:
            count, chars, samples = drain_sampled(stack.stream(), every)
        stack.close()
    else:

        async def main() -> tuple[int, int, list[int], int]:
            await stack.warm()
            control.configure(spec["warm_pieces"])
            await adrain(stack.stream())
            control.configure(pieces)
            before = rss()
            with section:
                result = await adrain_sampled(stack.stream(), every)
            await stack.aclose()
            return (*result, before)

        count, chars, samples, before = _run_async(spec, main)
    out = section.result()
    out.update(
        rate=count / section.seconds,
        pieces=count,
        text_bytes=chars,
        rss_before=before,
        rss_samples=samples,
        peak_rss=peak_rss(),
        error=_check(count, chars, pieces, PIECE_BYTES),
    )
    return out


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "throughput": throughput,
    "latency": latency,
    "concurrency": concurrency,
    "long": long_answer,
}


def _json_parser_in_use() -> str:
    """Which parser the SDK's decoder picked (best effort: a private name may move)."""
    try:
        from aichatonline._core.decoder import default_json_loads

        return getattr(default_json_loads(), "__module__", "?") or "?"
    except ImportError:
        return "?"


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["stack"].startswith("sdk") and spec.get("parser") == "stdlib":
        # Blocks the SDK's optional speed-up: ``import orjson`` now raises ImportError.
        sys.modules["orjson"] = None  # type: ignore[assignment]
    raise_fd_limit()  # inherited from the bench already; run alone, it raises its own
    result = SCENARIOS[spec["scenario"]](spec)
    if spec["stack"].startswith("sdk"):
        result["sdk_parser"] = _json_parser_in_use()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
