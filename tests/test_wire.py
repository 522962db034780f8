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
    DEFAULT_MODEL,
    EXPANSION_LIMIT,
    MODEL_ALIASES,
    MODELS,
    RETRYABLE,
    TOKEN_PATH,
    ChatRequest,
    Outcome,
    Request,
    build_headers,
    check_content_encoding,
    check_expansion,
    check_headers,
    classify,
    normalize_base_url,
    parse_retry_after,
    parse_token,
    resolve_model,
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
    chat = ChatRequest(BASE, headers, "System: S\nUser: Hi 😀\nAssistant:")
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
    chat = ChatRequest(BASE, build_headers(BASE), "prompt")
    first = chat.request("token-a")
    second = chat.request("token-b")
    assert first.body == second.body
    assert first.url == second.url
    assert json.loads(first.body)["conversationId"] == chat.conversation_id  # type: ignore[arg-type]
    assert second.headers["UniqueId"] == "token-b"
    assert first.headers["UniqueId"] == "token-a"  # the first request was not mutated


def test_each_chat_has_its_own_conversation_id() -> None:
    ids = {ChatRequest(BASE, {}, "p").conversation_id for _ in range(20)}
    assert len(ids) == 20


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_chat_body_carries_any_prompt(prompt: str) -> None:
    body = ChatRequest(BASE, {}, prompt, conversation_id="abc").request("t").body
    assert body is not None
    assert json.loads(body.decode("utf-8")) == {"conversationId": "abc", "prompt": prompt}


def test_reprs_leave_out_the_token_and_prompt() -> None:
    chat = ChatRequest(BASE, {"Cookie": "COOKIE-SECRET"}, "PROMPT-SECRET")
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
        (402, {}, b"", Outcome.FATAL, RateLimitError),
        (402, {"retry_after": "5"}, b"", Outcome.RATE_LIMITED, RateLimitError),
        (429, {"retry_after": "5"}, b"", Outcome.RATE_LIMITED, RateLimitError),
        (300, {}, b"", Outcome.REDIRECTED, APIStatusError),
        (301, {"location": "https://elsewhere.example/"}, b"", Outcome.REDIRECTED, APIStatusError),
        (302, {}, b"", Outcome.REDIRECTED, APIStatusError),
        (304, {}, b"", Outcome.REDIRECTED, APIStatusError),
        (307, {}, b"", Outcome.REDIRECTED, APIStatusError),
        (308, {}, b"", Outcome.REDIRECTED, APIStatusError),
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
    assert error.retryable is (outcome in RETRYABLE)


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


