"""Where a piece's time goes in the SDK, layer by layer: ``python -m benchmarks.layers``.

A diagnosis aid, not a scenario. The same body (the bench server's NDJSON
chunks, ~64 KiB each) is fed from memory, with no network and no profiler
(whose overhead per call would swamp costs of tens of nanoseconds), through
ever more of the SDK's layers:

1. ``split + json.loads``   the floor's parsing loop, handing pieces out by a generator
2. ``decoder.feed``         the SDK's ``StreamDecoder`` alone, in a generator
3. ``+ Transcript.deliver`` the loop of ``Client._run``: every piece also goes
   through the transcript's generator (the text kept for resuming)

and then through the whole client over loopback (``Client.stream`` on a bench
server, client CPU time). Each step's extra nanoseconds per piece is that
layer's cost; the client's extra is the transport (httpx, the watchdog, the
generators around the body). The async rows do the same for
``AsyncClient._run``'s loop (an async generator) and ``AsyncClient.stream``.
Measured with the stdlib parser and with orjson.

``--shapes`` measures the decoder alone on lines of other shapes: the two the decoder
knows from the start, shapes it learns from the stream's first line (no ``code``, ``code``
last, other spacing, ``\\r\\n`` ends, SSE events), and texts with escapes; beside each,
the floor's per-line parse of the same lines (the SSE prefix cut off before parsing).

The second and third layers use SDK internals (``aichatonline._core``):
they may move, in which case those rows say so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from .server import BLOCK_LINES, ServerProcess, _ndjson_line, piece_text

__all__ = ["main"]


def _escaped(text: str) -> str:
    return text[:10] + '\\"q\\"' + text[15:]  # a JSON escape in the line's text


#: Line shapes for ``--shapes``: the bytes of the line for a text, and how many of its
#: texts carry an escape (one in ``n`` lines; 0: none).
SHAPES: dict[str, tuple[Callable[[str], bytes], int]] = {
    "known: compact": (_ndjson_line, 0),
    "known: json.dumps": (lambda t: b'{"code": 200, "data": {"message": "%s"}}\n' % t.encode(), 0),
    "learned: no code": (lambda t: b'{"data":{"message":"%s"}}\n' % t.encode(), 0),
    "learned: code last": (lambda t: b'{"data":{"message":"%s"},"code":200}\n' % t.encode(), 0),
    "learned: spaced": (lambda t: b'{ "data" : { "message" : "%s" } }\n' % t.encode(), 0),
    "learned: \\r\\n": (lambda t: b'{"code":200,"data":{"message":"%s"}}\r\n' % t.encode(), 0),
    "learned: SSE": (lambda t: b'data: {"data":{"message":"%s"}}\n\n' % t.encode(), 0),
    "escapes 1 in 10": (_ndjson_line, 10),
    "escapes 1 in 1": (_ndjson_line, 1),
}  # fmt: skip


def body_chunks(pieces: int, shape: str = "known: compact") -> list[bytes]:
    """The answer's NDJSON as the HTTP chunks the bench server sends (de-chunked)."""
    encode, every = SHAPES[shape]

    def line(index: int) -> bytes:
        text = piece_text(index)
        return encode(_escaped(text) if every and index % every == 0 else text)

    block = b"".join(line(i) for i in range(BLOCK_LINES))
    full, rest = divmod(pieces, BLOCK_LINES)
    chunks = [block] * full
    if rest:
        chunks.append(b"".join(line(i) for i in range(rest)))
    return chunks


def floor(
    chunks: Iterable[bytes], loads: Callable[[Any], Any], text: bool, skip: int = 0
) -> Iterator[str]:
    """The raw-socket floor's loop: lines split, each parsed (its first ``skip`` bytes,
    an SSE prefix, cut off first)."""
    tail = b""
    for data in chunks:
        end = data.rfind(b"\n")
        block = tail + data[:end] if tail else data[:end]
        tail = data[end + 1 :]
        for line in block.decode().split("\n") if text else block.split(b"\n"):
            if line:
                yield loads(line[skip:])["data"]["message"]


