"""Fuzzing the gateway: whatever a client sends, an OpenAI error object or a valid answer.

Hypothesis throws request bodies at ``POST /v1/chat/completions``: any JSON shape, a valid
request with one field given a value of another type (or removed), raw bytes and bad UTF-8,
nesting far past the parser's depth, huge numbers, bodies around the size limit and past it
(with and without ``Content-Length``). Every answer must be a valid one (a ``chat.completion``,
or an SSE stream of ``chat.completion.chunk`` events ending in ``[DONE]``) or an OpenAI error
object with a 4xx status (or a 5xx the gateway documents for the upstream), never a 500,
and the gateway must log no error. Most examples go to the ASGI app in-process (fast); a few,
and a fixed list of hostile requests, go through the real command on uvicorn over raw
sockets, whose log must hold no traceback.

``--hypothesis-profile long`` runs many more examples (``tests/conftest.py``).
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aichatonline.testing import LocalServer

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from aichatonline.gateway import create_app
from tests.test_gateway_cli import READY, _env

#: The upstream keeps no record of the thousands of requests the fuzzing sends.
pytestmark = [pytest.mark.usefixtures("isolated"), pytest.mark.shared_server(record_requests=False)]

CHAT = "/v1/chat/completions"
LIMIT = 16 * 1024  # the apps' max_body_bytes: small, so that "past the limit" is cheap
ROOT = Path(__file__).resolve().parents[1]
#: Statuses the gateway documents (docs/gateway.md); 500 is not one of them.
DOCUMENTED = {400, 401, 403, 404, 405, 408, 413, 429, 502, 503, 504}
FEW = settings(max_examples=max(10, settings.default.max_examples // 5))

Post = Callable[..., httpx.Response]


# --------------------------------------------------------------------------- what is valid


def assert_error_object(response: httpx.Response) -> None:
    assert response.status_code in DOCUMENTED, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)


def assert_valid_answer(response: httpx.Response) -> None:
    """A valid answer or an OpenAI error object; never a 500 or something else."""
    if response.status_code != 200:
        assert_error_object(response)
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [e for e in response.text.split("\n\n") if e.strip()]
        assert events[-1] == "data: [DONE]", events[-3:]
        for event in events[:-1]:
            assert event.startswith("data: ")
            chunk = json.loads(event[len("data: ") :])
            assert chunk["object"] == "chat.completion.chunk", chunk
        return
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert isinstance(completion["choices"][0]["message"]["content"], str)


# --------------------------------------------------------------------------- the app in-process


class _Errors(logging.Handler):
    """Every record at ERROR or above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 9))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as http,
    ):
        yield http


@pytest.fixture(scope="module")
def post(shared_server: LocalServer) -> Iterator[Post]:
    """POST to the app's chat route in-process (its lifespan running); no error logged."""
    app = create_app(
        base_url=shared_server.base_url,
        max_body_bytes=LIMIT,
        timeout=10,
        max_retries=0,
        trust_env=False,
    )
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        with (
            anyio.from_thread.start_blocking_portal() as portal,
            portal.wrap_async_context_manager(_serving(app)) as http,
        ):

            def send(content: bytes | list[bytes], **headers: str) -> httpx.Response:
                """POST ``content`` (a list of parts: sent chunked, with no length)."""
                body = content if isinstance(content, bytes) else _parts(content)
                call = functools.partial(http.post, CHAT, content=body, headers=headers)
                response = portal.call(call)
                assert not errors.records, [r.getMessage() for r in errors.records]
                return response

            yield send
    finally:
        logging.getLogger().removeHandler(errors)


async def _parts(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


JSON = {"content-type": "application/json"}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
FIELDS = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "stop",
    "tools",
    "tool_choice",
    "functions",
    "response_format",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "metadata",
    "logit_bias",
    "audio",
    "modalities",
)
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id")


def template(stream: bool) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
    }


@given(json_values)
def test_any_json_shape(post: Post, value: Any) -> None:
    assert_valid_answer(post(json.dumps(value).encode(), **JSON))


@given(st.booleans(), st.sampled_from(FIELDS), json_values | st.just(KeyError))
def test_a_field_of_the_wrong_type(post: Post, stream: bool, name: str, value: Any) -> None:
    body = template(stream)
    if value is KeyError:
        body.pop(name, None)
    else:
        body[name] = value
    assert_valid_answer(post(json.dumps(body).encode(), **JSON))


