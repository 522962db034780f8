"""URLs, headers, bodies, token parsing and status classification (PROTOCOL.md 1, 2, statuses)."""

from __future__ import annotations

import json
import re
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aichatonline._core import (
    BROWSER_USER_AGENT,
    CHAT_PATH,
    DEFAULT_BASE_URL,
    TOKEN_PATH,
    Chat,
    Outcome,
    Request,
    build_headers,
    classify,
    normalize_base_url,
    parse_retry_after,
    parse_token,
    status_error,
    token_request,
)
from aichatonline._exceptions import (
    APIStatusError,
    AuthenticationError,
    BlockedError,
    InvalidRequestError,
    ProtocolError,
    RateLimitError,
    ServerError,
)

BASE = "http://127.0.0.1:8123"
CHALLENGE = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>"


# -- base URL and headers ------------------------------------------------------------


def test_protocol_constants() -> None:
    assert DEFAULT_BASE_URL == "https://aichatonlineorg.erweima.ai"
    assert CHAT_PATH == "/aichatonline/api/chat/gpt"
    assert TOKEN_PATH == "/api/v1/user/getUniqueId"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://aichatonlineorg.erweima.ai", "https://aichatonlineorg.erweima.ai"),
        ("https://aichatonlineorg.erweima.ai/", "https://aichatonlineorg.erweima.ai"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("http://localhost:8123/", "http://localhost:8123"),
        ("http://localhost:8123/prefix/", "http://localhost:8123/prefix"),
        ("https://example.com/a/b//", "https://example.com/a/b"),
        ("  https://example.com  ", "https://example.com"),
        ("HTTPS://example.com", "https://example.com"),
    ],
)
def test_normalize_base_url_accepts(url: str, expected: str) -> None:
    assert normalize_base_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com",
        "//example.com",
        "ftp://example.com",
        "ws://example.com",
        "file:///etc/passwd",
        "https://",
        "https:///",
        "https://example.com/?q=1",
        "https://example.com#frag",
        None,
        123,
        b"https://example.com",
    ],
)
def test_normalize_base_url_rejects(url: object) -> None:
    with pytest.raises(InvalidRequestError):
        normalize_base_url(url)  # type: ignore[arg-type]


def test_build_headers_browser_set() -> None:
    headers = build_headers(BASE)
    assert headers["User-Agent"] == BROWSER_USER_AGENT
    assert "Firefox" in headers["User-Agent"]
    assert headers["Referer"] == f"{BASE}/chatgpt/chat/"
    assert headers["Origin"] == BASE
    assert headers["Accept-Language"]
    assert headers["Sec-Fetch-Dest"] == "empty"
    assert headers["Sec-Fetch-Mode"] == "cors"
    assert headers["Sec-Fetch-Site"] == "same-origin"
    assert not any(name.lower().startswith("x-") for name in headers)


def test_build_headers_with_prefix_and_custom_user_agent() -> None:
    headers = build_headers("http://host:1/proxy", user_agent="my-app/1.0")
    assert headers["User-Agent"] == "my-app/1.0"
    assert headers["Referer"] == "http://host:1/proxy/chatgpt/chat/"
    assert headers["Origin"] == "http://host:1/proxy"


# -- token request and response ----------------------------------------------------------


@pytest.mark.parametrize("base", [BASE, "https://example.com/prefix"])
def test_token_request(base: str) -> None:
    headers = build_headers(base)
    request = token_request(base, headers)
    assert request.method == "GET"
    assert request.body is None
    assert dict(request.headers) == headers
    assert request.url.startswith(f"{base}{TOKEN_PATH}?")
    parts = urlsplit(request.url)
    assert parts.path == urlsplit(base).path + "/api/v1/user/getUniqueId"
    assert "/aichatonline" not in parts.path
    assert re.fullmatch(r"canvas=-[a-z0-9]{10}", parts.query)


def test_token_request_canvas_is_random() -> None:
    urls = {token_request(BASE, {}).url for _ in range(20)}
    assert len(urls) == 20


