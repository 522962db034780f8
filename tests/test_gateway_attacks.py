"""The gateway under attack, each attack against the running gateway process (``aichatonline
gateway`` in a child process, loopback only, short deadlines by its flags): idle and
slowloris connections, a trickling client after its refusal, descriptors running out, the
connection budget, log injection and the Host-header redirect (issue 22)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from aichatonline.gateway._log_escape import escape

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"serving on http://127\.0\.0\.1:(\d+)/v1")
KEY = "sk-attack-test"
HEADER_TIMEOUT = 2.0
KEEP_ALIVE = 1.0
LINGER = 2.0  # _connections.LINGER_SECONDS
UNREACHABLE = "http://127.0.0.1:9"  # no chat request here reaches the service
_RUNNER = (
    "import sys\n"
    "from aichatonline.gateway import GatewaySettings\n"
    "from aichatonline.gateway._cli import announce_line\n"
    "from aichatonline.gateway._run import serve\n"
    "settings = GatewaySettings(base_url=sys.argv[2], trust_env=False, "
    "max_connections=int(sys.argv[3]))\n"
    "try:\n"
    "    serve(settings, host='127.0.0.1', port=0, loop=sys.argv[1], on_ready=lambda h, p: "
    "print(announce_line(h, p), file=sys.stderr, flush=True))\n"
    "except KeyboardInterrupt:\n"  # uvicorn raises the SIGINT again once it has stopped
    "    pass\n"
)


@dataclass
class Gateway:
    port: int
    process: subprocess.Popen[bytes]
    log: list[bytes] = field(default_factory=list)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def text(self) -> bytes:
        return b"".join(self.log)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHATONLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def gateway(
    *args: str, command: list[str] | None = None, preexec: Callable[[], None] | None = None
) -> Iterator[Gateway]:
    """The gateway in a child process; its output (bytes, raw: stderr, and uvicorn's access
    log on stdout) gathered in ``Gateway.log``, to its end once the block is left."""
    argv = command or [sys.executable, "-m", "aichatonline", "gateway", "--port", "0", *args]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=ROOT,
        preexec_fn=preexec,  # only setrlimit, before exec
    )
    assert process.stdout is not None
    output = process.stdout
    log: list[bytes] = []
    ports: queue.Queue[int] = queue.Queue()

    def read() -> None:
        for line in output:
            log.append(line)
            match = READY.search(line.decode(errors="replace"))
            if match:
                ports.put(int(match.group(1)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield Gateway(ports.get(timeout=30), process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError("the gateway did not stop within 15 s") from None
            finally:
                reader.join(5)


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    flags = ["--base-url", UNREACHABLE, "--api-key", KEY, "-v"]
    timeouts = ["--header-timeout", str(HEADER_TIMEOUT), "--keep-alive-timeout", str(KEEP_ALIVE)]
    with gateway(*flags, *timeouts) as running:
        yield running


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes; and the seconds it took to close."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - start


def head_of(response: bytes) -> dict[str, str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return {"status": head[0].split(" ")[1], **{k.lower(): v for k, v in fields.items()}}


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (the connection stays open)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    size = int(head_of(data)["content-length"])
    while len(data.split(b"\r\n\r\n", 1)[1]) < size:
        data += sock.recv(65536)
    return data


def health(gw: Gateway) -> tuple[bytes, float]:
    start = time.monotonic()
    with gw.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_until_closed(sock, 5)
    return data, time.monotonic() - start


def wait_writes_fail(sock: socket.socket, within: float) -> float:
    """Seconds until the gateway stops taking what the client sends (a reset)."""
    start = time.monotonic()
    with contextlib.suppress(OSError):
        while time.monotonic() - start < within:
            sock.send(b"x" * 100)
            time.sleep(0.05)
        raise AssertionError(f"the gateway still reads from the client after {within} s")
    return time.monotonic() - start


# --------------------------------------------------------------------------- held connections


def test_idle_and_slowloris_connections_are_closed_and_others_served(gw: Gateway) -> None:
    idle = [gw.connect() for _ in range(1000)]
    slow = [gw.connect() for _ in range(50)]
    opened = time.monotonic()
    for sock in slow:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
    stop = threading.Event()

    def trickle() -> None:  # one byte of a header every 0.2 s on each, until closed
        while not stop.wait(0.2):
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"X")

    threading.Thread(target=trickle, daemon=True).start()
    try:
        time.sleep(0.3)
        response, seconds = health(gw)
        assert head_of(response)["status"] == "200"
        assert seconds < 1.0
        # Every attacker is closed by the head deadline: the idle silently, the slow with 408.
        received: dict[socket.socket, bytes] = {}
        selector = selectors.DefaultSelector()
        for sock in idle + slow:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            received[sock] = b""
        deadline = opened + HEADER_TIMEOUT + 2.0
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                received[sock] += chunk
                if not chunk:
                    selector.unregister(sock)
        assert not selector.get_map(), f"{len(selector.get_map())} still open after the deadline"
        assert all(received[sock] == b"" for sock in idle)
        for sock in slow:
            head = head_of(received[sock])
            assert head["status"] == "408"
            assert head["connection"] == "close"
    finally:
        stop.set()
        for sock in idle + slow:
            sock.close()
    assert health(gw)[1] < 1.0


def test_keep_alive_idle_and_trickling_after_a_response(gw: Gateway) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with gw.connect() as idle, gw.connect() as trickler:
        for sock in (idle, trickler):
            sock.sendall(request)
            assert head_of(read_response(sock))["status"] == "200"
        answered = time.monotonic()
        trickler.sendall(b"GET /health HTTP/1.1\r\n")

        def trickle() -> None:
            with contextlib.suppress(OSError):
                while time.monotonic() - answered < HEADER_TIMEOUT + 2:
                    trickler.send(b"X")
                    time.sleep(0.2)

        threading.Thread(target=trickle, daemon=True).start()
        data, _ = read_until_closed(idle, 5)
        assert data == b""
        assert KEEP_ALIVE - 0.2 < time.monotonic() - answered < KEEP_ALIVE + 1.0
        data, _ = read_until_closed(trickler, 5)
        assert head_of(data)["status"] == "408"
        assert HEADER_TIMEOUT - 0.2 < time.monotonic() - answered < HEADER_TIMEOUT + 1.0


# --------------------------------------------------------------------------- refusals close

CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
AUTH = f"Authorization: Bearer {KEY}\r\n".encode()
MODELS = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + AUTH


@pytest.mark.parametrize(
    ("request_head", "status", "body_pending"),
    [
        (CHAT + b"Content-Length: 900000\r\n\r\n{", "401", True),
        (CHAT + AUTH + b"Content-Length: 5000000\r\n\r\n{", "413", True),
        (CHAT + AUTH + b"Content-Length: 3\r\n\r\n{x}", "400", False),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", "404", False),
        (b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", "405", False),
        (MODELS + b"Content-Length: 9\r\n\r\n", "200", True),
    ],
    ids=["401-trickling", "413-trickling", "400", "404", "405", "unread-body"],
)
def test_a_refused_client_is_closed_right_after_its_answer(
    gw: Gateway, request_head: bytes, status: str, body_pending: bool
) -> None:
    with gw.connect() as sock:
        sock.sendall(request_head)
        data, seconds = read_until_closed(sock, 5)
        head = head_of(data)
        assert head["status"] == status
        assert head["connection"] == "close"
        assert seconds < 0.5  # the answer, then the end of the stream at once
        if body_pending:  # what it still sends is dropped for a moment, then it is reset
            assert wait_writes_fail(sock, LINGER + 2.0) > 0


def test_a_trickled_head_gets_408_then_the_end(gw: Gateway) -> None:
    with gw.connect() as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        data, seconds = read_until_closed(sock, HEADER_TIMEOUT + 3)
        head = head_of(data)
        assert (head["status"], head["connection"]) == ("408", "close")
        assert b'"code":"request_timeout"' in data
        assert HEADER_TIMEOUT - 0.2 < seconds < HEADER_TIMEOUT + 1.0


# --------------------------------------------------------------------------- logs and headers


def test_no_redirect_from_the_host_header(gw: Gateway) -> None:
    with gw.connect() as sock:
        sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: evil.example\r\n" + AUTH + b"\r\n")
        data, _ = read_until_closed(sock, 5)
    head = head_of(data)
    assert head["status"] == "404"
    assert "location" not in head
    assert b'"code":"unknown_url"' in data
    assert b"evil.example" not in data


def _raw_request(gw: Gateway, request: bytes) -> bytes:
    with gw.connect() as sock:
        sock.sendall(request)
        return read_until_closed(sock, 5)[0]


def _wait_for_log(gw: Gateway, needle: bytes) -> bytes:
    deadline = time.monotonic() + 5
    while needle not in gw.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return gw.text()


def test_forwarded_headers_are_not_believed_by_default(gw: Gateway) -> None:
    request = b"GET /xff-default HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n"
    _raw_request(gw, request + b"Connection: close\r\n\r\n")
    line = next(
        line for line in _wait_for_log(gw, b"xff-default").splitlines() if b"xff-default" in line
    )
    assert b"203.0.113.9" not in line
    assert b"127.0.0.1:" in line


HOSTILE = [b"\x1b[31mred\x1b[0m", b"\x9b2J", b"a\x07b", b"\x1b]0;title\x07"]


def test_log_lines_carry_no_raw_control_characters() -> None:
    # A trusted proxy, so that the forged addresses reach the access log at all.
    flags = ["--base-url", UNREACHABLE, "-v", "--forwarded-allow-ips", "127.0.0.1"]
    with gateway(*flags) as gw:
        statuses = []
        for index, hostile in enumerate(HOSTILE):
            request = b"GET /v1/models/n=%d%%1b%%0d%%0a HTTP/1.1\r\nHost: x\r\n" % index
            request += b"X-Forwarded-For: " + hostile + b"\r\nUser-Agent: " + hostile + b"\r\n"
            response = _raw_request(gw, request + b"Connection: close\r\n\r\n")
            statuses.append(head_of(response)["status"])
        # h11 takes control characters in header values; httptools refuses them with a 400.
        for index, status in enumerate(statuses):
            _wait_for_log(gw, b"n=%d" % index if status == "403" else b"Invalid HTTP")
        log = gw.text()
    text = log.decode("utf-8")
    for line in text.splitlines():
        assert line.isprintable(), line
    for hostile, status in zip(HOSTILE, statuses, strict=True):
        assert status in ("400", "403")  # forged, so not loopback: refused, and logged
        if status == "403":  # the forged address, escaped, so the operator sees it
            assert escape(hostile.decode("latin-1")) in text


# --------------------------------------------------------------------------- descriptors


def test_past_max_connections_a_503_that_closes() -> None:
    with gateway("--base-url", UNREACHABLE, "--max-connections", "20") as gw:
        held = [gw.connect() for _ in range(20)]
        try:
            time.sleep(0.2)
            with gw.connect() as extra:
                data, seconds = read_until_closed(extra, 5)
            head = head_of(data)
            assert (head["status"], head["connection"], head["retry-after"]) == (
                "503",
                "close",
                "1",
            )
            assert b'"code":"too_many_connections"' in data
            assert seconds < 0.5
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert head_of(health(gw)[0])["status"] == "200"
        log = gw.text()
    assert log.count(b"--max-connections") == 1


def _low_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


LOOPS = ["asyncio"]
if sys.platform != "win32" and __import__("importlib").util.find_spec("uvloop"):
    LOOPS.append("uvloop")


@pytest.mark.parametrize("loop", LOOPS)
def test_out_of_descriptors_it_recovers_and_logs_little(loop: str) -> None:
    # A budget above the descriptors it has: accept() itself runs out.
    command = [sys.executable, "-c", _RUNNER, loop, UNREACHABLE, "1000"]
    with gateway(command=command, preexec=_low_descriptors) as gw:
        flood: list[socket.socket] = []
        try:
            for _ in range(150):
                with contextlib.suppress(OSError):
                    flood.append(socket.create_connection(("127.0.0.1", gw.port), timeout=2))
            time.sleep(2.0)
        finally:
            for sock in flood:
                sock.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                if head_of(health(gw)[0])["status"] == "200":
                    break
            except (OSError, IndexError, ValueError):
                pass
            assert time.monotonic() < deadline, "the gateway did not recover"
            time.sleep(0.2)
    log = gw.text()  # all of it: the process has ended
    assert len(log) < 4000, log[:2000]
    assert b"Traceback" not in log


# --------------------------------------------------------------------------- memory per stream


def test_slow_readers_of_long_answers_hold_a_bounded_memory_given_back_after() -> None:
    # 300 clients read 16 bytes a second of answers far longer than they will ever read:
    # each stream holds what its buffers hold, not what the answer has sent, and the memory
    # of the ended streams goes back (docs/gateway.md states the bound).
    from benchmarks.gateway_memory import measure

    figures = measure(clients=300, seconds=8.0, pieces=100_000, settle=3.0)
    assert figures["client_bytes_read"] > 0
    assert figures["per_stream_kib"] <= 256, figures
    grown = figures["during_max_mib"] - figures["baseline_mib"]
    assert figures["after_mib"] - figures["baseline_mib"] <= 0.6 * grown, figures
