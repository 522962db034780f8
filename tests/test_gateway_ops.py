"""Operating the gateway (issue 18) on real uvicorn: SSE keep-alive read off the raw socket,
``/metrics`` (Prometheus text, its auth), ``/ready`` against a live, a failing and an
unreachable service, ``--drop-params`` and the model alias, through httpx and the real
openai client. Request ids and the access log: ``test_gateway_ids.py``; the drain:
``test_gateway_drain.py``."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from aichatonline.testing import Fault, LocalServer
from tests.test_gateway import KEY, MODEL, running
from tests.test_gateway_stream import AUTH, _unchunk, body

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

from aichatonline.gateway import create_app  # noqa: E402

CHAT = "/v1/chat/completions"


pytestmark = pytest.mark.usefixtures("upstream")


def raw_stream(url: str, payload: dict[str, Any]) -> tuple[float, list[str]]:
    """POST ``payload`` on a raw socket, as curl would: when the head came, and the SSE lines
    (comments included, empty lines left out)."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(payload).encode()
    started = time.monotonic()
    received = bytearray()
    head_at = None
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (CHAT.encode(), KEY.encode(), len(data), data)
        )
        while chunk := sock.recv(65536):
            received += chunk
            if head_at is None and b"\r\n\r\n" in received:
                head_at = time.monotonic() - started
    head, _, raw = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert head_at is not None
    return head_at, [line for line in _unchunk(raw).decode().split("\n") if line]


# --------------------------------------------------------------------------- keep-alive


def test_keepalive_sends_the_head_at_once_and_comments_while_the_service_is_silent(
    upstream: LocalServer,
) -> None:
    app = create_app(base_url=upstream.base_url, api_key=KEY, sse_keepalive=0.2, trust_env=False)
    with running(app) as url:
        upstream.inject(Fault(stall=1.0))  # not a byte from the service for 1 s
        head_at, texts = raw_stream(url, body())
        upstream.inject(Fault(stall=0.8, stall_after=3))  # silent between its 3rd and 4th piece
        _, between = raw_stream(url, body())
    assert head_at < 0.6  # the head did not wait for the first piece
    first_data = next(i for i, line in enumerate(texts) if line.startswith("data: "))
    assert first_data >= 2  # ": keep-alive" lines while the service said nothing (~4)
    assert set(texts[:first_data]) == {": keep-alive"}
    assert texts[-1] == "data: [DONE]"
    pieces = [json.loads(t[6:]) for t in texts[first_data:-1] if t.startswith("data: ")]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in pieces)
    assert text == upstream.reply_for("Hi")
    # Between pieces too: a comment after some content and before more (and maybe others
    # before the first piece, on a slow machine).
    contents = [i for i, line in enumerate(between) if '"content":"' in line]
    comments = [i for i, line in enumerate(between) if line == ": keep-alive"]
    assert any(contents[0] < i < contents[-1] for i in comments), between
    assert between[-1] == "data: [DONE]"


