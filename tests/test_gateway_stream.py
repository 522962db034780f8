"""The gateway at the HTTP level: the exact SSE stream, error statuses before the stream starts,
an error event after, client disconnects, coalescing under a slow reader, the concurrency and
body limits, routes, CORS and secrets. Raw httpx and sockets against the gateway on uvicorn."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from aichatonline.testing import Fault, LocalServer
from tests.test_gateway import KEY, MODEL, events, running

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from aichatonline._completions import ChunkSequence
from aichatonline.gateway import create_app
from aichatonline.gateway._sse import ChunkEncoder, Pipe
from aichatonline.types import ChatCompletionChunk, ChoiceDelta, ChunkChoice

AUTH = {"Authorization": f"Bearer {KEY}"}

pytestmark = pytest.mark.usefixtures("upstream")


def body(stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
        **extra,
    }


@pytest.fixture(scope="module")
def gateway(shared_server: LocalServer) -> Iterator[tuple[str, Any]]:
    """A gateway without retries (failures show at once), with its app for its counters."""
    app = create_app(base_url=shared_server.base_url, api_key=KEY, max_retries=0, trust_env=False)
    with running(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def http(gateway: tuple[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway[0], headers=AUTH, timeout=10) as client:
        yield client


def test_sse_stream_shape(http: httpx.Client, upstream: LocalServer) -> None:
    with http.stream(
        "POST", "/v1/chat/completions", json=body(stream_options={"include_usage": True})
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        got = events(response)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    first, *middle, finish, usage = chunks
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert all(set(chunk["choices"][0]["delta"]) == {"content"} for chunk in middle)
    assert "".join(
        chunk["choices"][0]["delta"]["content"] for chunk in middle
    ) == upstream.reply_for("Hi")
    assert finish["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert usage["choices"] == []
    assert usage["usage"] is None
    assert all("usage" not in chunk for chunk in chunks[:-1])
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (first["id"], first["created"], MODEL, "chat.completion.chunk")
    }


def test_not_streamed_shape(http: httpx.Client, upstream: LocalServer) -> None:
    response = http.post("/v1/chat/completions", json=body(stream=False))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == upstream.reply_for("Hi")
    assert data["usage"] is None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault(status=429, retry_after="7"), 429, "rate_limit_exceeded"),
        (Fault(status=500), 502, "upstream_status"),
        (Fault(status=401), 502, "upstream_rejected"),
        (Fault(cloudflare=True), 502, "upstream_blocked"),
        (Fault(error_after=0, error_code=500), 502, "upstream_error"),
        (Fault(drop_after=0), 502, "upstream_unreachable"),
    ],
)
def test_failure_before_the_first_piece_has_a_real_status(
    http: httpx.Client, upstream: LocalServer, fault: Fault, status: int, code: str, stream: bool
) -> None:
    upstream.always = fault
    response = http.post("/v1/chat/completions", json=body(stream=stream))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    if status == 429:
        assert response.headers["retry-after"] == "7"
    # Nothing about the upstream side reaches the client: not its address, not its token.
    for request in upstream.chat_requests:
        assert request.headers["uniqueid"] not in response.text
    assert upstream.base_url.split("//")[1] not in response.text


def test_upstream_timeout_is_504(upstream: LocalServer) -> None:
    app = create_app(base_url=upstream.base_url, timeout=0.3, max_retries=0, trust_env=False)
    upstream.always = Fault(stall=3)
    with running(app) as url:
        for stream in (False, True):
            started = time.monotonic()
            response = httpx.post(
                url + "/v1/chat/completions", json=body(stream=stream), timeout=10
            )
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "upstream_timeout"
            assert time.monotonic() - started < 2


def test_failure_after_the_stream_started_is_one_error_event(
    http: httpx.Client, upstream: LocalServer
) -> None:
    upstream.always = Fault(error_after=2, error_code=500)
    with http.stream("POST", "/v1/chat/completions", json=body()) as response:
        assert response.status_code == 200
        got = events(response)
    assert "[DONE]" not in got
    *chunks, last = got
    assert set(last) == {"error"}
    assert last["error"]["code"] == "upstream_error"
    assert all("error" not in chunk for chunk in chunks)
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == "".join(upstream.pieces_for("Hi")[:2])  # what came before, exactly once


def test_openai_raises_on_the_error_event(gateway: tuple[str, Any], upstream: LocalServer) -> None:
    openai = pytest.importorskip("openai")
    upstream.always = Fault(error_after=2, error_code=500)
    client = openai.OpenAI(base_url=gateway[0] + "/v1", api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(model=MODEL, messages=body()["messages"], stream=True)
    pieces: list[str] = []

    def read() -> None:
        for chunk in stream:
            pieces.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError, match="reported an error"):
        read()
    assert "".join(pieces) == "".join(upstream.pieces_for("Hi")[:2])


def test_client_disconnect_closes_the_upstream_response(gateway: tuple[str, Any]) -> None:
    state = gateway[1].state.gateway
    before = state.disconnects
    with LocalServer(pieces=400, delay=0.01) as slow:
        slow_app = create_app(base_url=slow.base_url, api_key=KEY, trust_env=False)
        with running(slow_app) as slow_url:
            with httpx.stream(
                "POST", slow_url + "/v1/chat/completions", json=body(), headers=AUTH
            ) as response:
                lines = response.iter_lines()
                assert next(lines).startswith("data: ")
            # The upstream stream had ~4 s left; the gateway must drop it at once.
            started = time.monotonic()
            assert slow.wait_for(lambda s: s.disconnects == 1, timeout=3)
            assert time.monotonic() - started < 1
            gateway_state = slow_app.state.gateway
            deadline = time.monotonic() + 2
            while gateway_state.active and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gateway_state.active == 0
            assert gateway_state.disconnects == 1
            # Not streamed: a client that gives up also ends the upstream call.
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(
                    slow_url + "/v1/chat/completions",
                    json=body(stream=False),
                    headers=AUTH,
                    timeout=0.3,
                )
            assert slow.wait_for(lambda s: s.disconnects == 2, timeout=3)
    assert state.disconnects == before


def test_slow_reader_gets_coalesced_events_and_bounded_buffering(upstream: LocalServer) -> None:
    # Twice what the kernel's send buffer can hide (tcp_wmem's maximum), 8 MB at least.
    pieces, limit = max(80_000, 2 * _send_buffer_max() // 100), 4096
    with LocalServer(pieces=pieces, piece_size=100) as fast:
        app = create_app(base_url=fast.base_url, buffer_chars=limit, trust_env=False)
        with running(app) as url:
            host, port = url.removeprefix("http://").split(":")
            payload = json.dumps(body()).encode()
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect((host, int(port)))
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                time.sleep(0.5)  # read nothing while the service sends everything it can
                state = app.state.gateway
                assert state.active == 1  # the gateway is held up by us, not finished
                received = bytearray()
                while chunk := sock.recv(1 << 16):
                    received += chunk
    head, _, raw = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    text, content_events = "", 0
    for line in _unchunk(raw).decode().split("\n"):
        if line.startswith("data: {"):
            delta = json.loads(line[6:])["choices"][0]["delta"]
            if delta.get("content"):
                content_events += 1
                text += delta["content"]
    assert text == "".join(fast.pieces_for("Hi"))
    assert content_events < pieces / 20  # coalesced: many pieces per event
    assert state.peak_buffered <= limit + fast.piece_size  # bounded, whatever the reader does


def _send_buffer_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
            return int(wmem.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


def _unchunk(raw: bytes) -> bytes:
    out, at = bytearray(), 0
    while True:
        end = raw.index(b"\r\n", at)
        size = int(raw[at:end], 16)
        if size == 0:
            return bytes(out)
        out += raw[end + 2 : end + 2 + size]
        at = end + 4 + size


def test_concurrency_limit_is_429(upstream: LocalServer) -> None:
    with LocalServer(pieces=200, delay=0.01) as slow:
        app = create_app(base_url=slow.base_url, max_concurrency=2, trust_env=False)
        with running(app) as url, httpx.Client(base_url=url, timeout=10) as http:
            with (
                http.stream("POST", "/v1/chat/completions", json=body()) as one,
                http.stream("POST", "/v1/chat/completions", json=body()) as two,
            ):
                assert one.status_code == two.status_code == 200
                third = http.post("/v1/chat/completions", json=body(stream=False))
                assert third.status_code == 429
                assert third.headers["retry-after"] == "1"
                assert third.json()["error"]["code"] == "concurrency_limit_exceeded"
            slow.delay = 0
            deadline = time.monotonic() + 3  # the gateway sees the two clients leave
            while app.state.gateway.active and time.monotonic() < deadline:
                time.sleep(0.01)
            assert http.post("/v1/chat/completions", json=body(stream=False)).status_code == 200


def test_body_limit_is_413(upstream: LocalServer) -> None:
    app = create_app(base_url=upstream.base_url, max_body_bytes=1000, trust_env=False)
    big = body(messages=[{"role": "user", "content": "x" * 2000}])
    with running(app) as url:
        response = httpx.post(url + "/v1/chat/completions", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            data = json.dumps(big).encode()
            yield from (data[i : i + 100] for i in range(0, len(data), 100))

        response = httpx.post(url + "/v1/chat/completions", content=chunks())
        assert response.status_code == 413
    assert upstream.chat_requests == []


def test_a_body_that_does_not_arrive_is_408(
    gateway: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aichatonline.gateway._chat.BODY_SECONDS", 0.3)
    host, port = gateway[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b'Content-Length: 100\r\n\r\n{"model"' % KEY.encode()
        )
        answer = b""
        while b"}}" not in answer:  # the head and the JSON body may come in two reads
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"code":"request_timeout"' in answer


def test_default_body_limit_is_one_mebibyte(http: httpx.Client) -> None:
    huge = body(messages=[{"role": "user", "content": "x" * (1024 * 1024)}])
    response = http.post("/v1/chat/completions", json=huge)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps(body(n=3)).encode(), "n"),
        (json.dumps(body(temperature="hot")).encode(), "temperature"),
        (
            json.dumps(body(messages=[{"role": "tool", "content": "x"}])).encode(),
            "messages[0].role",
        ),
        (json.dumps({"messages": body()["messages"]}).encode(), "model"),
    ],
)
def test_bad_requests_are_400_with_param(
    http: httpx.Client, content: bytes, param: str | None
) -> None:
    response = http.post("/v1/chat/completions", content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_unknown_route_and_method(http: httpx.Client, gateway: tuple[str, Any]) -> None:
    response = http.get("/v1/embeddings")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/embeddings)"
    response = http.get("/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    # Without the key, an unknown route is 401 first (as OpenAI answers).
    assert httpx.get(gateway[0] + "/v1/embeddings").status_code == 401


def test_cors_only_when_asked(http: httpx.Client, upstream: LocalServer) -> None:
    origin = "https://app.example"
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    response = http.get("/v1/models", headers={"Origin": origin})
    assert "access-control-allow-origin" not in response.headers
    assert (
        "access-control-allow-origin" not in http.options("/v1/models", headers=preflight).headers
    )
    app = create_app(
        base_url=upstream.base_url, api_key=KEY, cors_origins=[origin], trust_env=False
    )
    with running(app) as url:
        answer = httpx.options(url + "/v1/chat/completions", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        other = httpx.get(url + "/v1/models", headers={"Origin": "https://evil.example", **AUTH})
        assert "access-control-allow-origin" not in other.headers


def test_the_key_is_never_logged(
    gateway: tuple[str, Any], upstream: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = gateway[0]
    httpx.post(url + "/v1/chat/completions", json=body(stream=False), headers=AUTH)
    httpx.post(
        url + "/v1/chat/completions", json=body(), headers={"Authorization": f"Bearer {KEY}x"}
    )
    upstream.always = Fault(status=500)
    httpx.post(url + "/v1/chat/completions", json=body(), headers=AUTH)
    assert KEY not in caplog.text
    tokens = {request.headers["uniqueid"] for request in upstream.chat_requests}
    assert tokens
    assert not any(token in caplog.text for token in tokens)


# --------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize(
    "text", ["", "plain", 'q"uo\\te\n\t', "ünïcödé ✓ 🚀", "\x00\x1f", "\ud83d"]
)
def test_content_events_equal_the_types_serialization(text: str) -> None:
    encoder = ChunkEncoder(ChunkSequence(MODEL, id="chatcmpl-x", created=1700000000))
    chunk = ChatCompletionChunk(
        id="chatcmpl-x",
        created=1700000000,
        model=MODEL,
        choices=[ChunkChoice(delta=ChoiceDelta(content=text))],
    )
    assert encoder.content(text) == encoder.event(chunk)
    assert json.loads(encoder.content(text)[6:]) == chunk.to_dict()
    assert encoder.events([chunk]) == encoder.event(chunk)


def test_pipe_coalesces_and_bounds() -> None:
    async def main() -> list[list[str]]:
        pipe = Pipe(limit=10)
        taken: list[list[str]] = []

        async def consumer() -> None:
            while not pipe.finished:
                taken.append(await pipe.take())
                await anyio.sleep(0.01)  # a slow reader

        async with anyio.create_task_group() as group:
            group.start_soon(consumer)
            for index in range(20):
                if not pipe.put(f"{index:03d}"):
                    await pipe.room()
                    assert pipe._size == 0  # resumed only once the reader took it all
            pipe.close()
        assert pipe.peak <= 10 + 3
        return taken

    taken = anyio.run(main)
    assert [piece for batch in taken for piece in batch] == [f"{i:03d}" for i in range(20)]
    assert len([batch for batch in taken if batch]) < 20
