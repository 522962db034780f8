"""The tools people already use with httpx work on the SDK's default client.

Every request is an httpx request sent by stock httpx transports, so: respx and
pytest-httpx mock the SDK's default client (no request reaches the network, no name is
looked up), OpenTelemetry's httpx instrumentation makes a span per request, event hooks and
mounts given to ``DefaultHttpxClient(...)`` see and route the SDK's requests,
``httpx.MockTransport`` answers through ``http_client=``, and ``DefaultAioHttpClient()``
passes the fault matrix the other clients pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aichatonline import (
    AsyncClient,
    Client,
    DefaultAioHttpClient,
    DefaultAsyncHttpxClient,
    DefaultHttpxClient,
    InvalidRequestError,
)
from aichatonline.testing import LocalServer
from tests.faults import COMPLETE_CASES, STREAM_CASES, Case, case_params, verify
from tests.helpers import PROMPT, REPLY, arun_stream, pool_active_requests

pytestmark = pytest.mark.usefixtures("isolated")

#: A host no resolver knows: a request that escaped the mock would fail its lookup.
BASE_URL = "https://aichatonline.invalid"
TOKEN_URL = f"{BASE_URL}/api/v1/user/getUniqueId"
CHAT_URL = f"{BASE_URL}/aichatonline/api/chat/gpt"
PIECES = ["Mocked ", "answer ", "é😀"]
BODY = b"".join(
    json.dumps({"code": 200, "data": {"message": piece}}).encode() + b"\n" for piece in PIECES
)
TOKEN = {"code": 200, "data": "mock-token"}


def handler(request: httpx.Request) -> httpx.Response:
    """The service, as a mock: a token, and the answer."""
    if request.url.path.endswith("getUniqueId"):
        return httpx.Response(200, json=TOKEN)
    assert request.headers["uniqueid"] == "mock-token"
    return httpx.Response(200, content=BODY, headers={"content-type": "application/x-ndjson"})


# --------------------------------------------------------------------------- respx


def test_respx_mocks_the_default_client() -> None:
    respx = pytest.importorskip("respx")
    with respx.mock(assert_all_called=True) as router:
        router.get(url__startswith=TOKEN_URL).respond(json=TOKEN)
        chat = router.post(CHAT_URL).respond(content=BODY)
        with Client(base_url=BASE_URL) as client:
            assert client.complete("hi") == "".join(PIECES)
            assert list(client.stream("hi")) == PIECES
    assert chat.call_count == 2
    assert json.loads(chat.calls.last.request.content)["prompt"] == "hi"


@pytest.mark.anyio
async def test_respx_mocks_the_default_async_client(anyio_backend: str) -> None:
    respx = pytest.importorskip("respx")
    with respx.mock(assert_all_called=True) as router:
        router.get(url__startswith=TOKEN_URL).respond(json=TOKEN)
        router.post(CHAT_URL).respond(content=BODY)
        async with AsyncClient(base_url=BASE_URL) as client:
            assert await client.complete("hi") == "".join(PIECES)


# --------------------------------------------------------------------------- pytest-httpx


@pytest.fixture
def mocked(httpx_mock: Any) -> Any:
    httpx_mock.add_callback(handler, is_reusable=True)
    return httpx_mock


def test_pytest_httpx_mocks_the_default_client(mocked: Any) -> None:
    with Client(base_url=BASE_URL) as client:
        assert client.complete("hi") == "".join(PIECES)
    methods = [request.method for request in mocked.get_requests()]
    assert methods == ["GET", "POST"]


@pytest.mark.anyio
async def test_pytest_httpx_mocks_the_default_async_client(mocked: Any, anyio_backend: str) -> None:
    async with AsyncClient(base_url=BASE_URL) as client:
        assert [piece async for piece in client.stream("hi")] == PIECES
    assert len(mocked.get_requests()) == 2


# --------------------------------------------------------------------------- MockTransport


def test_mock_transport_through_http_client() -> None:
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        client = Client(base_url=BASE_URL, http_client=http)
        assert client.complete("hi") == "".join(PIECES)
        assert list(client.stream("hi")) == PIECES
        client.close()
        assert not http.is_closed  # yours: the SDK never closes it


@pytest.mark.anyio
async def test_mock_transport_through_an_async_http_client(anyio_backend: str) -> None:
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
        AsyncClient(base_url=BASE_URL, http_client=http) as client,
    ):
        assert await client.complete("hi") == "".join(PIECES)


# --------------------------------------------------------------------------- hooks and mounts


def test_event_hooks_of_a_default_httpx_client_see_every_request(server: LocalServer) -> None:
    seen: list[str] = []

    def request(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    def response(response: httpx.Response) -> None:
        seen.append(f"{response.status_code}")

    http = DefaultHttpxClient(event_hooks={"request": [request], "response": [response]})
    with http, Client(base_url=server.base_url, http_client=http) as client:
        assert client.complete(PROMPT) == REPLY
    assert seen == [
        "GET /api/v1/user/getUniqueId",
        "200",
        "POST /aichatonline/api/chat/gpt",
        "200",
    ]


@pytest.mark.anyio
async def test_mounts_of_a_default_async_httpx_client_route_the_sdks_requests(
    anyio_backend: str,
) -> None:
    mounts = {"all://aichatonline.invalid": httpx.MockTransport(handler)}
    async with (
        DefaultAsyncHttpxClient(mounts=mounts) as http,
        AsyncClient(base_url=BASE_URL, http_client=http) as client,
    ):
        assert await client.complete("hi") == "".join(PIECES)


# --------------------------------------------------------------------------- OpenTelemetry


@pytest.fixture
def spans() -> Iterator[Any]:
    """OpenTelemetry's httpx instrumentation, recording into memory."""
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    instrumentor = instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


