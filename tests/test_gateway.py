"""The OpenAI-compatible gateway through real OpenAI clients: openai-python (sync and async)
and LangChain's ``ChatOpenAI``, against the gateway on uvicorn (in this process, in a
thread) in front of the bundled server. The texts must equal the bundled server's answers.

``running()`` and ``events()`` here are shared with ``test_gateway_*.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

import aichatonline
from aichatonline import format_prompt
from aichatonline.testing import Fault, LocalServer

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from aichatonline.gateway import create_app  # noqa: E402

KEY = "sk-test-gateway-key"
MODEL = "gpt-4o-mini"
HI = [{"role": "user", "content": "Hi"}]

pytestmark = pytest.mark.usefixtures("upstream")


@contextmanager
def running(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on uvicorn in a thread, on a free port; yield ``http://HOST:PORT``."""
    config = uvicorn.Config(
        app, host=host, port=0, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def events(response: httpx.Response) -> list[Any]:
    """The SSE ``data:`` payloads of a streamed response, JSON-decoded (``[DONE]`` as is)."""
    out: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert line == "", f"unexpected SSE line {line!r}"
    return out


@pytest.fixture(scope="module")
def gateway(shared_server: LocalServer) -> Iterator[str]:
    """The gateway with an API key and the SDK's default retries."""
    with running(create_app(base_url=shared_server.base_url, api_key=KEY, trust_env=False)) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def client(gateway: str) -> Iterator[Any]:
    with openai.OpenAI(base_url=gateway, api_key=KEY, max_retries=0) as sync_client:
        yield sync_client


def test_models_list(client: Any) -> None:
    models = client.models.list()
    ids = [model.id for model in models]
    assert ids[0] == MODEL
    assert all(model.object == "model" and model.owned_by == "aichatonline" for model in models)
    assert client.models.retrieve(MODEL).id == MODEL


def test_create_not_streamed(client: Any, upstream: LocalServer) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=HI)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert completion.choices[0].message.content == upstream.reply_for("Hi")
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is None


def test_create_streamed(client: Any, upstream: LocalServer) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == upstream.reply_for("Hi")
    assert len({(chunk.id, chunk.created) for chunk in chunks}) == 1


def test_streamed_with_usage_and_a_conversation(client: Any, upstream: LocalServer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": [{"type": "text", "text": "And 3 + 3?"}]},
    ]
    stream = client.chat.completions.create(
        model="gpt-4o-mini-2024-07-18",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.3,
        max_tokens=50,
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is None
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == upstream.reply_for(format_prompt(messages))
    assert {chunk.model for chunk in chunks} == {"gpt-4o-mini-2024-07-18"}  # echoed as asked


def test_async_client(gateway: str, upstream: LocalServer) -> None:
    async def main() -> tuple[list[str], str, str]:
        async with openai.AsyncOpenAI(base_url=gateway, api_key=KEY, max_retries=0) as aclient:
            models = [model.id async for model in aclient.models.list()]
            whole = await aclient.chat.completions.create(model=MODEL, messages=HI)
            pieces = []
            stream = await aclient.chat.completions.create(model=MODEL, messages=HI, stream=True)
            async for chunk in stream:
                pieces.append(chunk.choices[0].delta.content or "")
            return models, whole.choices[0].message.content or "", "".join(pieces)

    models, whole, streamed = asyncio.run(main())
    assert MODEL in models
    assert whole == streamed == upstream.reply_for("Hi")


def test_wrong_or_missing_key_is_authentication_error(gateway: str) -> None:
    for key in ("sk-wrong", KEY + "x", KEY[:-1]):
        with openai.OpenAI(base_url=gateway, api_key=key, max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as info:
                bad.chat.completions.create(model=MODEL, messages=HI)
            assert info.value.code == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                bad.models.list()
    response = httpx.get(gateway + "/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert KEY not in response.text


def test_unknown_model_is_not_found(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=HI)
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    assert MODEL in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=HI, stream=True)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_unsupported_parameter_is_bad_request_naming_it(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HI, n=2)
    assert info.value.param == "n"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HI, tools=tools, stream=True)
    assert info.value.param == "tools"


def test_rate_limited_throughout_is_rate_limit_error(client: Any, upstream: LocalServer) -> None:
    upstream.always = Fault(status=429, retry_after="0")
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=MODEL, messages=HI, stream=stream)
        assert info.value.response.headers["retry-after"] == "0"
        assert info.value.code == "rate_limit_exceeded"


def test_a_drop_mid_stream_upstream_is_resumed(client: Any, upstream: LocalServer) -> None:
    set_testing = getattr(aichatonline, "set_testing", None)  # no back-off waits, if we can
    with set_testing(True) if set_testing else contextlib.nullcontext():
        _drop_mid_stream(client, upstream)


def _drop_mid_stream(client: Any, upstream: LocalServer) -> None:
    upstream.inject(Fault(drop_after=3))
    chunks = client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == upstream.reply_for("Hi")
    assert len(upstream.chat_requests) == 2  # dropped, then resumed by the SDK
    upstream.inject(Fault(drop_after=3))
    whole = client.chat.completions.create(model=MODEL, messages=HI)
    assert whole.choices[0].message.content == upstream.reply_for("Hi")


def test_langchain_chat_openai(gateway: str, upstream: LocalServer) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    llm = chat_openai(model=MODEL, base_url=gateway, api_key=KEY, max_retries=0)
    assert llm.invoke("Hi").content == upstream.reply_for("Hi")
    assert "".join(str(chunk.content) for chunk in llm.stream("Hi")) == upstream.reply_for("Hi")
    usage = chat_openai(model=MODEL, base_url=gateway, api_key=KEY, stream_usage=True)
    assert "".join(str(chunk.content) for chunk in usage.stream("Hi")) == upstream.reply_for("Hi")


def test_health_needs_no_key(gateway: str) -> None:
    response = httpx.get(gateway.removesuffix("/v1") + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
