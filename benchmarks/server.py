"""A fast loopback server for the benchmarks, run in its own process.

Why not ``aichatonline.testing``? The bundled server is built to be faithful
and scriptable (faults, recording, pacing): it writes and drains line by line,
so it is slower than the clients it would be measuring. A benchmark server
must never be the bottleneck, so this one does as little as possible per byte:

- Bodies are precomputed (``benchmarks/answers.py``). An answer of N pieces is
  one HTTP head, then up to ``BLOCK_LINES`` NDJSON lines per HTTP chunk (the same
  precomputed chunk repeated), then the last chunk. Each chunk is one
  ``transport.write``.
- One asyncio ``Protocol`` per connection, no task, no coroutine: requests are
  parsed in ``data_received`` and answered from a write pump driven by flow
  control (``pause_writing`` / ``resume_writing``), so a 1,000,000-piece
  answer never sits whole in memory.
- Keep-alive, backlog 8192 (the kernel caps it at ``net.core.somaxconn``),
  the file-descriptor soft limit raised to the hard limit: 10,000 concurrent
  connections are fine where the hard limit allows them.

Endpoints (PROTOCOL.md, plus an OpenAI-compatible one and a control surface):

- ``GET /api/v1/user/getUniqueId?canvas=...`` -> ``{"code":200,"data":"<id>"}``
- ``POST /aichatonline/api/chat/gpt`` (401 without a ``UniqueId`` header) ->
  chunked NDJSON ``{"code":200,"data":{"message":"<30-byte piece>"}}`` lines (or
  another shape of the same object: ``answers.SHAPES``).
- ``POST /v1/chat/completions`` -> chunked SSE ``chat.completion.chunk``
  events, then ``data: [DONE]``, for the openai SDK.
- ``GET /_bench/config?pieces=N&hold=H&shape=NAME`` sets how many pieces every
  answer has, how many chats to hold back until they are all open (0: none), and
  the shape of the chat lines (``usual`` when absent; an unknown name is a 400).
  The SDK sends what it sends, so the bench configures the server per measurement.
- ``GET /_bench/stats`` -> request counters, the process's CPU seconds
  (user + system), its RSS, and the peak number of open connections since the
  previous ``stats`` call (which starts a new peak window).

Run: ``python -m benchmarks.server [--port 0] [--pieces 1000]``. It prints
``READY http://127.0.0.1:PORT`` and serves until its standard input closes
(so it never outlives the bench that started it) or it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

from .answers import BLOCK_LINES, PIECE_BYTES, SHAPES, Body, make_body, ndjson_line, piece_text

__all__ = [
    "BLOCK_LINES",
    "CHAT_PATH",
    "PIECE_BYTES",
    "TOKEN_PATH",
    "ServerProcess",
    "fd_limit",
    "main",
    "piece_text",
    "raise_fd_limit",
]

#: The usual line's builder, by the name ``benchmarks.layers`` imports it from here.
_ndjson_line = ndjson_line

TOKEN_PATH = "/api/v1/user/getUniqueId"
CHAT_PATH = "/aichatonline/api/chat/gpt"
OPENAI_PATH = "/v1/chat/completions"
CONTROL_PREFIX = "/_bench/"
#: Held chats are released after this many seconds without a new chat request or a new
#: connection. Longer than the kernel's first SYN retransmission (1 s), which thousands
#: of connects at once can need when the accept queue (somaxconn) overflows.
HOLD_IDLE = 1.5
MAX_HEAD = 64 * 1024


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        content_type,
        len(body),
        body,
    )


class _State:
    """Everything the server counts, its configuration, and the held chats."""

    def __init__(self, pieces: int) -> None:
        self.pieces = pieces
        self.hold = 0
        self.held: list[tuple[_Connection, Body]] = []
        self.release_timer: asyncio.TimerHandle | None = None
        self.last_arrival = 0.0  # loop time of the last held chat or new connection
        self.shape = "usual"
        self.bodies: dict[tuple[int, str, str], Body] = {}
        self.counts = {"token": 0, "chat": 0, "openai": 0, "unauthorized": 0, "other": 0}
        self.open = 0
        self.peak_open = 0
        self.disconnects = 0
        self.released_early = 0

    def hold_or_start(self, conn: _Connection, body: Body) -> None:
        """Answer now, or (with ``hold``) once ``hold`` chats are waiting.

        The barrier makes "N concurrent streams" mean N streams open at once.
        Without it an instant server lets a client finish each stream before
        the next one is sent, and the scenario would measure a queue instead.
        A client that never has ``hold`` requests out at once is not
        deadlocked: held chats are released after ``HOLD_IDLE`` seconds without
        a new chat or a new connection (counted in ``released_early``;
        ``peak_open`` shows what concurrency the client reached). New
        connections count because a client opening thousands of them (trio's
        connects, a gateway accepting its own clients first) may send its first
        chat well before the others: it is still on its way to N streams.
        """
        if self.hold <= 1:
            conn.start(body)
            return
        conn.held = True
        self.held.append((conn, body))
        if len(self.held) >= self.hold:
            self.release()
            return
        loop = asyncio.get_running_loop()
        self.last_arrival = loop.time()
        if self.release_timer is None:
            self.release_timer = loop.call_later(HOLD_IDLE, self._idle_check)

    def arrived(self) -> None:
        """A new connection: while chats are held, it pushes the early release back."""
        if self.held:
            self.last_arrival = asyncio.get_running_loop().time()

    def _idle_check(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last_arrival
        if idle < HOLD_IDLE:  # something arrived since: look again when it has been idle long
            self.release_timer = loop.call_later(HOLD_IDLE - idle, self._idle_check)
        else:
            self.release(early=True)

    def release(self, early: bool = False) -> None:
        held, self.held = self.held, []
        if self.release_timer is not None:
            self.release_timer.cancel()
        self.release_timer = None
        if early:
            self.released_early += len(held)
        for conn, body in held:
            conn.held = False
            if conn.transport is not None and conn.start(body):
                conn.serve()

    def body(self, kind: str) -> Body:
        key = (self.pieces, kind, self.shape)
        body = self.bodies.get(key)
        if body is None:
            body = self.bodies[key] = make_body(self.pieces, kind, self.shape)
        return body

    def stats(self) -> dict[str, object]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        result = {
            **self.counts,
            "pieces": self.pieces,
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss": rss,
            "max_rss": usage.ru_maxrss * 1024,
            "open": self.open,
            "peak_open": self.peak_open,
            "disconnects": self.disconnects,
            "released_early": self.released_early,
        }
        self.peak_open = self.open  # a new peak window starts now
        return result


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.transport: asyncio.WriteTransport | None = None
        self.buffer = bytearray()
        self.parts: Iterator[bytes] | None = None  # the answer being written
        self.paused = False
        self.held = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.transport = transport
        # Big writes, few pauses: the kernel's loopback buffers do the rest.
        transport.set_write_buffer_limits(high=1 << 20, low=1 << 18)
        state = self.state
        state.open += 1
        state.peak_open = max(state.peak_open, state.open)
        state.arrived()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.open -= 1
        if self.parts is not None or self.held:
            self.state.disconnects += 1
        self.parts = None
        self.transport = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._pump():
            self.serve()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.serve()

    def serve(self) -> None:
        """Answer the requests in the buffer, in turn; pipelined ones wait for their turn."""
        buffer = self.buffer
        while self.parts is None and not self.held and self.transport is not None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(buffer) < end + 4 + length:
                return  # the body is still on its way
            del buffer[: end + 4 + length]
            self.close_after = headers.get("connection", "").lower() == "close"
            self._answer(method, target, headers)

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> None:
        state = self.state
        path, _, query = target.partition("?")
        if method == "POST" and path == CHAT_PATH:
            if not headers.get("uniqueid"):
                state.counts["unauthorized"] += 1
                self._send(_response("401 Unauthorized", b'{"code":401,"message":"no UniqueId"}'))
                return
            state.counts["chat"] += 1
            state.hold_or_start(self, state.body("chat"))
        elif method == "POST" and path == OPENAI_PATH:
            state.counts["openai"] += 1
            self.start(state.body("openai"))
        elif method == "GET" and path == TOKEN_PATH:
            state.counts["token"] += 1
            token = b"bench-%d" % state.counts["token"]
            self._send(_response("200 OK", b'{"code":200,"data":"%s"}' % token))
        elif path.startswith(CONTROL_PREFIX):
            self._control(path[len(CONTROL_PREFIX) :], query)
        else:
            state.counts["other"] += 1
            self._send(_response("404 Not Found", b'{"code":404,"message":"not found"}'))

    def _control(self, command: str, query: str) -> None:
        state = self.state
        if command == "config":
            params = parse_qs(query)
            shape = params.get("shape", ["usual"])[0]
            if shape not in SHAPES:  # refused whole: nothing of it applied
                message = f"no line shape {shape!r}; known: {', '.join(SHAPES)}"
                self._send(_response("400 Bad Request", json.dumps({"error": message}).encode()))
                return
            if "pieces" in params:
                state.pieces = max(0, int(params["pieces"][0]))
                state.bodies.clear()
            state.hold = int(params.get("hold", ["0"])[0])
            state.shape = shape
            payload: dict[str, object] = {
                "pieces": state.pieces,
                "hold": state.hold,
                "shape": state.shape,
            }
        elif command == "stats":
            payload = state.stats()
        else:
            self._send(_response("404 Not Found", b"{}"))
            return
        self._send(_response("200 OK", json.dumps(payload).encode()))

    def _send(self, data: bytes) -> None:
        self.start(Body(data, b"", 0, b""))

    def start(self, body: Body) -> bool:
        """Start writing ``body``; True if it is all written already."""
        self.parts = body.parts()
        return self._pump()

    def _pump(self) -> bool:
        """Write until the transport pushes back; True once the answer is all written."""
        parts = self.parts
        transport = self.transport
        if parts is None or transport is None:
            return False
        for part in parts:
            transport.write(part)
            if self.paused:
                return False  # resume_writing() calls back here
        self.parts = None
        if self.close_after:
            transport.close()
        return True


def raise_fd_limit() -> str:
    """Raise this process's open-files soft limit as far as the system allows; say what happened.

    Thousands of concurrent streams need a descriptor each (on the client and on the
    server). An unprivileged process may raise its soft limit up to its hard limit, and no
    further; an unlimited hard limit is capped by ``fs.nr_open``. Children inherit the
    result. The sentence returned goes into the bench's header.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if hard == resource.RLIM_INFINITY:
        try:
            wanted = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            wanted = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError) as exc:
            return f"open files limit {soft}: could not raise it to the hard limit {hard} ({exc})"
        return f"open files limit raised from {soft} to {wanted}, the hard limit"
    return f"open files limit {soft}, already the hard limit"


