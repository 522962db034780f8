"""The gateway's memory under slow readers: ``python -m benchmarks.gateway_memory``.

Issue 22's measurement. Three processes: the bundled server (``spawn_server``) answering
every prompt with a long answer, the gateway as users run it (``aichatonline gateway``,
one uvicorn worker, through ``benchmarks.gateway.GatewayProcess``), and this one with
``--clients`` streaming clients on raw sockets, each reading ``--read-bytes`` bytes a
second (``sock_recv`` of that size: the kernel keeps the rest, so the gateway's writes back
up as they do behind a slow client). The gateway's RSS (``/proc/PID/status`` ``VmRSS``) is
sampled before (after one warm-up stream), every ``--interval`` seconds during, and
``--settle`` seconds after the clients leave.

The aim (issue 22) is memory bounded by the gateway's buffer, not by the answer: about
256 KiB a stream, and RSS back near its baseline after the streams end. ``--json`` prints
the figures as one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
from typing import Any

from aichatonline.testing import spawn_server

from .gateway import GatewayProcess

__all__ = ["main", "measure"]

MiB = 1024 * 1024
_BODY = json.dumps(
    {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
).encode()
_REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


async def _slow_reader(
    port: int, read_bytes: int, stop: asyncio.Event, received: list[int]
) -> None:
    """One client: send the streamed request, then read ``read_bytes`` a second until stopped."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, _REQUEST)
        while not stop.is_set():
            data = await loop.sock_recv(sock, read_bytes)
            if not data:
                return
            received.append(len(data))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        sock.close()


async def _run_clients(
    gateway: GatewayProcess, clients: int, read_bytes: int, seconds: float, interval: float
) -> tuple[list[float], int]:
    stop = asyncio.Event()
    received: list[int] = []
    tasks = [
        asyncio.create_task(_slow_reader(gateway.port, read_bytes, stop, received))
        for _ in range(clients)
    ]
    samples: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(interval)
        samples.append(gateway.memory()[0] / MiB)
    stop.set()
    # A client the gateway has sent nothing waits in sock_recv: end it too.
    _, pending = await asyncio.wait(tasks, timeout=2.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples, sum(received)


def _warm_up(port: int) -> None:
    """One stream up to its first event: the SDK's token and the server's answer (which it
    builds once, and may take seconds to for a long one) are ready before the baseline."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(_REQUEST)
        data = b""
        while b"data: " not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"the gateway answered {data[:200]!r}")
            data += chunk


def measure(
    *,
    clients: int = 300,
    seconds: float = 60.0,
    read_bytes: int = 16,
    pieces: int = 1_000_000,
    piece_size: int = 64,
    interval: float = 0.5,
    settle: float = 5.0,
) -> dict[str, Any]:
    """Run the measurement; the figures as a dict (MiB, and KiB per stream)."""
    with spawn_server(pieces=pieces, piece_size=piece_size) as server:
        gateway = GatewayProcess(server.base_url, max_concurrency=max(clients, 1))
        with gateway:
            _warm_up(gateway.port)
            time.sleep(2.0)
            baseline = gateway.memory()[0] / MiB
            samples, read = asyncio.run(
                _run_clients(gateway, clients, read_bytes, seconds, interval)
            )
            time.sleep(settle)
            after, peak = (value / MiB for value in gateway.memory())
    during = max(samples) if samples else baseline
    return {
        "clients": clients,
        "seconds": seconds,
        "read_bytes_per_second": read_bytes,
        "answer_chars": pieces * piece_size,
        "baseline_mib": round(baseline, 1),
        "during_max_mib": round(during, 1),
        "during_last_mib": round(samples[-1], 1) if samples else None,
        "peak_mib": round(peak, 1),
        "after_mib": round(after, 1),
        "per_stream_kib": round((during - baseline) * 1024 / max(clients, 1), 1),
        "client_bytes_read": read,
        "samples_mib": [round(sample, 1) for sample in samples],
    }


def _table(figures: dict[str, Any]) -> str:
    rows = [
        ("clients (slow readers)", f"{figures['clients']}"),
        ("each reads", f"{figures['read_bytes_per_second']} bytes a second"),
        ("answer length", f"{figures['answer_chars']:,} characters"),
        ("RSS before", f"{figures['baseline_mib']:.1f} MiB"),
        ("RSS during (max)", f"{figures['during_max_mib']:.1f} MiB"),
        ("RSS during (last sample)", f"{figures['during_last_mib']:.1f} MiB"),
        ("RSS after the clients left", f"{figures['after_mib']:.1f} MiB"),
        ("peak RSS (VmHWM)", f"{figures['peak_mib']:.1f} MiB"),
        ("per stream (during max - before)", f"{figures['per_stream_kib']:.0f} KiB"),
        ("aim", "about 256 KiB a stream; after near before"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long they read")
    parser.add_argument("--read-bytes", type=int, default=16, help="bytes each reads a second")
    parser.add_argument("--pieces", type=int, default=1_000_000, help="pieces per answer")
    parser.add_argument("--piece-size", type=int, default=64, help="characters per piece")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds waited after")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    figures = measure(
        clients=args.clients,
        seconds=args.seconds,
        read_bytes=args.read_bytes,
        pieces=args.pieces,
        piece_size=args.piece_size,
        interval=args.interval,
        settle=args.settle,
    )
    print(json.dumps(figures) if args.json else _table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
