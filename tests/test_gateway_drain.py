"""The drain (issue 18) on the real command in a child process: SIGTERM during streams, one
worker and ``--workers 2``. What clients see: a request that arrives during the drain gets
a 503 with ``Connection: close`` (or, once the port is closed, a refused connection; never a
hang or a reset), a stream that finishes in time finishes, one still open after
``--shutdown-timeout`` ends with an error event and ``data: [DONE]``, and the command exits
0. Along the way: JSON access lines, ``-v`` retry lines and metrics from every worker."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from aichatonline.testing import Fault, LocalServer
from tests.test_gateway_cli import READY, ROOT, _env
from tests.test_gateway_ops import samples
from tests.test_gateway_stream import AUTH, _unchunk, body

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

KEY = AUTH["Authorization"].removeprefix("Bearer ")
CHAT = "/v1/chat/completions"


class Gateway:
    """``aichatonline gateway`` in a child process; its stderr lines as they come."""

    def __init__(self, process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        self.process = process
        self._lines = lines
        self.url = ""

    def line(self, timeout: float) -> str | None:
        return self._lines.get(timeout=timeout)

    def stderr_after_exit(self) -> list[str]:
        out = []
        while (line := self._lines.get(timeout=10)) is not None:
            out.append(line)
        return out


@contextmanager
def gateway(*args: str, env: dict[str, str] | None = None) -> Iterator[Gateway]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aichatonline", "gateway", "--port", "0", "--api-key", KEY, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _env(),
        cwd=ROOT,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    stderr = process.stderr
    assert stderr is not None

    def read() -> None:
        for line in stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    running = Gateway(process, lines)
    try:
        while True:
            line = running.line(timeout=30)
            assert line is not None, "the gateway stopped before it listened"
            match = READY.match(line)
            if match:
                running.url = match.group(1).removesuffix("/v1")
                break
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


class RawStream:
    """A streamed chat request on its own socket, read as curl would."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        payload = json.dumps(body()).encode()
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self.sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (CHAT.encode(), KEY.encode(), len(payload), payload)
        )
        self.received = bytearray()
        while b'"delta":{"content":"' not in self.received.split(b"\r\n\r\n", 1)[-1][300:]:
            chunk = self.sock.recv(65536)
            assert chunk, bytes(self.received)
            self.received += chunk

    def rest(self) -> list[Any]:
        """Read to the end: the ``data:`` payloads (JSON-decoded; ``[DONE]`` as is)."""
        with self.sock:
            while chunk := self.sock.recv(65536):
                self.received += chunk
        head, _, raw = bytes(self.received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        events = [
            line[6:] for line in _unchunk(raw).decode().split("\n") if line.startswith("data: ")
        ]
        return [e if e == "[DONE]" else json.loads(e) for e in events]


def text_of(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content", "")
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def assert_cut(events: list[Any], full_text: str) -> None:
    *chunks, error, done = events
    assert done == "[DONE]"
    assert error["error"]["code"] == "gateway_shutting_down"
    assert error["error"]["type"] == "server_error"
    assert full_text.startswith(text_of(chunks))
    assert text_of(chunks) != full_text


def test_sigterm_lets_streams_finish_then_cuts_the_open_ones_and_exits_0() -> None:
    with LocalServer(pieces=300, delay=0.02) as slow:  # six seconds of answer
        args = ("--base-url", slow.base_url, "--shutdown-timeout", "2", "--log-format", "json")
        with gateway(*args) as gw:
            long, long_text = RawStream(gw.url), "".join(slow.pieces_for("Hi"))
            slow.pieces, slow.delay = 20, 0.04  # the next answer: under one second
            short = RawStream(gw.url)
            gw.process.send_signal(signal.SIGTERM)
            asked = time.monotonic()
            time.sleep(0.3)
            refused = httpx.post(gw.url + CHAT, json=body(stream=False), headers=AUTH)
            assert refused.status_code == 503
            assert refused.headers["connection"] == "close"
            assert refused.headers["retry-after"] == "1"
            error = refused.json()["error"]
            assert error["code"] == "gateway_shutting_down"
            assert error["request_id"] == refused.headers["x-request-id"]
            for path in ("/health", "/ready"):  # not alive, not ready: no key needed
                assert httpx.get(gw.url + path).status_code == 503
            assert httpx.get(gw.url + "/metrics", headers=AUTH).status_code == 200
            finished = short.rest()
            assert finished[-1] == "[DONE]"
            assert finished[-2]["choices"][0]["finish_reason"] == "stop"
            assert text_of(finished) == "".join(slow.pieces_for("Hi"))
            cut = long.rest()
            elapsed = time.monotonic() - asked
            assert 1.8 < elapsed < 6
            assert_cut(cut, long_text)
            assert gw.process.wait(10) == 0
            logged = [json.loads(line) for line in gw.stderr_after_exit()]
    chats = [r for r in logged if r.get("path") == CHAT]
    assert sorted(r["outcome"] for r in chats) == ["completed", "cut_by_shutdown", "refused"]
    cut_line = next(r for r in chats if r["outcome"] == "cut_by_shutdown")
    assert cut_line["status"] == 200
    assert cut_line["pieces"] > 0
    assert {r["level"] for r in logged} <= {"INFO", "WARNING"}  # every line is JSON


def probe(url: str) -> str:
    """What a new client sees: a status (and Connection), a refusal, a hang or a reset."""
    try:
        response = httpx.get(url + "/health", timeout=3)
    except httpx.ConnectError:
        return "refused"
    except httpx.TimeoutException:
        return "hung"
    except httpx.TransportError as exc:
        return f"reset: {type(exc).__name__}"
    return f"{response.status_code} {response.headers.get('connection', '')}".strip()


def test_workers_drain_with_an_answer_for_every_connection(tmp_path: Path) -> None:
    env = _env(
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        AICHATONLINE_GATEWAY_SHUTDOWN_TIMEOUT="1.5",  # the variable reaches the workers too
    )
    with LocalServer(pieces=3) as slow:
        args = ("--base-url", slow.base_url, "--workers", "2", "--max-retries", "1", "-v")
        with gateway(*args, env=env) as gw:
            served = 0
            # Requests on new connections (each worker may take one), until both answered.
            for _ in range(10):
                for _ in range(4):
                    slow.inject(Fault(status=503, retry_after="0"))  # retried once, at once
                    answer = httpx.post(gw.url + CHAT, json=body(stream=False), headers=AUTH)
                    assert answer.status_code == 200
                    served += 1
                if len(list(tmp_path.glob("histogram_*.db"))) == 2:
                    break
            assert len(list(tmp_path.glob("histogram_*.db"))) == 2  # both workers served
            for _ in range(3):  # whichever worker answers the scrape counts every worker's
                got = samples(httpx.get(gw.url + "/metrics", headers=AUTH).text)
                completed = (("outcome", "completed"), ("route", CHAT), ("status", "200"))
                assert got["aichatonline_gateway_requests_total", completed] == served
                assert got["aichatonline_gateway_upstream_retries_total", ()] == served
            slow.pieces, slow.delay = 300, 0.02
            streams = [RawStream(gw.url) for _ in range(2)]
            gw.process.send_signal(signal.SIGTERM)
            seen: list[str] = []

            def keep_probing() -> None:
                while gw.process.poll() is None:
                    seen.append(probe(gw.url))
                    time.sleep(0.05)

            prober = threading.Thread(target=keep_probing)
            prober.start()
            for stream in streams:
                assert_cut(stream.rest(), "".join(slow.pieces_for("Hi")))
            assert gw.process.wait(15) == 0
            prober.join()
            seen.append(probe(gw.url))
            lines = gw.stderr_after_exit()
    assert not [s for s in seen if s.startswith(("hung", "reset"))], seen
    assert "503 close" in seen
    assert seen[-1] == "refused"
    assert set(seen) <= {"200", "503 close", "refused"}
    retries = [
        line for line in lines if "aichatonline: retrying" in line or "retrying chat" in line
    ]
    assert len(retries) == served  # -v: the SDK's retry lines, from every worker
    access = [line for line in lines if f"path={CHAT} status=200" in line]
    assert len([line for line in access if "outcome=completed" in line]) == served
    assert len([line for line in access if "outcome=cut_by_shutdown" in line]) == 2
    assert not list(tmp_path.glob("gauge_live*.db"))  # each worker said it was gone