def decoder_only(chunks: Iterable[bytes], loads: Callable[[Any], Any]) -> Iterator[str]:
    from aichatonline import StreamDecoder

    decoder = StreamDecoder(json_loads=loads)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.finish()


def with_transcript(chunks: Iterable[bytes], loads: Callable[[Any], Any]) -> Iterator[str]:
    """The loop of ``Client._run``: every feed's pieces through ``Transcript.deliver``."""
    from aichatonline import StreamDecoder
    from aichatonline._core import Transcript

    decoder = StreamDecoder(json_loads=loads)
    transcript = Transcript(resume=True)
    transcript.begin_attempt()
    for chunk in chunks:
        yield from transcript.deliver(decoder.feed(chunk))
    yield from transcript.deliver(decoder.finish())


async def _async_run_loop(
    chunks: Iterable[bytes], loads: Callable[[Any], Any]
) -> AsyncIterator[str]:
    """The loop of ``AsyncClient._run``, over an async source of the same chunks."""
    from aichatonline import StreamDecoder
    from aichatonline._core import Transcript

    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    decoder = StreamDecoder(json_loads=loads)
    transcript = Transcript(resume=True)
    transcript.begin_attempt()
    async for chunk in source():
        for piece in transcript.deliver(decoder.feed(chunk)):
            yield piece
    for piece in transcript.deliver(decoder.finish()):
        yield piece


def _time(make: Callable[[], Iterable[str]], pieces: int, repeat: int) -> float:
    """Median CPU nanoseconds per piece of draining ``make()`` (the bench's drain loop)."""
    results = []
    for _ in range(repeat):
        start = time.process_time()
        count = chars = 0
        for piece in make():
            count += 1
            chars += len(piece)
        results.append(time.process_time() - start)
        if count != pieces:
            raise RuntimeError(f"{count} pieces, expected {pieces}")
    return statistics.median(results) / pieces * 1e9


def _time_async(make: Callable[[], AsyncIterator[str]], pieces: int, repeat: int) -> float:
    """``_time`` for an async iterable, drained with ``async for`` on asyncio."""

    async def drain() -> float:
        start = time.process_time()
        count = chars = 0
        async for piece in make():
            count += 1
            chars += len(piece)
        if count != pieces:
            raise RuntimeError(f"{count} pieces, expected {pieces}")
        return time.process_time() - start

    results = [asyncio.run(drain()) for _ in range(repeat)]
    return statistics.median(results) / pieces * 1e9


def _client_ns(stack: str, pieces: int, repeat: int, parser: str) -> float:
    """A whole client over loopback: client CPU ns per piece, median of worker runs."""
    from .scenarios import run_worker

    results = []
    with ServerProcess() as server:
        spec = {
            "scenario": "throughput",
            "stack": stack,
            "parser": "stdlib" if parser == "stdlib" else "default",
            "backend": "asyncio" if stack == "sdk-async" else None,
            "pieces": pieces,
            "warm_pieces": 100,
            "base_url": server.base_url,
        }
        for _ in range(repeat):
            result, why = run_worker(spec, 300)
            if result is None:
                raise RuntimeError(why)
            results.append(result["client_cpu"] / pieces * 1e9)
    return float(statistics.median(results))


def _parsers() -> list[tuple[str, Callable[[Any], Any]]]:
    parsers: list[tuple[str, Callable[[Any], Any]]] = [("stdlib", json.loads)]
    try:
        import orjson

        parsers.append(("orjson", orjson.loads))
    except ImportError:
        pass
    return parsers


def _fresh_decoder(chunks: list[bytes], loads: Callable[[Any], Any]) -> Callable[[], Iterable[str]]:
    """``decoder_only`` with nothing learned before: each run learns its shape anew."""
    from aichatonline._core import decoder_shapes

    # An SDK that learns no shapes has nothing to forget.
    forget: Callable[[], None] = getattr(decoder_shapes, "forget_learned_shapes", lambda: None)

    def make() -> Iterable[str]:
        forget()
        return decoder_only(chunks, loads)

    return make