def test_keepalive_a_failure_before_the_first_piece_is_an_event_then_done(
    upstream: LocalServer,
) -> None:
    app = create_app(
        base_url=upstream.base_url, api_key=KEY, sse_keepalive=0.2, max_retries=0, trust_env=False
    )
    upstream.always = Fault(status=500)
    with running(app) as url:
        with httpx.stream("POST", url + CHAT, json=body(), headers=AUTH, timeout=10) as response:
            assert response.status_code == 200  # the head went out before the failure
            request_id = response.headers["x-request-id"]
            lines = [line for line in response.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2].removeprefix("data: "))["error"]
        assert error["code"] == "upstream_status"
        assert error["request_id"] == request_id
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        stream = client.chat.completions.create(
            model=MODEL, messages=body()["messages"], stream=True
        )
        with pytest.raises(openai.APIError, match="failed"):
            list(stream)
        upstream.always = None
        upstream.inject(Fault(stall=0.5))  # the openai client skips the comments
        chunks = client.chat.completions.create(
            model=MODEL, messages=body()["messages"], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == upstream.reply_for("Hi")
        client.close()


# --------------------------------------------------------------------------- metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as ``{(sample name, sorted labels): value}``."""
    out = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_requests_retries_streams_and_disconnects(upstream: LocalServer) -> None:
    prefix = "aichatonline_gateway_"
    chat_ok = (("outcome", "completed"), ("route", CHAT), ("status", "200"))
    with LocalServer(pieces=200, delay=0.01) as slow:
        app = create_app(base_url=upstream.base_url, api_key=KEY, max_retries=1, trust_env=False)
        slow_app = create_app(base_url=slow.base_url, api_key=KEY, trust_env=False)
        with (
            running(app) as url,
            running(slow_app) as slow_url,
            httpx.Client(base_url=url, headers=AUTH, timeout=10) as http,
        ):
            assert http.post(CHAT, json=body(stream=False)).status_code == 200
            with http.stream("POST", CHAT, json=body()) as response:
                assert response.status_code == 200
                response.read()
            upstream.inject(Fault(status=500))  # one retry, then the answer
            assert http.post(CHAT, json=body(stream=False)).status_code == 200
            assert http.get("/v1/embeddings").status_code == 404
            assert httpx.get(url + "/metrics").status_code == 401  # the /v1 rule: the key
            scrape = http.get("/metrics")
            assert scrape.headers["content-type"].startswith("text/plain")
            got = samples(scrape.text)
            # A stream in flight, then its client gone.
            with httpx.stream(
                "POST", slow_url + CHAT, json=body(), headers=AUTH, timeout=10
            ) as response:
                lines = response.iter_lines()  # held: a dropped iterator closes the response
                next(lines)
                during = samples(httpx.get(slow_url + "/metrics", headers=AUTH).text)
            assert slow.wait_for(lambda s: s.disconnects == 1, timeout=5)
            deadline = time.monotonic() + 5
            while slow_app.state.gateway.active and time.monotonic() < deadline:
                time.sleep(0.01)
            after = samples(httpx.get(slow_url + "/metrics", headers=AUTH).text)
    assert got[prefix + "requests_total", chat_ok] == 3
    refused_404 = (("outcome", "refused"), ("route", "unmatched"), ("status", "404"))
    assert got[prefix + "requests_total", refused_404] == 1
    metrics_401 = (("outcome", "refused"), ("route", "/metrics"), ("status", "401"))
    assert got[prefix + "requests_total", metrics_401] == 1
    assert got[prefix + "upstream_retries_total", ()] == 1
    assert got[prefix + "first_piece_seconds_count", (("stream", "true"),)] == 1
    assert got[prefix + "first_piece_seconds_count", (("stream", "false"),)] == 2
    assert got[prefix + "request_duration_seconds_count", (("route", CHAT),)] == 3
    assert got[prefix + "streams_in_flight", ()] == 0
    assert got[prefix + "client_disconnects_total", ()] == 0
    assert during[prefix + "streams_in_flight", ()] == 1
    assert after[prefix + "streams_in_flight", ()] == 0
    assert after[prefix + "client_disconnects_total", ()] == 1
    gone = (("outcome", "client_gone"), ("route", CHAT), ("status", "200"))
    assert after[prefix + "requests_total", gone] == 1


# --------------------------------------------------------------------------- readiness


def test_ready_asks_the_service_for_a_token_and_trusts_it_for_ready_ttl(
    upstream: LocalServer,
) -> None:
    app = create_app(base_url=upstream.base_url, api_key=KEY, trust_env=False)  # ttl 30 s
    strict = create_app(base_url=upstream.base_url, api_key=KEY, ready_ttl=0, trust_env=False)
    with running(app) as url, running(strict) as strict_url:
        for _ in range(3):  # no key needed; one token fetch for all three
            response = httpx.get(url + "/ready")
            assert response.status_code == 200
            assert response.json() == {"status": "ready"}
        assert len(upstream.token_requests) == 1
        upstream.always = Fault(endpoint="token", status=500)
        assert httpx.get(url + "/ready").status_code == 200  # within ready_ttl
        response = httpx.get(strict_url + "/ready")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "upstream_status"
        assert error["type"] == "server_error"
        assert error["message"].startswith("The gateway is not ready: ")
        assert error["request_id"] == response.headers["x-request-id"]
        assert upstream.base_url.split("//")[1] not in response.text
        assert httpx.get(strict_url + "/health").status_code == 200  # alive all the same
        upstream.always = None
        assert httpx.get(strict_url + "/ready").status_code == 200


def test_ready_is_503_when_the_service_cannot_be_reached() -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    app = create_app(base_url=f"http://127.0.0.1:{port}", api_key=KEY, trust_env=False)
    with running(app) as url:
        started = time.monotonic()
        response = httpx.get(url + "/ready", timeout=10)
        assert time.monotonic() - started < 6
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "upstream_unreachable"
        assert httpx.get(url + "/health").json() == {"status": "ok"}


def test_a_chat_answer_counts_as_the_service_answering(upstream: LocalServer) -> None:
    app = create_app(base_url=upstream.base_url, api_key=KEY, trust_env=False)
    with running(app) as url:
        assert httpx.post(url + CHAT, json=body(stream=False), headers=AUTH).status_code == 200
        assert httpx.get(url + "/ready").status_code == 200
    assert len(upstream.token_requests) == 1  # the chat's own: /ready asked nothing more


# --------------------------------------------------------------------------- parameters


def test_drop_params_accepts_unknown_parameters_and_names_them(upstream: LocalServer) -> None:
    strict = create_app(base_url=upstream.base_url, api_key=KEY, trust_env=False)
    relaxed = create_app(base_url=upstream.base_url, api_key=KEY, drop_params=True, trust_env=False)
    vendor = {"top_k": 3, "vendor option": {"x": 1}, "temperature": 0.2}
    with running(strict) as strict_url, running(relaxed) as relaxed_url:
        with openai.OpenAI(base_url=strict_url + "/v1", api_key=KEY, max_retries=0) as client:
            with pytest.raises(openai.BadRequestError) as info:
                client.chat.completions.create(
                    model=MODEL, messages=body()["messages"], extra_body=vendor
                )
            assert info.value.param == "top_k"
        with openai.OpenAI(base_url=relaxed_url + "/v1", api_key=KEY, max_retries=0) as client:
            for stream in (False, True):
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=body()["messages"], extra_body=vendor, stream=stream
                )
                assert raw.headers["x-aichatonline-dropped-params"] == "top_k, vendor%20option"
                answer = raw.parse()
                if stream:
                    text = "".join(c.choices[0].delta.content or "" for c in answer)
                else:
                    text = answer.choices[0].message.content
                assert text == upstream.reply_for("Hi")
            # What would change the answer is still refused.
            with pytest.raises(openai.BadRequestError) as info:
                client.chat.completions.create(
                    model=MODEL, messages=body()["messages"], extra_body=vendor, n=2
                )
            assert info.value.param == "n"
        plain = httpx.post(relaxed_url + CHAT, json=body(stream=False), headers=AUTH)
        assert "x-aichatonline-dropped-params" not in plain.headers