@pytest.mark.parametrize(
    ("body", "token"),
    [
        (b'{"code": 200, "data": "abc123"}', "abc123"),
        (b'{"data": "t"}', "t"),
        (b'{"code":200,"data":"tok-1","msg":"ok","extra":{"a":[1]}}', "tok-1"),
        (b'  {"code": 200, "data": "x"}\n', "x"),
    ],
)
def test_parse_token(body: bytes, token: str) -> None:
    assert parse_token(body) == token


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "not JSON"),
        (b"not json", "not JSON"),
        (b"<html><title>Just a moment...</title></html>", "not JSON"),
        (b'{"data": "abc"', "not JSON"),
        (b"\xff\xfe\xfd", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"code": 200}', "'data'"),
        (b'{"code": 200, "data": ""}', "'data'"),
        (b'{"code": 200, "data": "   "}', "'data'"),
        (b'{"code": 200, "data": null}', "'data'"),
        (b'{"code": 200, "data": 12345}', "'data'"),
        (b'{"code": 200, "data": {"id": "abc"}}', "'data'"),
        (b'["abc"]', "'data'"),
        (b'"abc"', "'data'"),
        (b"null", "'data'"),
        (b"42", "'data'"),
        # A token goes back as a header: it must be one.
        ('{"code": 200, "data": "tok-\u00e9"}'.encode(), "header"),
        (b'{"code": 200, "data": "a b"}', "header"),
        (b'{"code": 200, "data": "tok\\nX-Injected: 1"}', "header"),
    ],
)
def test_parse_token_rejects(body: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match="token response") as info:
        parse_token(body)
    assert why in str(info.value)


@settings(max_examples=120, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.from_regex(rb'\{"data": ?.{0,12}\}', fullmatch=True)))
def test_parse_token_never_raises_anything_else(body: bytes) -> None:
    try:
        token = parse_token(body)
    except ProtocolError:
        return
    assert isinstance(token, str)
    assert token.strip()


# -- the chat request --------------------------------------------------------------------


def test_chat_request() -> None:
    headers = build_headers(BASE)
    chat = Chat(BASE, headers, "System: S\nUser: Hi 😀\nAssistant:")
    request = chat.request("TOKEN-123")
    assert isinstance(request, Request)
    assert request.method == "POST"
    assert request.url == f"{BASE}/aichatonline/api/chat/gpt"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["UniqueId"] == "TOKEN-123"
    for name, value in headers.items():
        assert request.headers[name] == value
    assert request.body is not None
    payload = json.loads(request.body)
    assert payload == {
        "conversationId": chat.conversation_id,
        "prompt": "System: S\nUser: Hi 😀\nAssistant:",
    }
    assert re.fullmatch(r"[a-z0-9]{10}", chat.conversation_id)


def test_chat_request_is_the_same_on_every_attempt() -> None:
    chat = Chat(BASE, build_headers(BASE), "prompt")
    first = chat.request("token-a")
    second = chat.request("token-b")
    assert first.body == second.body
    assert first.url == second.url
    assert json.loads(first.body)["conversationId"] == chat.conversation_id  # type: ignore[arg-type]
    assert second.headers["UniqueId"] == "token-b"
    assert first.headers["UniqueId"] == "token-a"  # the first request was not mutated


def test_each_chat_has_its_own_conversation_id() -> None:
    ids = {Chat(BASE, {}, "p").conversation_id for _ in range(20)}
    assert len(ids) == 20


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_chat_body_carries_any_prompt(prompt: str) -> None:
    body = Chat(BASE, {}, prompt, conversation_id="abc").request("t").body
    assert body is not None
    assert json.loads(body.decode("utf-8")) == {"conversationId": "abc", "prompt": prompt}


def test_reprs_leave_out_the_token_and_prompt() -> None:
    chat = Chat(BASE, {"Cookie": "COOKIE-SECRET"}, "PROMPT-SECRET")
    request = chat.request("TOKEN-SECRET")
    for text in (repr(chat), repr(request), str(request)):
        assert "TOKEN-SECRET" not in text
        assert "PROMPT-SECRET" not in text
        assert "COOKIE-SECRET" not in text
    assert BASE in repr(request)


# -- statuses ----------------------------------------------------------------------------


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize("status", [200, 201, 204])
def test_classify_success(status: int) -> None:
    assert classify(status, headers(), b"") is Outcome.OK