def _floor_of(
    chunks: list[bytes], loads: Callable[[Any], Any], text: bool, skip: int
) -> Callable[[], Iterable[str]]:
    return lambda: floor(chunks, loads, text, skip)


def shapes_table(n: int, repeat: int) -> None:
    """``--shapes``: the decoder alone, and the floor, on lines of each shape."""
    parsers = _parsers()
    n -= n % BLOCK_LINES  # whole blocks, as the server sends them
    print(f"CPU ns per piece, median of {repeat}; {n:,} pieces; decoder.feed and the floor")
    cells = "".join(f"{f'{name} feed':>14}{f'{name} floor':>14}{'x':>6}" for name, _ in parsers)
    print(f"{'shape':<22}{cells}")
    for shape in SHAPES:
        chunks = body_chunks(n, shape)
        skip = len(b"data: ") if shape.endswith("SSE") else 0
        row = []
        for name, loads in parsers:
            feed = _time(_fresh_decoder(chunks, loads), n, repeat)
            base = _time(_floor_of(chunks, loads, name == "stdlib", skip), n, repeat)
            row.append(f"{feed:14.0f}{base:14.0f}{base / feed:6.2f}")
        print(f"{shape:<22}{''.join(row)}")
    print("x: the floor's ns over the decoder's (above 1: the decoder is faster).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__)
    parser.add_argument("--pieces", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--shapes", action="store_true", help="the decoder alone on lines of other shapes"
    )
    args = parser.parse_args(argv)
    if args.shapes:
        shapes_table(args.pieces, args.repeat)
        return
    chunks = body_chunks(args.pieces)
    n, repeat = args.pieces, args.repeat
    parsers = _parsers()
    # (label, the row it builds on, its cost in ns per piece for a parser)
    Row = tuple[str, str, Callable[[str, Callable[[Any], Any]], float]]
    floor_row, feed_row, sync_row = (
        "split + loads (the floor's loop)",
        "decoder.feed",
        "+ transcript",
    )
    async_row = "async: _run's loop"
    rows: list[Row] = [
        (
            floor_row,
            "",
            lambda name, loads: _time(lambda: floor(chunks, loads, name == "stdlib"), n, repeat),
        ),
        (
            feed_row,
            floor_row,
            lambda name, loads: _time(lambda: decoder_only(chunks, loads), n, repeat),
        ),
        (
            sync_row,
            feed_row,
            lambda name, loads: _time(lambda: with_transcript(chunks, loads), n, repeat),
        ),
        (
            "Client.stream, loopback",
            sync_row,
            lambda name, loads: _client_ns("sdk-sync", n, max(3, repeat // 2), name),
        ),
        (
            async_row,
            sync_row,
            lambda name, loads: _time_async(lambda: _async_run_loop(chunks, loads), n, repeat),
        ),
        (
            "AsyncClient.stream, loopback",
            async_row,
            lambda name, loads: _client_ns("sdk-async", n, max(3, repeat // 2), name),
        ),
    ]
    print(f"CPU ns per piece, median of {repeat}; {n:,} pieces")
    header = "".join(f"{name:>10}{'(+)':>8}" for name, _ in parsers)
    print(f"{'layer':<34}{header}   (+) is over")
    costs: dict[tuple[str, str], float] = {}
    for label, base, cost in rows:
        cells = []
        for name, loads in parsers:
            try:
                ns = costs[label, name] = cost(name, loads)
            except ImportError as exc:  # an SDK internal moved
                cells.append(f"{'n/a':>10}{'':>8}")
                print(f"  ({label}: {exc})")
                continue
            delta = ns - costs[base, name] if (base, name) in costs else 0.0
            cells.append(f"{ns:10.0f}{delta:+8.0f}")
        print(f"{label:<34}{''.join(cells)}   {base}")
    print("decoder.feed: StreamDecoder alone; + transcript: Client._run's loop")
    print("(Transcript.deliver);")
    print("async: AsyncClient._run's loop, in memory. The floor decodes lines to str for")
    print("json.loads (faster than bytes) and passes bytes to orjson.")


if __name__ == "__main__":
    main()