@given(st.booleans(), st.integers(0, 2), st.sampled_from(MESSAGE_FIELDS), json_values)
def test_a_message_field_of_the_wrong_type(
    post: Post, stream: bool, index: int, name: str, value: Any
) -> None:
    body = template(stream)
    body["messages"] = [{"role": "system", "content": "Be brief."}, *body["messages"]] * 2
    body["messages"][index][name] = value
    assert_valid_answer(post(json.dumps(body).encode(), **JSON))


@given(st.binary(max_size=300))
def test_raw_bytes(post: Post, content: bytes) -> None:
    assert_valid_answer(post(content, **JSON))


@given(
    st.booleans(),
    st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b)),
    st.integers(0, 60),
)
def test_bad_utf8(post: Post, stream: bool, junk: bytes, at: int) -> None:
    body = json.dumps(template(stream)).encode()
    at = min(at, len(body))
    assert_valid_answer(post(body[:at] + junk + body[at:], **JSON))


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@given(st.integers(1, 200_000), st.sampled_from(["[", '{"a":', '{"messages":[']))
def test_deep_nesting(post: Post, depth: int, opener: str) -> None:
    body = (opener * depth).encode()[: LIMIT * 2]
    assert_valid_answer(post(body, **JSON))


@given(
    st.sampled_from(["temperature", "n", "max_tokens", "seed", "top_p", "stream"]),
    st.one_of(
        st.integers(1, 6000).map(lambda digits: "9" * digits),
        st.sampled_from(
            ["1e999", "-1e999", "1e-999", "NaN", "Infinity", "-0", "1.7976931348623157e309"]
        ),
    ),
)
def test_huge_numbers(post: Post, name: str, number: str) -> None:
    body = json.dumps(template(False))[:-1] + f', "{name}": {number}}}'
    assert_valid_answer(post(body.encode(), **JSON))


@given(st.integers(-300, 300), st.booleans(), st.booleans())
def test_sizes_around_the_limit(post: Post, offset: int, stream: bool, chunked: bool) -> None:
    empty = json.dumps(template(stream)).replace('"Hi"', '""')
    body = empty.replace('""', json.dumps("x" * max(0, LIMIT + offset - len(empty))), 1).encode()
    content: bytes | list[bytes] = [body[:100], body[100:]] if chunked else body
    response = post(content, **JSON)
    assert_valid_answer(response)
    assert (response.status_code == 413) == (len(body) > LIMIT)


# --------------------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def real_gateway(
    shared_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, Path]]:
    """``aichatonline gateway`` on uvicorn in a child process: (host, port, its log file)."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    argv = [sys.executable, "-m", "aichatonline", "gateway", "--base-url", shared_server.base_url]
    argv += ["--port", "0", "--max-retries", "0"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=_env(), cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 20
        while not (match := READY.search(log.read_text().split("\n")[0])):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield "127.0.0.1", int(match.group(2)), log
    finally:
        process.terminate()
        process.wait(15)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "ERROR" not in text, text


def exchange(host: str, port: int, request: bytes, read: float = 10.0) -> bytes:
    """Send raw bytes (``Connection: close``), read the answer until the server closes."""
    with socket.create_connection((host, port), timeout=read) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def raw_post(body: bytes, headers: str = "") -> bytes:
    head = f"POST {CHAT} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    head += headers or f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


HOSTILE = [  # (the request's bytes, the status it must get)
    (raw_post(b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff"}]}'), 400),
    (raw_post(b"[" * 100_000), 400),
    (raw_post(b'{"model": "gpt-4o-mini", "n": ' + b"9" * 5000 + b"}"), 400),
    (raw_post(b"x" * 1000, "Content-Length: 2000000\r\n"), 413),  # past 1 MiB: 413 at once
    (raw_post(b"", "Content-Length: 100000000000000000000\r\n"), 400),  # uvicorn refuses it
    (raw_post(b"{}", "Content-Length: abc\r\n"), 400),  # uvicorn's own answer
    (raw_post(b"", "Transfer-Encoding: chunked\r\n") + b"100001\r\n" + b"x" * 0x100001, 413),
    (raw_post(json.dumps(template(True)).encode()), 200),
    (raw_post(json.dumps(template(False)).encode()), 200),
]


@pytest.mark.parametrize(("request_bytes", "status"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_requests_at_the_real_server(
    real_gateway: tuple[str, int, Path], request_bytes: bytes, status: int
) -> None:
    host, port, _ = real_gateway
    assert status_of(exchange(host, port, request_bytes)) == status


@FEW
@given(json_values)
def test_any_json_shape_at_the_real_server(real_gateway: tuple[str, int, Path], value: Any) -> None:
    host, port, _ = real_gateway
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=10, trust_env=False) as http:
        assert_valid_answer(http.post(CHAT, content=json.dumps(value).encode(), headers=JSON))