@pytest.mark.parametrize(
    ("status", "hdrs", "body", "outcome", "error_type"),
    [
        (401, {}, b"", Outcome.TOKEN_REJECTED, AuthenticationError),
        (403, {}, b"forbidden", Outcome.TOKEN_REJECTED, AuthenticationError),
        (403, {}, CHALLENGE, Outcome.BLOCKED, BlockedError),
        (403, {}, CHALLENGE.upper(), Outcome.BLOCKED, BlockedError),
        (403, {}, b"<TITLE>just a MOMENT...</title>", Outcome.BLOCKED, BlockedError),
        (403, {"cf_mitigated": "challenge"}, b"", Outcome.BLOCKED, BlockedError),
        (403, {"CF_Mitigated": "Challenge"}, b"{}", Outcome.BLOCKED, BlockedError),
        (503, {"cf_mitigated": "challenge"}, b"", Outcome.BLOCKED, BlockedError),
        (503, {}, CHALLENGE, Outcome.BLOCKED, BlockedError),
        (429, {}, b"slow down", Outcome.RATE_LIMITED, RateLimitError),
        (402, {}, b"", Outcome.RATE_LIMITED, RateLimitError),
        (500, {}, b"", Outcome.TRANSIENT, ServerError),
        (502, {}, b"bad gateway", Outcome.TRANSIENT, ServerError),
        (503, {}, b"", Outcome.TRANSIENT, ServerError),
        (504, {}, b"", Outcome.TRANSIENT, ServerError),
        (599, {}, b"", Outcome.TRANSIENT, ServerError),
        (408, {}, b"", Outcome.TRANSIENT, APIStatusError),
        (409, {}, b"", Outcome.TRANSIENT, APIStatusError),
        (400, {}, b"bad", Outcome.FATAL, APIStatusError),
        (404, {}, b"", Outcome.FATAL, APIStatusError),
        (405, {}, b"", Outcome.FATAL, APIStatusError),
        (418, {}, b"", Outcome.FATAL, APIStatusError),
        (422, {}, b"", Outcome.FATAL, APIStatusError),
        (451, {}, b"", Outcome.FATAL, APIStatusError),
    ],
)
def test_status_table(
    status: int,
    hdrs: dict[str, str],
    body: bytes,
    outcome: Outcome,
    error_type: type[APIStatusError],
) -> None:
    h = headers(**hdrs)
    assert classify(status, h, body) is outcome
    error = status_error(status, h, body)
    assert type(error) is error_type
    assert error.status_code == status
    assert str(status) in str(error)


def test_blocked_error_says_so() -> None:
    error = status_error(403, headers(), CHALLENGE)
    assert "Cloudflare" in str(error)
    assert "Just a moment" in error.body


def test_challenge_marker_deep_in_the_body_is_found() -> None:
    body = b"<html><head>" + b" " * 10_000 + b"<title>Just a moment...</title>"
    assert classify(403, headers(), body) is Outcome.BLOCKED


def test_challenge_without_the_marker_is_not_blocked() -> None:
    assert classify(403, headers(cf_mitigated="managed"), b"<title>Hello</title>") is (
        Outcome.TOKEN_REJECTED
    )


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_4xx_shows_status_and_body_start(status: int) -> None:
    body = b'{"error": "no such route", "detail": "the path /x does not exist"}'
    error = status_error(status, headers(), body)
    assert type(error) is APIStatusError
    assert f"HTTP {status}" in str(error)
    assert '{"error": "no such route"' in str(error)
    assert error.body.startswith('{"error": "no such route"')


@pytest.mark.parametrize("status", [400, 403, 429, 500])
def test_error_body_is_bounded(status: int) -> None:
    body = b"x" * 1_000_000
    error = status_error(status, headers(), body)
    assert error.body.startswith("xxxx")
    assert 250 <= len(error.body) <= 301
    assert len(str(error)) < 400


def test_error_body_is_bounded_for_multibyte_text() -> None:
    error = status_error(404, headers(), "é😀".encode() * 200_000)
    assert error.body.startswith("é😀é😀")
    assert len(error.body) <= 301
    assert "\ufffd" not in error.body[:200]


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        (429, None, None),
        (429, "7", 7.0),
        (429, "0", 0.0),
        (402, "2.5", 2.5),
        (429, "soon", None),
    ],
)
def test_rate_limit_error_carries_retry_after(
    status: int, value: str | None, expected: float | None
) -> None:
    h = headers() if value is None else headers(retry_after=value)
    error = status_error(status, h, b"")
    assert isinstance(error, RateLimitError)
    assert error.retry_after == expected


def test_rate_limit_retry_after_http_date_uses_now() -> None:
    now = 1_700_000_000.0
    h = headers(retry_after=formatdate(now + 90, usegmt=True))
    error = status_error(429, h, b"", now=now)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == pytest.approx(90.0)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(400, 599),
    st.one_of(st.binary(max_size=64), st.just(CHALLENGE), st.just(CHALLENGE.lower())),
)
def test_status_error_type_for_every_error_status(status: int, body: bytes) -> None:
    error = status_error(status, headers(), body)
    assert error.status_code == status
    if status in (403, 503) and b"<title>just a moment...</title>" in body.lower():
        expected: type[APIStatusError] = BlockedError
    elif status in (401, 403):
        expected = AuthenticationError
    elif status in (402, 429):
        expected = RateLimitError
    elif status >= 500:
        expected = ServerError
    else:
        expected = APIStatusError
    assert type(error) is expected


# -- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("soon", None),
        ("", None),
        ("1e400", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_700_000_000.0) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(formatdate(now - 3600, usegmt=True), now=now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0


def test_parse_retry_after_http_date_defaults_to_the_clock() -> None:
    import time

    value = parse_retry_after(formatdate(time.time() + 1000, usegmt=True))
    assert value is not None
    assert 990 <= value <= 1000


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4}.*")))
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=0.0)
    assert result is None or (isinstance(result, float) and 0.0 <= result < float("inf"))
