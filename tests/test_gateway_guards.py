"""The gateway's guards, called as an ASGI app (no server in between, so ``scope["client"]``
can be any address): a body nested too deeply for the JSON parser is a plain 400, a gateway
without an API key serves loopback clients only, and a request whose SDK client was closed
under it (the worker shutting down) is a retryable 503, not the caller's fault."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from aichatonline.testing import Fault, LocalServer
from tests.test_gateway import KEY, MODEL

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from aichatonline import InvalidRequestError
from aichatonline._cli import main
from aichatonline.gateway import GatewaySettings, create_app
from aichatonline.gateway._settings import API_KEY_ENV

pytestmark = pytest.mark.usefixtures("isolated", "upstream", "no_api_key_env")

AUTH = {"Authorization": f"Bearer {KEY}"}
REMOTE = ("203.0.113.5", 1234)  # TEST-NET-3: an address that is not this machine's
CHAT = "/v1/chat/completions"


def body(stream: bool = False) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": stream}


@pytest.fixture
def no_api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No gateway key from the machine, as a plain ``uvicorn --factory`` would run."""
    monkeypatch.delenv(API_KEY_ENV, raising=False)


@asynccontextmanager
async def serving(
    app: Any, client: tuple[str, int] | None = ("127.0.0.1", 123)
) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan running, as seen by an HTTP client at address ``client``."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client)  # type: ignore[arg-type]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as http,
    ):
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["code"] == code
    return error