def test_the_model_alias_is_echoed_as_asked(upstream: LocalServer) -> None:
    app = create_app(base_url=upstream.base_url, api_key=KEY, trust_env=False)
    alias = "gpt-4o-mini-2024-07-18"
    with (
        running(app) as url,
        openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client,
    ):
        whole = client.chat.completions.create(model=alias, messages=body()["messages"])
        assert whole.model == alias
        chunks = list(
            client.chat.completions.create(model=alias, messages=body()["messages"], stream=True)
        )
        assert {chunk.model for chunk in chunks} == {alias}


def test_aiohttp_carries_the_sdks_requests(upstream: LocalServer) -> None:
    pytest.importorskip("httpx_aiohttp")
    from aichatonline import DefaultAioHttpClient

    app = create_app(base_url=upstream.base_url, api_key=KEY, aiohttp=True, trust_env=False)
    with (
        running(app) as url,
        openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client,
    ):
        assert isinstance(app.state.gateway.client.http_client, DefaultAioHttpClient)
        whole = client.chat.completions.create(model=MODEL, messages=body()["messages"])
        assert whole.choices[0].message.content == upstream.reply_for("Hi")
        chunks = client.chat.completions.create(
            model=MODEL, messages=body()["messages"], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == upstream.reply_for("Hi")
