"""The gateway's connection machinery up close: the guarded protocol over h11 and httptools
(uvicorn in a thread: the body deadline, pipelining, a keep-alive longer than the head
deadline, a long stream never cut), ``Connection: close`` on refusals, the settings, flags
and variables of the limits, the descriptor budget, the accept guard, and log escaping."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aichatonline.testing import LocalServer, pieces_for

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from aichatonline import InvalidRequestError  # noqa: E402
from aichatonline._cli import main  # noqa: E402
from aichatonline.gateway import (  # noqa: E402
    GatewaySettings,
    _connections,
    _descriptors,
    _log_escape,
    create_app,
)
from aichatonline.gateway._connections import ConnectionLimits  # noqa: E402
from aichatonline.gateway._refusals import REFUSALS, CloseRefusals  # noqa: E402
from aichatonline.gateway._settings import ENV_NAMES  # noqa: E402

PROTOCOLS = [_connections.GuardedH11Protocol]
if _connections.HttpToolsProtocol is not None:
    PROTOCOLS.append(_connections.GuardedHttpToolsProtocol)

#: Answers of 20 pieces, 50 ms apart: long enough to be cut, pipelined or kept alive.
pytestmark = pytest.mark.shared_server(pieces=20, delay=0.05)


@contextlib.contextmanager
def serving(app: Any, protocol: type, limits: ConnectionLimits) -> Iterator[int]:
    """``app`` on uvicorn (asyncio) in a thread with the guarded ``protocol``; its port."""
    config = uvicorn.Config(
        app,
        port=0,
        http=protocol,
        loop="asyncio",
        log_level="warning",
        timeout_keep_alive=limits.keep_alive_timeout,
        timeout_graceful_shutdown=1,
    )
    config.connection_limits = limits
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def until_closed(sock: socket.socket, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.fixture(params=PROTOCOLS, ids=lambda cls: cls.__name__)
def protocol(request: pytest.FixtureRequest) -> type:
    return request.param  # type: ignore[no-any-return]


def test_a_body_that_does_not_come_is_408(protocol: type, upstream: LocalServer) -> None:
    limits = ConnectionLimits(header_timeout=5, body_timeout=0.5)
    app = create_app(base_url=upstream.base_url, trust_env=False)
    with serving(app, protocol, limits) as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        start = time.monotonic()
        data = until_closed(s)
        assert 0.4 < time.monotonic() - start < 1.5
    assert data.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in data
    assert b"The request body did not arrive within 0.5 s." in data


def test_pipelined_requests_and_a_long_keep_alive(protocol: type, upstream: LocalServer) -> None:
    limits = ConnectionLimits(header_timeout=0.5, keep_alive_timeout=1.5)
    app = create_app(base_url=upstream.base_url, trust_env=False)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(app, protocol, limits) as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(request * 2)
        data = b""
        while data.count(b'{"status":"ok"}') < 2:
            data += s.recv(65536)
        # Idle longer than the head deadline, shorter than the keep-alive: still served.
        time.sleep(1.0)
        s.sendall(request)
        data = b""
        while b'{"status":"ok"}' not in data:
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 ")
        # A head begun after a long idle has header_timeout from its first byte.
        time.sleep(1.0)
        s.sendall(b"GET /health HTTP/1.1\r\n")
        start = time.monotonic()
        data = until_closed(s)
        assert 0.4 < time.monotonic() - start < 1.5
    assert data.startswith(b"HTTP/1.1 408 ")


def test_the_default_keep_alive_outlives_a_clients_idle_connection(upstream: LocalServer) -> None:
    """A client (httpx, openai) keeps an idle connection 5 s and then reuses it: the gateway
    must not be closing it that moment (it would be a connection error with no answer)."""
    limits = ConnectionLimits()  # the defaults
    app = create_app(base_url=upstream.base_url, trust_env=False)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    protocol = _connections.GuardedH11Protocol
    with serving(app, protocol, limits) as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        for attempt in range(2):
            if attempt:
                time.sleep(httpx.Limits().keepalive_expiry or 5.0)  # httpx's idle expiry
            s.sendall(request)
            data = b""
            while b'{"status":"ok"}' not in data:
                data += s.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 ")


def test_a_stream_longer_than_every_deadline_is_not_cut(
    protocol: type, upstream: LocalServer
) -> None:
    limits = ConnectionLimits(header_timeout=0.3, body_timeout=0.3, keep_alive_timeout=0.3)
    app = create_app(base_url=upstream.base_url, trust_env=False)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with serving(app, protocol, limits) as port:
        with httpx.stream(
            "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines
        )
    assert text == "".join(pieces_for("Hi", 20))
    assert len(lines) > 3  # it took longer than the deadlines: 20 pieces, 50 ms apart


# --------------------------------------------------------------------------- refusals close


def _answering(status: int, read_body: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if read_body:
            while (await receive()).get("more_body"):
                pass
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _connection_header(app: Any, **request: Any) -> str | None:
    transport = httpx.ASGITransport(app=CloseRefusals(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.request(request.pop("method", "GET"), "/x", **request)
    return response.headers.get("connection")


@pytest.mark.anyio
@pytest.mark.parametrize("status", sorted(REFUSALS | {200, 201, 500, 502, 503}))
async def test_refusals_and_only_they_say_connection_close(status: int) -> None:
    expected = "close" if status in REFUSALS else None
    assert await _connection_header(_answering(status)) == expected


@pytest.mark.anyio
async def test_an_answer_that_leaves_the_body_unread_says_close() -> None:
    assert await _connection_header(_answering(200), method="POST", content=b"x" * 10) == "close"
    read = _answering(200, read_body=True)
    assert await _connection_header(read, method="POST", content=b"x" * 10) is None
    assert await _connection_header(_answering(200), method="POST", content=b"") is None


@pytest.mark.anyio
async def test_a_403_from_the_app_closes() -> None:
    app = create_app(base_url="http://127.0.0.1:9", trust_env=False)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.5", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get("/v1/models")
    assert (response.status_code, response.headers["connection"]) == (403, "close")


# --------------------------------------------------------------------------- settings


def test_the_limits_are_checked() -> None:
    for bad in (
        {"header_timeout": 0},
        {"header_timeout": float("inf")},
        {"keep_alive_timeout": -1},
        {"keep_alive_timeout": True},
        {"max_connections": 0},
        {"forwarded_allow_ips": ("not-an-address",)},
        {"forwarded_allow_ips": "10.0.0.1"},
    ):
        with pytest.raises(InvalidRequestError, match=next(iter(bad))):
            GatewaySettings(**bad)  # type: ignore[arg-type]
    settings = GatewaySettings(forwarded_allow_ips=("10.0.0.1", "10.1.0.0/16", "*", "::1"))
    assert GatewaySettings().forwarded_allow_ips == ()
    assert GatewaySettings().max_connections is None
    assert settings.forwarded_allow_ips[1] == "10.1.0.0/16"


def test_variables_give_the_defaults_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        ENV_NAMES["header_timeout"]: "3.5",
        ENV_NAMES["keep_alive_timeout"]: "7",
        ENV_NAMES["max_connections"]: "123",
        ENV_NAMES["forwarded_allow_ips"]: "10.0.0.1, 10.0.0.2",
    }
    read = GatewaySettings.from_environ(env)
    assert (read.header_timeout, read.keep_alive_timeout) == (3.5, 7.0)
    assert read.max_connections == 123
    assert read.forwarded_allow_ips == ("10.0.0.1", "10.0.0.2")
    assert GatewaySettings.from_environ(env, header_timeout=1).header_timeout == 1
    assert GatewaySettings.from_environ({}) == GatewaySettings()
    with pytest.raises(InvalidRequestError, match=ENV_NAMES["max_connections"]):
        GatewaySettings.from_environ({ENV_NAMES["max_connections"]: "many"})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = create_app(trust_env=False).state.gateway.settings
    assert (settings.header_timeout, settings.max_connections) == (3.5, 123)
    monkeypatch.setenv("AICHATONLINE_GATEWAY_SETTINGS", settings.to_env())
    assert GatewaySettings.from_env() == settings


def test_the_command_passes_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[GatewaySettings] = []

    def serve(settings: GatewaySettings, **options: Any) -> bool:
        seen.append(settings)
        return True

    monkeypatch.setattr("aichatonline.gateway._run.serve", serve)
    monkeypatch.setenv(ENV_NAMES["keep_alive_timeout"], "9")
    flags = ["--header-timeout", "2.5", "--max-connections", "50"]
    flags += ["--forwarded-allow-ips", "10.0.0.1,10.0.0.0/8"]
    assert main(["gateway", "--port", "0", "--base-url", "http://127.0.0.1:9", *flags]) == 0
    (settings,) = seen
    assert (settings.header_timeout, settings.keep_alive_timeout) == (2.5, 9.0)
    assert settings.max_connections == 50
    assert settings.forwarded_allow_ips == ("10.0.0.1", "10.0.0.0/8")
    assert main(["gateway", "--header-timeout", "0"]) == 2
    assert main(["gateway", "--port", "0", "--forwarded-allow-ips", "x.y", "--local"]) == 2


# --------------------------------------------------------------------------- descriptors


def test_the_budget_leaves_a_reserve() -> None:
    assert _descriptors.default_max_connections(1_048_576, 1000) == 1_048_576 - 64 - 1000
    assert _descriptors.default_max_connections(1024, 1000) == 480  # half kept for upstream
    assert _descriptors.default_max_connections(64, 1000) == 1
    assert _descriptors.default_max_connections(0, 1000) == _descriptors.FALLBACK_MAX_CONNECTIONS


def test_the_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 256:
        pytest.skip("needs a finite hard limit of 256 or more")
    code = (
        "import resource\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))\n"
        "from aichatonline.gateway._descriptors import raise_descriptor_limit\n"
        "print(raise_descriptor_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.split() == [str(hard), str(hard)], result.stderr


def test_running_out_of_descriptors_is_one_line_a_second(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A throttle of its own, whatever earlier tests reported.
    monkeypatch.setattr(_descriptors, "_accept_failed", _descriptors.Throttled(_descriptors.log))
    monkeypatch.setattr(_descriptors, "_late_retries", _descriptors.Throttled(_descriptors.log))
    loop = asyncio.new_event_loop()
    others: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: others.append(context))
    try:
        _descriptors.install_accept_guard(loop)
        handler = loop.get_exception_handler()
        assert handler is not None
        failure = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level(logging.WARNING, logger="aichatonline.gateway"):
            for _ in range(1000):
                handler(
                    loop,
                    {"message": "socket.accept() out of system resource", "exception": failure},
                )
            late = "Exception in callback BaseSelectorEventLoop._start_serving(...)"
            for _ in range(1000):
                handler(
                    loop, {"message": late, "exception": ValueError("Invalid file descriptor: -1")}
                )
            handler(loop, {"message": "something else", "exception": ValueError("x")})
    finally:
        loop.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert "socket.accept() out of system resource: Too many open files" in lines[0]
    assert "accept() retries left over after the listening socket closed" in lines[1]
    assert not any(record.exc_info for record in caplog.records)
    assert [context["message"] for context in others] == ["something else"]


# --------------------------------------------------------------------------- log escaping


@given(st.text())
def test_escaped_text_is_printable_and_printable_text_is_kept(text: str) -> None:
    escaped = _log_escape.escape(text)
    assert escaped.isprintable()
    assert _log_escape.escape(escaped) == escaped
    if text.isprintable():
        assert escaped == text


def test_the_filter_escapes_messages_arguments_and_tracebacks() -> None:
    try:
        raise ValueError("bad\x1b[2Jvalue")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s" %d',
        ("1.2.3.4\x1b[31m:0", "GET", "/\r\nforged", 200),
        exc_info,
    )
    assert _log_escape.EscapeControlCharacters().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert '1.2.3.4\\x1b[31m:0 - "GET /\\r\\nforged" 200' in line
    assert "bad\\x1b[2Jvalue" in line
    assert all(part.isprintable() for part in line.split("\n"))


def test_install_puts_one_filter_on_the_loggers_and_their_handlers() -> None:
    handler = logging.StreamHandler()
    logger = logging.getLogger("uvicorn.access")
    logger.addHandler(handler)
    targets = [logging.getLogger(name) for name in _log_escape.LOGGERS]
    try:
        _log_escape.install()
        _log_escape.install()
        for target in (handler, *targets):
            kinds = [type(f) for f in target.filters]
            assert kinds.count(_log_escape.EscapeControlCharacters) == 1
    finally:
        logger.removeHandler(handler)
        for target in targets:
            for installed in list(target.filters):
                if isinstance(installed, _log_escape.EscapeControlCharacters):
                    target.removeFilter(installed)
