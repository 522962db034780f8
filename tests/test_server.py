"""Tests of ``aichatonline.testing.LocalServer``: the wire protocol, every fault, the lifecycle.

Everything goes over real loopback sockets with plain httpx (or raw sockets where httpx would
hide the detail under test), never through the SDK's own client code.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from aichatonline.testing import (
    CHAT_PATH,
    TOKEN_PATH,
    Fault,
    LocalServer,
    RecordedRequest,
    ServerOptions,
    pieces_for,
    reply_for,
    run_server,
    spawn_server,
)

CANVAS = {"canvas": "-abcdefghij"}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        yield http


def get_token(client: httpx.Client) -> str:
    response = client.get(TOKEN_PATH, params=CANVAS)
    assert response.status_code == 200
    token = response.json()["data"]
    assert isinstance(token, str)
    return token


def chat(
    client: httpx.Client,
    token: str | None,
    prompt: str = "Hi",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a chat request and read the whole response."""
    all_headers = {"UniqueId": token} if token is not None else {}
    all_headers.update(headers or {})
    return client.post(
        CHAT_PATH, json={"conversationId": "abcdefghij", "prompt": prompt}, headers=all_headers
    )


def messages(body: str) -> list[str]:
    """The ``data.message`` of every valid NDJSON line of a body."""
    found = []
    for line in body.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("data"), dict):
            message = item["data"].get("message")
            if isinstance(message, str):
                found.append(message)
    return found


