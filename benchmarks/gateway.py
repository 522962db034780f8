"""The OpenAI-compatible gateway under the benchmark: its process, and a lean SSE client.

The gateway scenario of ``python -m benchmarks`` (``--only gateway``) measures what the
gateway costs, one uvicorn worker on loopback. Three processes: the bench's fast server
(``benchmarks/server.py``), the gateway as users run it (``aichatonline gateway --base-url
BENCH --port 0``, started afresh by each measurement's worker, so its peak RSS belongs to
that measurement), and the worker as the clients. The clients read the gateway's SSE over
raw asyncio sockets (HTTP/1.1 chunked, ``json.loads`` per event), so the client side costs
little and the figures are the gateway's. This module holds those two parts; the stack
that uses them is ``stacks.GatewaySSE``, the rows and targets are in ``scenarios`` and
``report``.

``python -m benchmarks.gateway [--quick] [--runs N] [--markdown] [--json PATH]`` is kept
as a shorthand for ``python -m benchmarks --only gateway ...``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

__all__ = ["GatewayProcess", "main", "sse_pieces"]

READY = re.compile(r"serving on http://([\d.]+):(\d+)/v1")
_TICKS = os.sysconf("SC_CLK_TCK")


class GatewayProcess:
    """``aichatonline gateway`` in a child process, pointed at the bench server."""

    def __init__(self, base_url: str, max_concurrency: int, timeout: float = 60.0) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env.pop("AICHATONLINE_GATEWAY_API_KEY", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aichatonline",
                "gateway",
                "--base-url",
                base_url,
                "--port",
                "0",
                "--max-concurrency",
                str(max_concurrency),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)  # a worker that fails still takes its gateway down
        found: list[re.Match[str]] = []
        stderr = self.process.stderr
        assert stderr is not None

        def watch() -> None:
            for line in stderr:
                match = READY.search(line)
                if match and not found:
                    found.append(match)
                elif not match and not line.startswith("time="):  # not its access lines
                    sys.stderr.write(f"[gateway] {line}")

        threading.Thread(target=watch, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        self.host, self.port = found[0].group(1), int(found[0].group(2))

    def cpu(self) -> float:
        """The gateway process's CPU seconds so far, all its threads.

        From ``/proc/PID/task/*/schedstat`` (nanoseconds) where the kernel has it, else
        from ``/proc/PID/stat`` (user + system, in clock ticks of 10 ms: too coarse for a
        short section).
        """
        pid = self.process.pid
        try:
            total = 0
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                    total += int(schedstat.read().split()[0])
            return total / 1e9
        except (OSError, ValueError, IndexError):
            pass
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def memory(self) -> tuple[int, int]:
        """(current RSS, peak RSS) of the gateway process, in bytes."""
        values = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0]) * 1024
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker dies, even by SIGKILL (Linux).

    A worker past its timeout is killed, and its atexit handlers with it: the gateway must
    not outlive it, holding a port and a core on a shared machine.
    """
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_BODY = json.dumps(
    {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hello"}]}
).encode()
_REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


async def sse_pieces(
    host: str, port: int, loads: Callable[[bytes], Any] = json.loads
) -> AsyncIterator[str]:
    """One streamed chat through the gateway: the text of each SSE content event.

    A new connection per chat; a non-200 answer, an error event or a stream that ends
    without ``data: [DONE]`` raises ``RuntimeError``.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"gateway answered {head.splitlines()[0]!r}")
        if b"transfer-encoding: chunked" not in head.lower():
            raise RuntimeError("the gateway's answer is not chunked")
        buffer = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                raise RuntimeError("the stream ended without [DONE]")
            buffer += data[:-2]
            *complete, buffer = buffer.split(b"\n\n")
            for event in complete:
                if not event.startswith(b"data: "):
                    continue  # a comment (keep-alive) or another field
                payload = event[6:]
                if payload == b"[DONE]":
                    return
                chunk = loads(payload)
                if "error" in chunk:
                    raise RuntimeError(f"error event: {chunk['error']}")
                choices = chunk["choices"]
                text = choices[0]["delta"].get("content") if choices else None
                if text:
                    yield text
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks --only gateway``, with the same other options."""
    from .__main__ import main as bench_main

    return bench_main(["--only", "gateway", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
