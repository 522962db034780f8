"""Request ids and the access log (issue 18) on real uvicorn: the caller's sane id or a new
``req_<32 hex>`` on every answer, in every error object and upstream; openai-python's
``_request_id`` reads it; one access line per request with its outcome, in text or JSON,
with what came from the client escaped and no key, token or prompt."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from aichatonline.testing import Fault, LocalServer
from tests.test_gateway import KEY, MODEL, running
from tests.test_gateway_stream import AUTH, body

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from aichatonline.gateway import create_app  # noqa: E402
from aichatonline.gateway._observe import escape, request_id_for  # noqa: E402

CHAT = "/v1/chat/completions"
NEW_ID = re.compile(r"^req_[0-9a-f]{32}$")
ACCESS = "aichatonline.gateway.access"


pytestmark = pytest.mark.usefixtures("upstream")


@pytest.fixture(scope="module")
def url(shared_server: LocalServer) -> Iterator[str]:
    app = create_app(base_url=shared_server.base_url, api_key=KEY, max_retries=0, trust_env=False)
    with running(app) as address:
        yield address


# --------------------------------------------------------------------------- request ids


def test_openai_reads_the_request_id_and_the_service_gets_it(
    url: str, upstream: LocalServer
) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client:
        given = client.chat.completions.create(
            model=MODEL, messages=body()["messages"], extra_headers={"X-Request-Id": "trace-7_a.b"}
        )
        assert given._request_id == "trace-7_a.b"
        assert upstream.chat_requests[-1].headers["x-request-id"] == "trace-7_a.b"
        new = client.chat.completions.create(model=MODEL, messages=body()["messages"])
        assert new._request_id is not None
        assert NEW_ID.match(new._request_id)
        assert upstream.chat_requests[-1].headers["x-request-id"] == new._request_id
        stream = client.chat.completions.create(
            model=MODEL, messages=body()["messages"], stream=True
        )
        streamed_id = stream.response.headers["x-request-id"]
        list(stream)
        assert NEW_ID.match(streamed_id)
        assert upstream.chat_requests[-1].headers["x-request-id"] == streamed_id
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="gpt-9", messages=body()["messages"])
        assert info.value.request_id is not None
        assert NEW_ID.match(info.value.request_id)
        assert info.value.body["request_id"] == info.value.request_id  # type: ignore[index]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"abc-123", True),
        (b"x" * 128, True),
        (b"~!#$%&'*+.^_`|", True),
        (b"x" * 129, False),
        (b"two words", False),
        (b"caf\xc3\xa9", False),
        (b"", False),
    ],
    ids=["token", "128", "punctuation", "129", "space", "non-ascii", "empty"],
)
def test_only_a_sane_caller_id_is_kept(url: str, given: bytes, kept: bool) -> None:
    response = httpx.get(url + "/v1/models", headers={**AUTH, "X-Request-Id": given})
    assert response.status_code == 200
    if kept:
        assert response.headers["x-request-id"] == given.decode()
    else:
        assert NEW_ID.match(response.headers["x-request-id"])


def test_every_answer_has_an_id_and_every_error_object_carries_it(
    url: str, upstream: LocalServer
) -> None:
    answers = [
        httpx.get(url + "/health"),
        httpx.get(url + "/ready"),
        httpx.get(url + "/v1/models"),  # 401: no key
        httpx.get(url + "/v1/embeddings", headers=AUTH),  # 404
        httpx.get(url + CHAT, headers=AUTH),  # 405
        httpx.post(url + CHAT, content=b"{nope", headers=AUTH),  # 400
    ]
    upstream.always = Fault(status=500)
    answers.append(httpx.post(url + CHAT, json=body(stream=True), headers=AUTH))  # 502
    assert [a.status_code for a in answers] == [200, 200, 401, 404, 405, 400, 502]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(NEW_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    for answer in answers[2:]:
        assert answer.json()["error"]["request_id"] == answer.headers["x-request-id"]


def test_request_ids_and_escaping_as_functions() -> None:
    assert request_id_for(b"ok") == "ok"
    assert NEW_ID.match(request_id_for(None))
    assert NEW_ID.match(request_id_for(b"a\x7f"))
    assert escape("/v1/models") == "/v1/models"
    assert escape("/a b\n\x1b[31m\\é☃") == "/a\\x20b\\x0a\\x1b[31m\\\\\\xe9\\u2603"
    assert escape("x" * 2000) == "x" * 1024 + "..."


# --------------------------------------------------------------------------- access log


def access_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The access lines, once ``count`` of them were written (each after its answer)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == ACCESS]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def fields(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split(" "))


def test_one_access_line_per_request_with_its_outcome(
    url: str, upstream: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    prompt = "a prompt no log may hold"
    chat = body(stream=False, messages=[{"role": "user", "content": prompt}])
    ok = httpx.post(url + CHAT, json=chat, headers={**AUTH, "X-Request-Id": "log-1"})
    streamed = httpx.post(url + CHAT, json=body(), headers=AUTH)
    refused = httpx.post(url + CHAT, json=chat)  # no key
    upstream.always = Fault(status=500)
    failed = httpx.post(url + CHAT, json=chat, headers=AUTH)
    upstream.always = None
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /v1/x%0a%1b[31mred%20 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")
    lines = access_lines(caplog, 5)
    assert len(lines) == 5
    got = [fields(line) for line in lines]
    assert [(f["status"], f["outcome"]) for f in got] == [
        ("200", "completed"),
        ("200", "completed"),
        ("401", "refused"),
        ("502", "upstream_error"),
        ("401", "refused"),
    ]
    first = got[0]
    assert first["request_id"] == "log-1" == ok.headers["x-request-id"]
    assert (first["method"], first["path"]) == ("POST", CHAT)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"])
    assert float(first["duration_ms"]) >= float(first["first_piece_ms"]) > 0
    assert int(first["pieces"]) == len(upstream.pieces_for(prompt))
    assert got[1]["request_id"] == streamed.headers["x-request-id"]
    assert int(got[1]["pieces"]) == len(upstream.pieces_for("Hi"))
    assert got[2]["first_piece_ms"] == "-"
    assert got[2]["request_id"] == refused.headers["x-request-id"]
    assert got[3]["request_id"] == failed.headers["x-request-id"]
    assert got[4]["path"] == "/v1/x\\x0a\\x1b[31mred\\x20"  # one line, one token
    text = "\n".join(lines)
    assert prompt not in text
    assert KEY not in text
    for request in upstream.chat_requests:
        assert request.headers["uniqueid"] not in text


def test_clients_gone_are_logged_as_such(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    with LocalServer(pieces=200, delay=0.01) as slow:
        app = create_app(base_url=slow.base_url, api_key=KEY, trust_env=False, log_format="json")
        with running(app) as url:
            with httpx.stream("POST", url + CHAT, json=body(), headers=AUTH) as response:
                lines = response.iter_lines()
                next(lines)
            with pytest.raises(httpx.ReadTimeout):  # not streamed: gone before any answer
                httpx.post(url + CHAT, json=body(stream=False), headers=AUTH, timeout=0.3)
            records = access_lines(caplog, 2)
    streamed, whole = (json.loads(line) for line in records)
    assert list(streamed) == [
        "time",
        "request_id",
        "client",
        "method",
        "path",
        "status",
        "outcome",
        "duration_ms",
        "first_piece_ms",
        "pieces",
    ]
    assert (streamed["status"], streamed["outcome"]) == (200, "client_gone")
    assert streamed["pieces"] >= 1
    assert (whole["status"], whole["outcome"]) == (499, "client_gone")
    assert whole["request_id"].startswith("req_")


def test_the_event_loops_warnings_are_log_lines_but_not_its_writes_to_gone_clients() -> None:
    """``asyncio`` warns once per write to a connection its client already closed: noise
    the log drops; its other warnings are lines of the log's own format (JSON here)."""
    import subprocess
    import sys

    script = (
        "import logging, logging.config\n"
        "from aichatonline.gateway._logs import log_config\n"
        "logging.config.dictConfig(log_config('json'))\n"
        "loop_log = logging.getLogger('asyncio')\n"
        "for _ in range(3): loop_log.warning('socket.send() raised exception.')\n"
        "loop_log.warning('Executing %s took %.3f seconds', '<Task>', 0.25)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stderr.splitlines()
    assert [json.loads(line)["message"] for line in lines] == [
        "Executing <Task> took 0.250 seconds"
    ]
    assert json.loads(lines[0])["logger"] == "asyncio"