# -- base URL: strict ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://[::1]x",
        "http://[not-ipv6]:80",
        "http://host:99999",
        "http://[::1]:99999",
        "http://host:65536",
        "http://host:0",
        "http://host:-1",
        "http://host:port",
        "http://ho st",
        "http://host/a b",
        "http://host\r\nX-Injected: 1",
        "http://host/\r\npath",
        "http://host/\tx",
        "http://host\x00",
        "http://host/\x7f",
        "http://:8080",
        "http://user:pass@host",
        "http://user@host",
        "http://:pass@host",
        "http://@host",
    ],
    ids=repr,
)
def test_normalize_base_url_is_strict(url: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        normalize_base_url(url)
    assert info.value.field == "base_url"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[::1]/", "http://[::1]"),
        ("https://host:65535/p", "https://host:65535/p"),
        ("http://host:1", "http://host:1"),
        ("http://host/a%20b", "http://host/a%20b"),
        ("https://example.com\r\n", "https://example.com"),  # surrounding whitespace only
    ],
)
def test_normalize_base_url_still_accepts(url: str, expected: str) -> None:
    assert normalize_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://user:hunter2@example.com", "hunter2"),
        ("https://user:hunter2@example.com:99999", "hunter2"),
        ("https://user:hunter2@[::1", "hunter2"),
        ("https://user:hunter2@ex ample.com", "hunter2"),
        ("https://user:p@ss@example.com", "p@ss"),
        ("https://user:hunter2?x@example.com", "hunter2"),
        ("https://user:hun/ter2@example.com", "hun/ter2"),
    ],
)
def test_normalize_base_url_never_shows_a_password(url: str, secret: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        normalize_base_url(url)
    for text in (str(info.value), repr(info.value)):
        assert secret not in text


# -- content codings ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "gzip", "x-gzip", "DEFLATE", "deflate, gzip", "identity"])
def test_codings_we_ask_for_are_accepted(value: str | None) -> None:
    check_content_encoding(value)


@pytest.mark.parametrize("value", ["br", "zstd", "gzip, br", "compress"])
def test_a_coding_not_asked_for_is_refused(value: str) -> None:
    with pytest.raises(ProtocolError, match=repr(value)) as info:
        check_content_encoding(value)
    assert not info.value.retryable


def test_a_read_that_expands_past_the_limit_is_a_bomb() -> None:
    check_expansion(EXPANSION_LIMIT)
    with pytest.raises(ProtocolError, match="decompression bomb") as info:
        check_expansion(EXPANSION_LIMIT + 1)
    assert not info.value.retryable


# -- check_headers -------------------------------------------------------------------------


def test_check_headers_accepts_and_copies() -> None:
    given_headers = {"X-Trace": "abc 123", "Accept-Language": "de", "X-Empty": ""}
    checked = check_headers(given_headers)
    assert checked == given_headers
    assert checked is not given_headers
    assert type(checked) is dict
    assert check_headers(None) == {}
    assert check_headers(httpx.Headers({"X-A": "1"})) == {"x-a": "1"}


@pytest.mark.parametrize(
    "headers",
    [
        {"": "v"},
        {"X A": "v"},
        {"X:A": "v"},
        {"X\r\nA": "v"},
        {"Xé": "v"},
        {5: "v"},
        {"X-A": "a\r\nX-Injected: 1"},
        {"X-A": "a\nb"},
        {"X-A": "\x00"},
        {"X-A": "caf\u00e9"},
        {"X-A": 5},
        {"X-A": None},
        {"X-A": b"v"},
    ],
    ids=repr,
)
def test_check_headers_refuses_what_cannot_be_sent(headers: dict[object, object]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_headers(headers)  # type: ignore[arg-type]
    assert info.value.field == "extra_headers"


@pytest.mark.parametrize(
    "name", ["UniqueId", "uniqueid", "UNIQUEID", "Host", "content-length", "Transfer-Encoding"]
)
def test_check_headers_refuses_the_sdk_s_own(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="SDK sets"):
        check_headers({name: "x"})


@pytest.mark.parametrize("value", [[("X-A", "1")], "X-A: 1", 5])
def test_check_headers_wants_a_mapping(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="mapping") as info:
        check_headers(value, "default_headers")  # type: ignore[arg-type]
    assert info.value.field == "default_headers"


# -- status_error: what an error keeps -----------------------------------------------------


def test_status_error_keeps_headers_lower_case() -> None:
    error = status_error(500, {"X-Request-Id": "r-1", "Content-Type": "text/plain"}, b"boom")
    assert error.headers == {"x-request-id": "r-1", "content-type": "text/plain"}


def test_status_error_keeps_the_request_without_its_query() -> None:
    request = token_request(BASE, {})
    error = status_error(404, {}, b"", request=request)
    assert error.method == "GET"
    assert error.url == f"{BASE}{TOKEN_PATH}"
    assert "canvas" not in error.url


def test_status_error_without_a_request() -> None:
    error = status_error(404, {}, b"")
    assert error.method is None
    assert error.url is None
    assert error.headers == {}


def test_status_error_masks_the_request_s_token_everywhere() -> None:
    request = ChatRequest(BASE, {}, "p").request("tok-SECRET-77")
    error = status_error(
        401,
        {"X-Echo": "got tok-SECRET-77", "Location": "http://x/?t=tok-SECRET-77"},
        b"bad token tok-SECRET-77",
        request=request,
    )
    assert error.method == "POST"
    for text in (str(error), error.body, *error.headers.values(), error.url or ""):
        assert "tok-SECRET-77" not in text


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, RateLimitError), (503, ServerError), (500, ServerError), (402, RateLimitError)],
)
def test_retry_after_is_kept_on_every_status(status: int, error_type: type) -> None:
    error = status_error(status, {"retry-after": "7"}, b"")
    assert type(error) is error_type
    assert error.retry_after == 7.0
    assert error.retryable


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (402, False),
        (404, False),
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (501, True),
        (503, True),
        (599, True),
        (302, False),
    ],
)
def test_status_error_says_whether_it_is_retried(status: int, retryable: bool) -> None:
    assert status_error(status, {}, b"").retryable is retryable


def test_a_blocked_503_is_not_retryable() -> None:
    error = status_error(503, {"cf-mitigated": "challenge", "retry-after": "5"}, b"")
    assert type(error) is BlockedError
    assert not error.retryable
    assert error.retry_after == 5.0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_naming_it(status: int) -> None:
    error = status_error(status, {"Location": "https://elsewhere.example/x"}, b"<html>moved</html>")
    assert type(error) is APIStatusError
    assert classify(status, {"location": "x"}, b"") is Outcome.REDIRECTED
    text = str(error)
    assert "redirect" in text
    assert "https://elsewhere.example/x" in text
    assert "not followed" in text
    assert not error.retryable
    assert error.headers["location"] == "https://elsewhere.example/x"


def test_a_redirect_without_a_location() -> None:
    error = status_error(302, {}, b"")
    assert "redirect" in str(error)


def test_a_redirect_to_a_url_with_credentials_is_masked() -> None:
    error = status_error(302, {"location": "https://user:hunter2@elsewhere.example/"}, b"")
    assert "hunter2" not in str(error)


# -- resolve_model -------------------------------------------------------------------------


def test_models() -> None:
    assert DEFAULT_MODEL == "gpt-4o-mini"
    assert MODELS == ("gpt-4o-mini",)
    assert all(target in MODELS for target in MODEL_ALIASES.values())


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (None, "gpt-4o-mini"),
        ("", "gpt-4o-mini"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ],
)
def test_resolve_model(model: str | None, expected: str) -> None:
    assert resolve_model(model) == expected


@pytest.mark.parametrize("model", ["gpt-4", "GPT-4O-MINI", " gpt-4o-mini", "x"])
def test_resolve_model_refuses_unknown_models(model: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        resolve_model(model)
    assert info.value.field == "model"
    assert "gpt-4o-mini" in str(info.value)
    assert repr(model) in str(info.value)


@pytest.mark.parametrize("model", [5, b"gpt-4o-mini", ["gpt-4o-mini"]], ids=repr)
def test_resolve_model_wants_a_string(model: object) -> None:
    with pytest.raises(InvalidRequestError, match="string") as info:
        resolve_model(model)  # type: ignore[arg-type]
    assert info.value.field == "model"