# --------------------------------------------------------------------------- deep JSON


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps(body())[:-1].encode() + b', "metadata": ' + b"[" * 100_000,
    ],
    ids=["open-arrays", "open-objects", "closed-arrays", "inside-a-request"],
)
async def test_json_nested_too_deeply_is_400_invalid_json(
    upstream: LocalServer, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(base_url=upstream.base_url, trust_env=False)
    async with serving(app) as http:
        response = await http.post(CHAT, content=content)
        error = assert_error(response, 400, "invalid_json")
        assert error["type"] == "invalid_request_error"
        # The worker is fine afterwards, and its slot was given back.
        assert (await http.post(CHAT, json=body())).status_code == 200
    assert app.state.gateway.active == 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert "Traceback" not in caplog.text
    assert "RecursionError" not in caplog.text
    assert len(upstream.chat_requests) == 1


# --------------------------------------------------------------------------- loopback only


LOOPBACK = [("127.0.0.1", 50000), ("127.8.9.10", 1), ("::1", 50000), ("::ffff:127.0.0.1", 1)]
NOT_LOOPBACK = [
    REMOTE,
    ("10.0.0.7", 50000),
    ("192.168.1.2", 50000),
    ("2001:db8::1", 50000),
    ("::ffff:203.0.113.5", 50000),
    ("0.0.0.0", 1),
    ("testclient", 50000),  # not an address: refused, never guessed
]


@pytest.mark.anyio
@pytest.mark.parametrize("client", NOT_LOOPBACK, ids=[c[0] for c in NOT_LOOPBACK])
async def test_without_a_key_other_addresses_are_refused_403(
    upstream: LocalServer, client: tuple[str, int]
) -> None:
    app = create_app(base_url=upstream.base_url, trust_env=False)  # no key anywhere
    async with serving(app, client) as http:
        for stream in (False, True):
            response = await http.post(CHAT, json=body(stream))
            error = assert_error(response, 403, "api_key_required")
            assert API_KEY_ENV in error["message"]
            assert "--api-key" in error["message"]
        for path in ("/v1/models", f"/v1/models/{MODEL}", "/v1/embeddings", "/metrics"):
            assert_error(await http.get(path), 403, "api_key_required")
        # A sent key changes nothing: there is none to match.
        assert (await http.get("/v1/models", headers=AUTH)).status_code == 403
        # The load balancer's health check still works; it serves nothing.
        health = await http.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
    assert upstream.chat_requests == []
    assert upstream.token_requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("client", [*LOOPBACK, None], ids=[*(c[0] for c in LOOPBACK), "unix"])
async def test_without_a_key_loopback_and_unix_socket_clients_are_served(
    upstream: LocalServer, client: tuple[str, int] | None
) -> None:
    app = create_app(base_url=upstream.base_url, trust_env=False)
    async with serving(app, client) as http:
        response = await http.post(CHAT, json=body())
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == upstream.reply_for("Hi")
        assert (await http.get("/v1/models")).status_code == 200


@pytest.mark.anyio
async def test_with_a_key_other_addresses_are_served_with_the_key(
    upstream: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, KEY)  # `uvicorn --factory ... --host 0.0.0.0`, with a key
    app = create_app(base_url=upstream.base_url, trust_env=False)
    async with serving(app, REMOTE) as http:
        response = await http.post(CHAT, json=body(), headers=AUTH)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == upstream.reply_for("Hi")
        assert_error(await http.post(CHAT, json=body()), 401, "invalid_api_key")
        wrong = await http.post(CHAT, json=body(), headers={"Authorization": "Bearer sk-x"})
        assert_error(wrong, 401, "invalid_api_key")


@pytest.mark.anyio
async def test_no_auth_serves_every_address_without_a_key(upstream: LocalServer) -> None:
    app = create_app(base_url=upstream.base_url, trust_env=False, no_auth=True)
    async with serving(app, REMOTE) as http:
        assert (await http.post(CHAT, json=body())).status_code == 200


def test_no_auth_is_a_setting_the_workers_get(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings(no_auth=True, max_concurrency=7)
    monkeypatch.setenv("AICHATONLINE_GATEWAY_SETTINGS", settings.to_env())
    assert GatewaySettings.from_env() == settings
    assert GatewaySettings().no_auth is False
    with pytest.raises(InvalidRequestError, match="no_auth"):
        GatewaySettings(no_auth="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "no_auth"),
    [
        (["--host", "0.0.0.0", "--no-auth"], True),
        (["--host", "0.0.0.0", "--api-key", KEY], False),
        ([], False),
    ],
)
def test_the_command_passes_no_auth_to_the_app(
    monkeypatch: pytest.MonkeyPatch, args: list[str], no_auth: bool
) -> None:
    seen: list[GatewaySettings] = []

    def serve(settings: GatewaySettings, **options: Any) -> bool:
        seen.append(settings)
        return True

    monkeypatch.setattr("aichatonline.gateway._run.serve", serve)
    assert main(["gateway", "--port", "0", "--base-url", "http://127.0.0.1:9", *args]) == 0
    assert [settings.no_auth for settings in seen] == [no_auth]


# --------------------------------------------------------------------------- closed client


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_closed_sdk_client_is_503_not_400(upstream: LocalServer, stream: bool) -> None:
    app = create_app(base_url=upstream.base_url, trust_env=False)
    async with serving(app) as http:
        # What a request that got the client just before shutdown closed it runs into.
        await app.state.gateway.client.aclose()
        response = await http.post(CHAT, json=body(stream))
        error = assert_error(response, 503, "gateway_shutting_down")
        assert error["type"] == "server_error"
        assert response.headers["retry-after"] == "1"
    assert upstream.chat_requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_closing_the_sdk_client_under_a_request_is_503(
    upstream: LocalServer, stream: bool
) -> None:
    upstream.always = Fault(stall=10)  # the service has not answered when the client closes
    app = create_app(base_url=upstream.base_url, max_retries=0, trust_env=False)
    async with serving(app) as http:
        responses: list[httpx.Response] = []

        async def ask() -> None:
            responses.append(await http.post(CHAT, json=body(stream)))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(ask)
                # Once the request is with the service:
                assert await anyio.to_thread.run_sync(
                    lambda: upstream.wait_for(lambda s: bool(s.chat_requests), timeout=5)
                )
                await app.state.gateway.client.aclose()
    (response,) = responses
    assert_error(response, 503, "gateway_shutting_down")
    assert response.headers["retry-after"] == "1"


@pytest.mark.anyio
async def test_closing_the_sdk_client_mid_stream_ends_it_with_a_503_event() -> None:
    with LocalServer(pieces=400, delay=0.01) as slow:
        app = create_app(base_url=slow.base_url, max_retries=0, trust_env=False)
        requests = [json.dumps(body(stream=True)).encode()]
        sent: list[MutableMapping[str, Any]] = []
        first_piece = anyio.Event()

        async def receive() -> dict[str, Any]:
            if requests:
                return {"type": "http.request", "body": requests.pop(), "more_body": False}
            await anyio.sleep_forever()  # the client stays
            raise AssertionError("unreachable")

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)
            if b'"delta":{"content":' in message.get("body", b""):  # not the role event
                first_piece.set()

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": CHAT,
            "raw_path": CHAT.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"gateway"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 123),
            "server": ("127.0.0.1", 8000),
        }
        async with app.router.lifespan_context(app):
            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    group.start_soon(app, scope, receive, send)
                    await first_piece.wait()
                    await app.state.gateway.client.aclose()
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    assert sent[-1]["more_body"] is False
    raw = b"".join(message.get("body", b"") for message in sent[1:]).decode()
    last = json.loads(raw.strip().split("\n\n")[-1].removeprefix("data: "))
    assert last["error"]["code"] == "gateway_shutting_down"
    assert "[DONE]" not in raw