def _methods(exporter: Any) -> list[str]:
    return sorted(
        str(span.attributes.get("http.request.method") or span.name)
        for span in exporter.get_finished_spans()
    )


def test_opentelemetry_makes_a_span_per_request(server: LocalServer, spans: Any) -> None:
    with Client(base_url=server.base_url) as client:
        assert client.complete(PROMPT) == REPLY
        assert client.complete(PROMPT) == REPLY
    assert _methods(spans) == ["GET", "POST", "POST"]


@pytest.mark.anyio
async def test_opentelemetry_makes_a_span_per_async_request(
    server: LocalServer, spans: Any, anyio_backend: str
) -> None:
    async with AsyncClient(base_url=server.base_url) as client:
        assert await client.complete(PROMPT) == REPLY
    assert _methods(spans) == ["GET", "POST"]


# --------------------------------------------------------------------------- aiohttp


@pytest.fixture
def aiohttp_client() -> Any:
    pytest.importorskip("httpx_aiohttp")
    return DefaultAioHttpClient


@pytest.mark.anyio
@pytest.mark.parametrize("case", case_params(STREAM_CASES))
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_fault_stream_on_aiohttp(
    case: Case, server: LocalServer, anyio_backend: str, aiohttp_client: Any
) -> None:
    server.inject(*case.faults)
    async with (
        aiohttp_client() as http,
        AsyncClient(base_url=server.base_url, http_client=http, **case.client_options()) as client,  # type: ignore[arg-type]
    ):
        pieces, stream, exc = await arun_stream(client)
        verify(case, server, pieces=pieces, text=stream.text, exc=exc)
        assert pool_active_requests(client) == 0
        assert await client.complete(PROMPT) == REPLY


@pytest.mark.anyio
@pytest.mark.parametrize("case", case_params(COMPLETE_CASES))
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_fault_complete_on_aiohttp(
    case: Case, server: LocalServer, anyio_backend: str, aiohttp_client: Any
) -> None:
    server.inject(*case.faults)
    async with (
        aiohttp_client() as http,
        AsyncClient(base_url=server.base_url, http_client=http, **case.client_options()) as client,  # type: ignore[arg-type]
    ):
        text: str | None = None
        exc: Exception | None = None
        try:
            text = await client.complete(PROMPT)
        except Exception as caught:  # noqa: BLE001 - any error, to check that it is one of ours
            exc = caught
        verify(case, server, pieces=None, text=text, exc=exc)
        assert await client.complete(PROMPT) == REPLY


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_aiohttp_on_trio_is_a_clear_error(anyio_backend: str, aiohttp_client: Any) -> None:
    async with AsyncClient(base_url=BASE_URL, http_client=aiohttp_client()) as client:
        with pytest.raises(InvalidRequestError, match="asyncio only"):
            await client.complete("hi")


def test_aiohttp_client_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "httpx_aiohttp", None)
    with pytest.raises(ImportError, match=r"aichatonline\[aiohttp\]"):
        DefaultAioHttpClient()