def fd_limit() -> int:
    """This process's open-files soft limit now."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 62 if soft == resource.RLIM_INFINITY else soft


async def _serve(host: str, port: int, pieces: int) -> None:
    loop = asyncio.get_running_loop()
    state = _State(pieces)
    server = await loop.create_server(
        lambda: _Connection(state), host, port, backlog=8192, reuse_address=True
    )
    bound = server.sockets[0].getsockname()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The bench holds our stdin (a pipe) open; EOF means it is gone, so we go too.
    stdin = sys.stdin.fileno()
    if stat.S_ISFIFO(os.fstat(stdin).st_mode):
        loop.add_reader(stdin, lambda: os.read(stdin, 4096) or stop.set())
    print(f"READY http://{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await stop.wait()


class ServerProcess:
    """This server in a child process, for the bench: ``with ServerProcess() as server``."""

    def __init__(self, pieces: int = 1000, timeout: float = 30.0) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server", "--pieces", str(pieces)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )
        line = _readline(self.process, timeout)
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the bench server did not start (it said {line!r})")
        self.base_url = line.split()[1]

    def stop(self) -> None:
        """Close its stdin (it exits on EOF); kill it if it lingers."""
        process = self.process
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


def main(argv: list[str] | None = None) -> None:
    """Serve on ``--host``/``--port`` until stdin closes or a signal arrives."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pieces", type=int, default=1000)
    args = parser.parse_args(argv)
    raise_fd_limit()
    asyncio.run(_serve(args.host, args.port, args.pieces))


if __name__ == "__main__":
    main()