def stream_lines(
    client: httpx.Client, token: str, prompt: str = "Hi", **kwargs: object
) -> tuple[list[str], Exception | None]:
    """Stream a chat; return the lines received and the exception that ended it, if any."""
    received: list[str] = []
    try:
        with client.stream(
            "POST",
            CHAT_PATH,
            json={"conversationId": "abcdefghij", "prompt": prompt},
            headers={"UniqueId": token},
            **kwargs,  # type: ignore[arg-type]
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                received.append(line)
    except httpx.HTTPError as exc:
        return received, exc
    return received, None


# --------------------------------------------------------------------------- the answer


def test_reply_for_whole_prompt_and_last_user_message() -> None:
    assert reply_for("Hi") == (
        "You said: Hi. This is the local AiChatOnline server — ünïcödé ✓ 🚀."
    )
    prompt = "System: be brief\nUser: first\nAssistant: ok\nUser: second\nAssistant:"
    assert reply_for(prompt).startswith("You said: second. ")
    multi = "User: line one\nline two\nDeveloper: x\nUser: a\nb\nAssistant:"
    assert reply_for(multi).startswith("You said: a\nb. ")
    # "User:" without the space is not a role line: the prompt is taken whole.
    assert reply_for("User:x").startswith("You said: User:x. ")


def test_pieces_for_cuts_the_reply_and_repeats_it() -> None:
    reply = reply_for("Hi")
    once = pieces_for("Hi")
    assert "".join(once) == reply
    assert all(len(piece) == 8 for piece in once[:-1])
    assert 0 < len(once[-1]) <= 8
    repeated = pieces_for("Hi", pieces=30, piece_size=5)
    assert len(repeated) == 30
    assert all(len(piece) == 5 for piece in repeated)
    assert "".join(repeated) == (reply * 3)[:150]
    assert pieces_for("Hi", pieces=0) == []
    with pytest.raises(ValueError, match="piece_size"):
        pieces_for("Hi", piece_size=0)


# --------------------------------------------------------------------------- happy path


def test_token_and_chat_round_trip(server: LocalServer, client: httpx.Client) -> None:
    token_response = client.get(TOKEN_PATH, params=CANVAS)
    assert token_response.status_code == 200
    assert token_response.headers["content-type"] == "application/json"
    assert token_response.json() == {"code": 200, "data": token_response.json()["data"]}
    token = token_response.json()["data"]
    assert get_token(client) != token  # every call issues a new token
    assert server.tokens_issued == 2

    response = chat(client, token, "Hello there")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    expected = pieces_for("Hello there")
    assert messages(response.text) == expected
    assert "".join(expected) == reply_for("Hello there")
    # Compact JSON, one object per line, real UTF-8 on the wire (not \\u escapes).
    lines = response.content.split(b"\n")
    assert lines[-1] == b""
    assert lines[0] == b'{"code":200,"data":{"message":"You said"}}'
    assert "ü".encode() in response.content
    assert b"\\u" not in response.content


def test_answer_options_can_change_after_start(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.pieces = 3
    server.piece_size = 5
    response = chat(client, token)
    assert messages(response.text) == ["You s", "aid: ", "Hi. T"]
    assert server.pieces_for("Hi") == ["You s", "aid: ", "Hi. T"]
    assert server.reply_for("Hi") == reply_for("Hi")
    server.pieces = 40
    assert messages(chat(client, token).text) == pieces_for("Hi", 40, 5)


def test_delay_paces_the_lines(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.pieces = 4
    server.delay = 0.05
    started = time.monotonic()
    lines, error = stream_lines(client, token)
    assert error is None
    assert len(lines) == 4
    assert time.monotonic() - started >= 0.15  # three pauses between four lines


# --------------------------------------------------------------------------- request errors


def test_chat_rejects_missing_unknown_and_expired_tokens(
    server: LocalServer, client: httpx.Client
) -> None:
    for token in (None, "not-a-token"):
        response = chat(client, token)
        assert response.status_code == 401
        assert response.json()["code"] == 401
        assert response.json()["message"]
    token = get_token(client)
    assert chat(client, token).status_code == 200
    server.expire_tokens()
    assert chat(client, token).status_code == 401
    assert chat(client, get_token(client)).status_code == 200


def test_token_ttl_expires_tokens(server: LocalServer, client: httpx.Client) -> None:
    server.token_ttl = 0.2
    token = get_token(client)
    assert chat(client, token).status_code == 200
    time.sleep(0.3)
    response = chat(client, token)
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_require_token_false_accepts_any_request() -> None:
    with LocalServer(require_token=False) as server, httpx.Client(base_url=server.base_url) as c:
        assert messages(chat(c, None).text) == pieces_for("Hi")
        assert messages(chat(c, "whatever").text) == pieces_for("Hi")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"prompt": "Hi"}',
        b'{"conversationId": "x"}',
        b'{"conversationId": "x", "prompt": 5}',
    ],
)
def test_chat_rejects_a_bad_body(client: httpx.Client, body: bytes) -> None:
    response = client.post(
        CHAT_PATH,
        content=body,
        headers={"UniqueId": get_token(client), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_unknown_path_and_wrong_method(client: httpx.Client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "not found"}
    response = client.get(CHAT_PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    response = client.post(TOKEN_PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


def test_malformed_request_line_gets_400_and_close(server: LocalServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in data


# --------------------------------------------------------------------------- faults


def test_fault_status_with_retry_after(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.inject(Fault(status=429, retry_after="2"))
    response = chat(client, token)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json() == {"code": 429, "message": "Too Many Requests"}
    server.inject(Fault(status=502, body=b"<html>bad gateway</html>"))
    response = chat(client, token)
    assert response.status_code == 502
    assert response.content == b"<html>bad gateway</html>"
    assert "retry-after" not in response.headers
    assert chat(client, token).status_code == 200  # consumed


@pytest.mark.parametrize("body", [b"<html>down for maintenance</html>", b""], ids=["html", "empty"])
def test_fault_status_200_answers_exactly_the_raw_body(
    server: LocalServer, client: httpx.Client, body: bytes
) -> None:
    token = get_token(client)
    server.inject(Fault(status=200, body=body), Fault(endpoint="token", status=200, body=body))
    for response in (chat(client, token), client.get(TOKEN_PATH, params=CANVAS)):
        assert response.status_code == 200
        assert response.content == body
        assert response.headers["content-length"] == str(len(body))
        assert "transfer-encoding" not in response.headers
    header = Fault(status=200, body=body).to_header()
    response = chat(client, token, headers={"X-Fault": header})
    assert (response.status_code, response.content) == (200, body)
    assert messages(chat(client, token).text) == pieces_for("Hi")  # consumed; connection reusable
    assert server.open_connections == 1


def test_fault_cloudflare_page(server: LocalServer, client: httpx.Client) -> None:
    server.inject(Fault(cloudflare=True))
    response = chat(client, get_token(client))
    assert response.status_code == 403
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert response.headers["server"] == "cloudflare"
    assert response.headers["cf-ray"]
    assert "<title>Just a moment...</title>" in response.text


@pytest.mark.parametrize("after", [0, 3])
def test_fault_drop_after_ends_the_body_early(
    server: LocalServer, client: httpx.Client, after: int
) -> None:
    token = get_token(client)
    server.inject(Fault(drop_after=after))
    lines, error = stream_lines(client, token)
    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(lines) == after
    assert messages("\n".join(lines)) == pieces_for("Hi")[:after]
    assert server.disconnects == 0  # the server dropped it; the client did not leave


def test_fault_drop_after_past_the_end_omits_only_the_last_chunk(
    server: LocalServer, client: httpx.Client
) -> None:
    server.inject(Fault(drop_after=1000))
    lines, error = stream_lines(client, get_token(client))
    assert isinstance(error, httpx.RemoteProtocolError)
    assert messages("\n".join(lines)) == pieces_for("Hi")


def test_fault_drop_reset(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.inject(Fault(drop_after=2, drop_reset=True))
    lines, error = stream_lines(client, token)
    assert isinstance(error, httpx.ReadError)
    assert "reset" in str(error).lower()
    assert len(lines) == 2


def test_fault_stall_times_out_a_client_read(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.inject(Fault(stall=30))
    lines, error = stream_lines(client, token, timeout=httpx.Timeout(5, read=0.1))
    assert isinstance(error, httpx.ReadTimeout)
    assert lines == []
    # The client gave up: the server notices at once, long before the stall would end.
    assert server.wait_for(lambda s: s.disconnects == 1, timeout=5)


def test_fault_stall_after_some_lines_then_completes(
    server: LocalServer, client: httpx.Client
) -> None:
    token = get_token(client)
    server.inject(Fault(stall=0.3, stall_after=2))
    started = time.monotonic()
    lines, error = stream_lines(client, token)
    assert error is None
    assert time.monotonic() - started >= 0.3
    assert messages("\n".join(lines)) == pieces_for("Hi")
    server.inject(Fault(stall=0.3, stall_after=2))
    lines, error = stream_lines(client, token, timeout=httpx.Timeout(5, read=0.1))
    assert isinstance(error, httpx.ReadTimeout)
    assert len(lines) == 2


def test_fault_malformed_lines_leave_the_text_unchanged(
    server: LocalServer, client: httpx.Client
) -> None:
    server.inject(Fault(malformed=True))
    response = chat(client, get_token(client))
    lines = response.text.splitlines()
    expected = pieces_for("Hi")
    assert messages(response.text) == expected
    assert len(lines) == 2 * len(expected) + 1  # one before each piece and one at the end
    assert "this line is not JSON" in lines
    assert '{"code":200,"data":{}}' in lines
    assert "[1,2,3]" in lines


def test_fault_in_band_error_line(server: LocalServer, client: httpx.Client) -> None:
    server.inject(Fault(error_after=2, error_code=503, error_message="overloaded"))
    response = chat(client, get_token(client))
    assert response.status_code == 200  # the body ended normally
    lines = response.text.splitlines()
    assert messages(response.text) == pieces_for("Hi")[:2]
    assert json.loads(lines[-1]) == {"code": 503, "message": "overloaded"}
    assert len(lines) == 3


def test_fault_trickle_sends_one_byte_per_chunk(server: LocalServer, client: httpx.Client) -> None:
    server.inject(Fault(trickle=True))
    with client.stream(
        "POST",
        CHAT_PATH,
        json={"conversationId": "x", "prompt": "Hi"},
        headers={"UniqueId": get_token(client)},
    ) as response:
        chunks = list(response.iter_raw())
    assert len(chunks) > 50
    assert {len(chunk) for chunk in chunks} == {1}
    assert messages(b"".join(chunks).decode()) == pieces_for("Hi")


def test_fault_trickle_combines_with_drop(server: LocalServer, client: httpx.Client) -> None:
    server.inject(Fault(drop_after=3, trickle=True))
    lines, error = stream_lines(client, get_token(client))
    assert isinstance(error, httpx.RemoteProtocolError)
    assert messages("\n".join(lines)) == pieces_for("Hi")[:3]


def test_fault_expire_token(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.inject(Fault(expire_token=True))
    assert chat(client, token).status_code == 401
    assert chat(client, token).status_code == 401  # gone for good
    assert chat(client, get_token(client)).status_code == 200


def test_fault_variant_changes_the_answer(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    normal = "".join(messages(chat(client, token).text))
    server.inject(Fault(variant=True), Fault(variant=True))
    first = "".join(messages(chat(client, token).text))
    second = "".join(messages(chat(client, token).text))
    assert len({normal, first, second}) == 3
    assert first == f"Variant 1: {normal}"
    assert "".join(messages(chat(client, token).text)) == normal


def test_inject_is_a_fifo_per_endpoint(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.inject(Fault(status=503), Fault(endpoint="token", status=500), Fault(status=429))
    assert server.pending_faults == [
        Fault(status=503),
        Fault(status=429),
        Fault(endpoint="token", status=500),
    ]
    assert chat(client, token).status_code == 503
    assert chat(client, token).status_code == 429
    assert chat(client, token).status_code == 200
    assert client.get(TOKEN_PATH, params=CANVAS).status_code == 500
    assert client.get(TOKEN_PATH, params=CANVAS).status_code == 200
    assert server.pending_faults == []


def test_always_applies_after_the_queue(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    server.always = Fault(status=503, retry_after="1")
    server.inject(Fault(status=429))
    assert chat(client, token).status_code == 429
    assert chat(client, token).status_code == 503
    assert chat(client, token).status_code == 503
    assert client.get(TOKEN_PATH, params=CANVAS).status_code == 200  # other endpoint
    server.always = None
    assert chat(client, token).status_code == 200


def test_x_fault_header(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    response = chat(client, token, headers={"X-Fault": "status=503; retry_after=2"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    with client.stream(
        "POST",
        CHAT_PATH,
        json={"conversationId": "x", "prompt": "Hi"},
        headers={"UniqueId": token, "X-Fault": "drop_after=3; trickle"},
    ) as response:
        chunks: list[bytes] = []
        with pytest.raises(httpx.RemoteProtocolError):
            chunks.extend(response.iter_raw())
    assert {len(chunk) for chunk in chunks} == {1}
    assert messages(b"".join(chunks).decode()) == pieces_for("Hi")[:3]
    response = chat(client, token, headers={"X-Fault": "bogus=1"})
    assert response.status_code == 400
    assert "bogus" in response.json()["message"]
    # The header does not consume queued faults.
    server.inject(Fault(status=429))
    assert chat(client, token, headers={"X-Fault": "malformed"}).status_code == 200
    assert chat(client, token).status_code == 429


def test_fault_header_syntax_round_trips() -> None:
    fault = Fault(drop_after=3, trickle=True, status=503, retry_after="2", stall=0.5)
    assert Fault.from_header(fault.to_header()) == fault
    assert Fault.from_header("drop-after=1; trickle=false; VARIANT") == Fault(
        drop_after=1, variant=True
    )
    assert Fault.from_header("", endpoint="token") == Fault(endpoint="token")
    for bad in ("status", "status=abc", "trickle=maybe", "nope", "status=700"):
        with pytest.raises(ValueError, match=r"X-Fault|status"):
            Fault.from_header(bad)
    with pytest.raises(ValueError, match="endpoint"):
        Fault(endpoint="other")  # type: ignore[arg-type]


def test_token_endpoint_faults(server: LocalServer, client: httpx.Client) -> None:
    server.inject(
        Fault(endpoint="token", status=429, retry_after="3"),
        Fault(endpoint="token", cloudflare=True),
        Fault(endpoint="token", malformed=True),
        Fault(endpoint="token", error_after=0, error_code=500, error_message="no"),
        Fault(endpoint="token", trickle=True),
    )
    response = client.get(TOKEN_PATH, params=CANVAS)
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")
    assert "Just a moment..." in client.get(TOKEN_PATH, params=CANVAS).text
    response = client.get(TOKEN_PATH, params=CANVAS)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert client.get(TOKEN_PATH, params=CANVAS).json() == {"code": 500, "message": "no"}
    with client.stream("GET", TOKEN_PATH, params=CANVAS) as response:
        chunks = list(response.iter_raw())
    # Not chunked here, so the client may read several one-byte writes at once.
    assert json.loads(b"".join(chunks))["code"] == 200
    assert server.tokens_issued == 1

    server.inject(Fault(endpoint="token", drop_after=0))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(TOKEN_PATH, params=CANVAS)
    server.inject(Fault(endpoint="token", stall=0.3))
    with pytest.raises(httpx.ReadTimeout):
        client.get(TOKEN_PATH, params=CANVAS, timeout=httpx.Timeout(5, read=0.1))


# --------------------------------------------------------------------------- recording


def test_requests_are_recorded(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    chat(client, token, "recorded", headers={"X-Custom": "1"})
    client.get("/elsewhere?a=1&b=")
    records = server.requests
    assert [r.method for r in records] == ["GET", "POST", "GET"]
    token_request, chat_request, other = records
    assert token_request.path == TOKEN_PATH
    assert token_request.query == CANVAS
    assert chat_request.path == CHAT_PATH
    assert chat_request.headers["uniqueid"] == token
    assert chat_request.headers["x-custom"] == "1"
    assert chat_request.headers["content-type"] == "application/json"
    assert chat_request.json() == {"conversationId": "abcdefghij", "prompt": "recorded"}
    assert json.loads(chat_request.body) == chat_request.json()
    assert other.query == {"a": "1", "b": ""}
    assert server.chat_requests == [chat_request]
    assert server.token_requests == [token_request]
    assert isinstance(chat_request, RecordedRequest)
    with pytest.raises(AttributeError):
        chat_request.method = "PUT"  # type: ignore[misc]
    records.clear()  # a copy
    assert len(server.requests) == 3


def test_reset_clears_records_counters_and_faults(
    server: LocalServer, client: httpx.Client
) -> None:
    token = get_token(client)
    server.inject(Fault(status=500))
    server.always = Fault(status=503)
    server.reset()
    assert server.requests == []
    assert server.tokens_issued == 0
    assert server.pending_faults == []
    assert chat(client, token).status_code == 200  # tokens survive a reset
    assert server.always is None


def test_repr_shows_counts_but_no_tokens(server: LocalServer, client: httpx.Client) -> None:
    token = get_token(client)
    text = repr(server)
    assert server.base_url in text
    assert "tokens_issued=1" in text
    assert token not in text
    server.stop()
    assert "stopped" in repr(server)


def test_disconnects_count_a_client_leaving_mid_stream(
    server: LocalServer, client: httpx.Client
) -> None:
    token = get_token(client)
    server.pieces = 100
    server.delay = 0.05
    with client.stream(
        "POST", CHAT_PATH, json={"conversationId": "x", "prompt": "Hi"}, headers={"UniqueId": token}
    ) as response:
        lines = response.iter_lines()
        next(lines)
        next(lines)
    # The pause between lines ends as soon as the client is gone.
    assert server.wait_for(lambda s: s.disconnects == 1, timeout=2)
    assert server.wait_for(lambda s: s.open_connections == 0, timeout=2)
    # A complete response is not a disconnect.
    server.pieces = 2
    stream_lines(client, token)
    assert server.disconnects == 1


def test_wait_for_times_out(server: LocalServer) -> None:
    started = time.monotonic()
    assert not server.wait_for(lambda s: s.tokens_issued > 0, timeout=0.1)
    assert time.monotonic() - started < 1


# --------------------------------------------------------------------------- connections


def recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_keep_alive_serves_several_requests_on_one_connection(
    server: LocalServer, client: httpx.Client
) -> None:
    token = get_token(client)
    for _ in range(3):
        assert messages(chat(client, token).text) == pieces_for("Hi")
    assert server.open_connections == 1
    assert len(server.requests) == 4


def test_raw_pipelined_keep_alive_requests_and_chunked_upload(server: LocalServer) -> None:
    body = json.dumps({"conversationId": "x", "prompt": "raw"}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(
            b"GET " + TOKEN_PATH.encode() + b"?canvas=-abcdefghij HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST " + CHAT_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n" + chunked
        )
        data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\n" in data
    assert server.requests[1].json() == {"conversationId": "x", "prompt": "raw"}


def test_http10_request_closes_the_connection(server: LocalServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET " + TOKEN_PATH.encode() + b" HTTP/1.0\r\n\r\n")
        data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in data


@pytest.mark.anyio
async def test_300_concurrent_streams(server: LocalServer) -> None:
    server.pieces = 20
    limits = httpx.Limits(max_connections=300)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as http:
        token = (await http.get(TOKEN_PATH, params=CANVAS)).json()["data"]
        results: list[list[str]] = []

        async def one(index: int) -> None:
            prompt = f"request {index}"
            async with http.stream(
                "POST",
                CHAT_PATH,
                json={"conversationId": "x", "prompt": prompt},
                headers={"UniqueId": token},
            ) as response:
                assert response.status_code == 200
                body = "".join([line + "\n" async for line in response.aiter_lines()])
            assert messages(body) == pieces_for(prompt, 20)
            results.append(messages(body))

        async with anyio.create_task_group() as group:
            for index in range(300):
                group.start_soon(one, index)
    assert len(results) == 300
    assert len(server.chat_requests) == 300


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file descriptor limits")
def test_1000_concurrent_connections(server: LocalServer) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:
        if hard != resource.RLIM_INFINITY and hard < 2200:
            pytest.skip("not enough file descriptors for 1000 connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2200, hard))

    async def main() -> int:
        connections = [await asyncio.open_connection(server.host, server.port) for _ in range(1000)]
        request = f"GET {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        try:
            for _, writer in connections:
                writer.write(request)
            heads = [await reader.readuntil(b"\r\n\r\n") for reader, _ in connections]
            assert server.open_connections == 1000
            return sum(head.startswith(b"HTTP/1.1 200 OK") for head in heads)
        finally:
            for _, writer in connections:
                writer.close()
            for _, writer in connections:
                await writer.wait_closed()

    assert asyncio.run(main()) == 1000
    assert server.wait_for(lambda s: s.open_connections == 0, timeout=5)


# --------------------------------------------------------------------------- options


def test_options_as_keywords_as_an_object_or_both() -> None:
    assert LocalServer().options == ServerOptions()
    server = LocalServer(pieces=3, delay=0.5)
    assert server.options == ServerOptions(pieces=3, delay=0.5)
    assert (server.pieces, server.piece_size, server.delay) == (3, 8, 0.5)
    base = ServerOptions(pieces=2, piece_size=4, token_ttl=60, record_requests=False)
    server = LocalServer(options=base, piece_size=5)  # keywords override the object
    assert server.options == dataclasses.replace(base, piece_size=5)
    assert (server.token_ttl, server.record_requests, server.require_token) == (60, False, True)
    with pytest.raises(TypeError):
        LocalServer(pices=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="ServerOptions"):
        LocalServer(options={"pieces": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"pieces": -1},
        {"piece_size": 0},
        {"delay": -0.1},
        {"delay": float("inf")},
        {"token_ttl": -1.0},
        {"token_ttl": float("nan")},
    ],
)
def test_options_are_checked_when_made_and_when_set(bad: dict[str, object]) -> None:
    ((name, value),) = bad.items()
    with pytest.raises(ValueError, match=name):
        ServerOptions(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        LocalServer(**bad)  # type: ignore[arg-type]
    server = LocalServer()
    with pytest.raises(ValueError, match=name):
        setattr(server, name, value)
    assert server.options == ServerOptions()  # unchanged


def test_setting_an_option_attribute_replaces_the_options(server: LocalServer) -> None:
    before = server.options
    server.pieces = 4
    server.delay = 0
    assert server.options == dataclasses.replace(before, pieces=4, delay=0)
    assert before == ServerOptions()  # frozen: a new object, the old one is untouched
    server.options = ServerOptions(piece_size=3)
    assert server.options.pieces is None
    assert server.piece_size == 3
    assert server.pieces_for("Hi") == pieces_for("Hi", None, 3)
    with pytest.raises(TypeError, match="ServerOptions"):
        server.options = None  # type: ignore[assignment]


def test_options_record_requests_false(client: httpx.Client, server: LocalServer) -> None:
    server.record_requests = False
    get_token(client)
    assert server.requests == []
    assert server.tokens_issued == 1


def test_options_command_line_round_trip() -> None:
    parser = argparse.ArgumentParser()
    ServerOptions.add_arguments(parser)
    assert ServerOptions.from_namespace(parser.parse_args([])) == ServerOptions()
    options = ServerOptions(pieces=3, piece_size=4, delay=0.25, token_ttl=9.5, require_token=False)
    argv = options.to_argv()
    assert argv == [
        "--pieces", "3", "--piece-size", "4", "--delay", "0.25", "--token-ttl", "9.5",
        "--no-require-token",
    ]  # fmt: skip
    assert ServerOptions.from_namespace(parser.parse_args(argv)) == options
    assert ServerOptions(record_requests=False).to_argv() == []  # not a command-line option
    for bad in (["--pieces", "-1"], ["--piece-size", "0"], ["--delay", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_option_keywords_are_the_dataclass_fields() -> None:
    from aichatonline.testing._options import ServerOptionFields

    fields = {spec.name for spec in dataclasses.fields(ServerOptions)}
    assert set(ServerOptionFields.__annotations__) == fields


def test_run_server_takes_options_and_never_records() -> None:
    urls: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=run_server,
        kwargs={
            "options": ServerOptions(pieces=2, record_requests=True),
            "piece_size": 4,
            "require_token": False,
            "on_ready": urls.append,
            "stop_event": stop,
        },
    )
    thread.start()
    try:
        for _ in range(500):
            if urls:
                break
            time.sleep(0.01)
        with httpx.Client(base_url=urls[0]) as http:
            assert messages(chat(http, None).text) == ["You ", "said"]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_module_cli_rejects_a_bad_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aichatonline.testing", "--piece-size", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--piece-size" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- package layout


def test_public_names_load_lazily_from_their_modules() -> None:
    import aichatonline.testing as testing

    assert "ServerOptions" in testing.__all__
    assert dir(testing) == sorted(testing.__all__)
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    with pytest.raises(AttributeError):
        _ = testing.nope


def test_modules_share_only_public_names_and_never_import_the_sdk() -> None:
    package = Path(__file__).resolve().parents[1] / "aichatonline" / "testing"
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        if path.name == "pytest_plugin.py":
            # Not the server: the bridge from a user's tests to the SDK, which turns the
            # SDK's back-off off through its public switch (``aichatonline.set_testing``).
            imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
            sdk = [a.name for n in imports for a in n.names if a.name.startswith("aichatonline")]
            assert sdk == ["aichatonline"], sdk
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                internal = node.level > 0 or module.startswith("aichatonline.testing")
                assert internal or not module.startswith("aichatonline"), (path.name, module)
                if internal:
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{path.name} imports {private} from {module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    assert not name.startswith("aichatonline") or name.startswith(
                        "aichatonline.testing"
                    ), (path.name, name)


# --------------------------------------------------------------------------- lifecycle


def test_start_stop_sync_is_idempotent_and_frees_the_port() -> None:
    server = LocalServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    assert server.start() is server
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    url = server.base_url
    assert url == f"http://127.0.0.1:{server.port}"
    assert httpx.get(url + TOKEN_PATH).status_code == 200
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + TOKEN_PATH)
    # The same port can be taken again at once, even by a fixed-port server.
    with LocalServer(port=server.port) as again:
        assert again.base_url == url
        with pytest.raises(OSError):  # ... but not twice
            LocalServer(port=server.port).start()


def test_stop_ends_stalled_and_paced_streams_promptly() -> None:
    server = LocalServer(delay=10, pieces=5).start()
    server.inject(Fault(stall=10))
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        token = get_token(http)
        request = {
            "method": "POST",
            "url": CHAT_PATH,
            "json": {"conversationId": "x", "prompt": "Hi"},
            "headers": {"UniqueId": token},
        }
        with http.stream(**request) as stalled, http.stream(**request) as paced:  # type: ignore[arg-type]
            paced_lines = paced.iter_lines()
            next(paced_lines)
            assert server.open_connections == 2
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 2
            with pytest.raises(httpx.RemoteProtocolError):
                list(paced_lines)
            with pytest.raises(httpx.RemoteProtocolError):
                stalled.read()
    assert server.disconnects == 0  # stopping is not the client leaving


@pytest.mark.anyio
async def test_async_context_manager(anyio_backend: str) -> None:
    async with LocalServer(pieces=2) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        token = (await http.get(TOKEN_PATH, params=CANVAS)).json()["data"]
        response = await http.post(
            CHAT_PATH, json={"conversationId": "x", "prompt": "Hi"}, headers={"UniqueId": token}
        )
        assert messages(response.text) == pieces_for("Hi", 2)
    assert not server.running


def test_spawn_server_subprocess() -> None:
    with spawn_server(pieces=2, piece_size=4) as child:
        assert child.base_url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=child.base_url) as http:
            token = get_token(http)
            assert messages(chat(http, token).text) == ["You ", "said"]
    assert child.process.returncode == 0


@pytest.mark.anyio
async def test_spawn_server_from_async_code(anyio_backend: str) -> None:
    options = ServerOptions(require_token=False)
    child = await anyio.to_thread.run_sync(lambda: spawn_server(options=options))
    try:
        async with httpx.AsyncClient(base_url=child.base_url) as http:
            response = await http.post(CHAT_PATH, json={"conversationId": "x", "prompt": "Hi"})
            assert messages(response.text) == pieces_for("Hi")
    finally:
        assert await anyio.to_thread.run_sync(child.stop) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_module_cli_prints_the_url_and_exits_cleanly(sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "aichatonline.testing", "--port", "0", "--pieces", "1", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + TOKEN_PATH, params=CANVAS).status_code == 200
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert stdout == ""  # only the URL goes to stdout
    assert TOKEN_PATH in stderr  # -v logs requests
    assert "Traceback" not in stderr


# --------------------------------------------------------------------------- pytest plugin


def test_plugin_fixtures(
    aichatonline_server: LocalServer, aichatonline_base_url: str, aichatonline_env: LocalServer
) -> None:
    assert aichatonline_server.running
    assert aichatonline_base_url == aichatonline_server.base_url
    assert aichatonline_env is aichatonline_server
    assert os.environ["AICHATONLINE_BASE_URL"] == aichatonline_base_url
    with httpx.Client(base_url=os.environ["AICHATONLINE_BASE_URL"]) as http:
        assert messages(chat(http, get_token(http)).text) == pieces_for("Hi")


def test_plugin_imports_no_server_code() -> None:
    code = (
        "import sys, aichatonline.testing.pytest_plugin;"
        "print(any(m.startswith('aichatonline.testing._') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
