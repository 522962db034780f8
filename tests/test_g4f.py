"""g4f's own entry points, for real, with ``AiChatOnline`` as the provider, against the bundled
server: ``g4f.client.Client`` and ``AsyncClient``, ``g4f.ChatCompletion.create`` and
``create_async``, ``RetryProvider`` and ``IterListProvider``, streamed and not; ``url``
assignment and subclassing; the SDK's typed errors reaching the caller.

g4f is optional (the ``compat`` test extra installs the version whose provider we
re-implement, 6.7.1); without it this file is skipped. Nothing here may leave the machine:
g4f's version check (a PyPI request on its first ``ChatCompletion`` call) is turned off, its
usage log goes to a temporary directory, and every host name lookup other than loopback is
refused and recorded (a test fails if one happened). g4f runs on asyncio only, so the async
tests here run on asyncio alone.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aichatonline import (
    AiChatOnline,
    APIConnectionError,
    APITimeoutError,
    InvalidRequestError,
    RateLimitError,
    StreamInterrupted,
)
from aichatonline.testing import Fault, LocalServer
from tests.helpers import PROMPT, fast

g4f = pytest.importorskip("g4f")
g4f_client = pytest.importorskip("g4f.client")
g4f_client_types = pytest.importorskip("g4f.client.types")
g4f_cookies = pytest.importorskip("g4f.cookies")
g4f_retry = pytest.importorskip("g4f.providers.retry_provider")
g4f_auth = pytest.importorskip("g4f.tools.auth")

G4FClient = g4f_client.Client
G4FAsyncClient = g4f_client.AsyncClient
RetryProvider = g4f_retry.RetryProvider
IterListProvider = g4f_retry.IterListProvider

REAL_HOST = "aichatonlineorg.erweima.ai"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: g4f 8.x's client takes ``base_url=`` and passes it on to the provider; 6.x ignores it.
G4F_PASSES_BASE_URL = "base_url" in inspect.signature(g4f_client_types.Client).parameters


def messages(text: str = PROMPT) -> list[dict[str, Any]]:
    """A fresh message list per call: g4f 8.x edits the caller's list in place."""
    return [{"role": "user", "content": text}]


@pytest.fixture
def anyio_backend() -> str:
    """g4f is asyncio-only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def refused_hosts(
    isolated: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[list[str]]:
    """Keep g4f and the SDK on this machine, and undo what g4f changes on the class.

    Yields the host names whose lookup was refused; a test that expects one clears the list.
    """
    monkeypatch.delenv("G4F_PROXY", raising=False)
    monkeypatch.delenv("AICHATONLINE_API_KEY", raising=False)
    monkeypatch.setenv("G4F_DISABLE_CIRCUIT_BREAKER", "1")  # g4f 8.x: no provider cool-down
    monkeypatch.setattr(g4f.debug, "version_check", False)  # else: GET pypi.org/pypi/g4f/json
    monkeypatch.setattr(g4f_cookies.CookiesConfig, "cookies_dir", str(tmp_path))  # usage log
    config = getattr(g4f, "config", None)
    app_config = getattr(config, "AppConfig", None)
    if app_config is not None and hasattr(app_config, "proxy"):
        monkeypatch.setattr(app_config, "proxy", None)  # g4f 8.x reads G4F_PROXY at import
    monkeypatch.setattr(AiChatOnline, "live", 0)  # g4f counts successes and failures here
    breaker = getattr(g4f_retry, "ProviderCircuitBreaker", None)
    if breaker is not None:
        breaker.reset()
    AiChatOnline._tokens.clear()

    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            refused.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"test: {name} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield refused
    AiChatOnline._tokens.clear()
    assert refused == [], f"something tried to leave the machine: {refused}"


@pytest.fixture
def server(aichatonline_env: LocalServer) -> LocalServer:
    """The local server, with ``AICHATONLINE_BASE_URL`` pointing at it."""
    return aichatonline_env


# --------------------------------------------------------------------------- entry points

Provider = Any  # a provider class, or a g4f RetryProvider / IterListProvider instance

PROVIDERS: dict[str, Callable[[], Provider]] = {
    "AiChatOnline": lambda: AiChatOnline,
    "RetryProvider": lambda: RetryProvider([AiChatOnline], shuffle=False),
    "IterListProvider": lambda: IterListProvider([AiChatOnline], shuffle=False),
}


def text_of(chunks: list[Any]) -> list[str]:
    """The text pieces among what ``ChatCompletion.create(stream=True)`` yielded.

    Through a ``RetryProvider``/``IterListProvider`` g4f also yields its own ``ProviderInfo``
    objects (empty when printed); anything else would be a bug.
    """
    pieces = [chunk for chunk in chunks if isinstance(chunk, str)]
    others = [chunk for chunk in chunks if not isinstance(chunk, str)]
    assert all(type(chunk).__name__ == "ProviderInfo" for chunk in others), others
    return pieces


def deltas(chunks: list[Any]) -> list[str]:
    """The text pieces of a g4f client's stream; its last chunk ends it with ``"stop"``."""
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].delta.content is None
    return [chunk.choices[0].delta.content for chunk in chunks[:-1]]


def sync_call(entry: str, provider: Provider, model: str = "", **kwargs: Any) -> list[str]:
    """Call a blocking g4f entry point; the text pieces the caller sees."""
    if entry == "Client":
        completion = G4FClient(provider=provider).chat.completions.create(
            model=model, messages=messages(), **kwargs
        )
        assert completion.choices[0].finish_reason == "stop"
        return [completion.choices[0].message.content]
    if entry == "Client-stream":
        stream = G4FClient(provider=provider).chat.completions.create(
            model=model, messages=messages(), stream=True, **kwargs
        )
        return deltas(list(stream))
    if entry == "ChatCompletion.create":
        return [g4f.ChatCompletion.create(model, messages(), provider=provider, **kwargs)]
    assert entry == "ChatCompletion.create-stream"
    chunks = g4f.ChatCompletion.create(model, messages(), provider=provider, stream=True, **kwargs)
    return text_of(list(chunks))


async def async_call(entry: str, provider: Provider, model: str = "", **kwargs: Any) -> list[str]:
    """Call an async g4f entry point; the text pieces the caller sees."""
    if entry == "AsyncClient":
        completion = await G4FAsyncClient(provider=provider).chat.completions.create(
            model=model, messages=messages(), **kwargs
        )
        assert completion.choices[0].finish_reason == "stop"
        return [completion.choices[0].message.content]
    if entry == "AsyncClient-stream":
        stream = G4FAsyncClient(provider=provider).chat.completions.create(
            model=model, messages=messages(), stream=True, **kwargs
        )
        return deltas([chunk async for chunk in stream])
    if entry == "ChatCompletion.create_async":
        result = g4f.ChatCompletion.create_async(model, messages(), provider=provider, **kwargs)
        return [await result]
    assert entry == "ChatCompletion.create_async-stream"
    chunks = g4f.ChatCompletion.create_async(
        model, messages(), provider=provider, stream=True, **kwargs
    )
    return text_of([chunk async for chunk in chunks])


SYNC_ENTRIES = ["Client", "Client-stream", "ChatCompletion.create", "ChatCompletion.create-stream"]
ASYNC_ENTRIES = [
    "AsyncClient",
    "AsyncClient-stream",
    "ChatCompletion.create_async",
    "ChatCompletion.create_async-stream",
]


def expected(server: LocalServer, entry: str) -> list[str]:
    if entry.endswith("-stream"):
        return server.pieces_for(PROMPT)
    return [server.reply_for(PROMPT)]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("entry", SYNC_ENTRIES)
def test_sync_entry_points(server: LocalServer, entry: str, provider: str) -> None:
    assert sync_call(entry, PROVIDERS[provider](), model="gpt-4o-mini") == expected(server, entry)
    assert len(server.chat_requests) == 1
    assert server.tokens_issued == 1


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("entry", ASYNC_ENTRIES)
async def test_async_entry_points(server: LocalServer, entry: str, provider: str) -> None:
    pieces = await async_call(entry, PROVIDERS[provider](), model="gpt-4o-mini")
    assert pieces == expected(server, entry)
    assert len(server.chat_requests) == 1
    assert server.tokens_issued == 1


def test_the_token_is_cached_across_g4f_calls(server: LocalServer) -> None:
    for entry in SYNC_ENTRIES:
        sync_call(entry, AiChatOnline)
    assert len(server.chat_requests) == len(SYNC_ENTRIES)
    assert server.tokens_issued == 1


@pytest.mark.parametrize("provider", ["RetryProvider", "IterListProvider"])
def test_the_completion_names_the_provider_and_model(server: LocalServer, provider: str) -> None:
    # What g4f learns from get_dict(). (g4f 8.8 leaves both None for a provider class
    # passed directly: its iter_response overwrites the information it is given.)
    completion = G4FClient(provider=PROVIDERS[provider]()).chat.completions.create(
        model="gpt-4o-mini", messages=messages()
    )
    assert completion.provider == "AiChatOnline"
    assert completion.model == "gpt-4o-mini"


def test_history_and_system_message_reach_the_prompt(server: LocalServer) -> None:
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    prompt = "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: How are you?\nAssistant:"
    completion = G4FClient(provider=AiChatOnline).chat.completions.create(
        model="", messages=history
    )
    assert completion.choices[0].message.content == server.reply_for(prompt)
    assert server.chat_requests[0].json()["prompt"] == prompt


def test_model_aliases_and_unknown_models(server: LocalServer) -> None:
    alias = "gpt-4o-mini-2024-07-18"
    assert sync_call("Client", RetryProvider([AiChatOnline], shuffle=False), model=alias) == [
        server.reply_for(PROMPT)
    ]
    with pytest.raises(InvalidRequestError, match="gpt-4o-mini"):
        sync_call("Client", AiChatOnline, model="gpt-5")
    assert len(server.chat_requests) == 1


def test_leaving_a_g4f_stream_early_closes_the_connection(server: LocalServer) -> None:
    server.pieces, server.delay = 40, 0.05
    stream = G4FClient(provider=AiChatOnline).chat.completions.create(
        model="", messages=messages(), stream=True
    )
    next(stream)
    stream.close()
    assert server.wait_for(lambda s: s.disconnects == 1, 5.0)


def test_g4f_counts_on_the_class(server: LocalServer) -> None:
    # g4f keeps a success/failure score in the provider's ``live`` attribute.
    sync_call("Client", AiChatOnline)
    assert AiChatOnline.live == 1
    server.inject(Fault(status=429))
    with pytest.raises(RateLimitError):
        sync_call("Client", AiChatOnline, max_retries=0)
    assert AiChatOnline.live == 0


def test_no_api_key_is_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # needs_auth is false and there is no login_url: g4f does not go looking for a key.
    monkeypatch.setenv("AICHATONLINE_API_KEY", "not-used")
    assert g4f_auth.AuthManager.load_api_key(AiChatOnline) is None


# --------------------------------------------------------------------------- where calls go


def test_assigning_url_redirects_every_sync_entry_point(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalServer() as elsewhere:
        monkeypatch.setattr(AiChatOnline, "url", elsewhere.base_url)
        for entry in SYNC_ENTRIES:
            for provider in PROVIDERS.values():
                assert sync_call(entry, provider()) == expected(elsewhere, entry)
        assert len(elsewhere.chat_requests) == len(SYNC_ENTRIES) * len(PROVIDERS)
        assert AiChatOnline.get_dict()["url"] == elsewhere.base_url
    assert server.requests == []  # AICHATONLINE_BASE_URL comes after url


@pytest.mark.anyio
async def test_assigning_url_redirects_every_async_entry_point(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalServer() as elsewhere:
        monkeypatch.setattr(AiChatOnline, "url", elsewhere.base_url)
        for entry in ASYNC_ENTRIES:
            for provider in PROVIDERS.values():
                assert await async_call(entry, provider()) == expected(elsewhere, entry)
        assert len(elsewhere.chat_requests) == len(ASYNC_ENTRIES) * len(PROVIDERS)
    assert server.requests == []


def test_a_subclass_with_its_own_url(server: LocalServer) -> None:
    with LocalServer() as elsewhere:

        class Elsewhere(AiChatOnline):
            url = elsewhere.base_url

        assert sync_call("Client", Elsewhere) == [elsewhere.reply_for(PROMPT)]
        retrying = RetryProvider([Elsewhere], shuffle=False)
        completion = G4FClient(provider=retrying).chat.completions.create(
            model="", messages=messages()
        )
        assert completion.choices[0].message.content == elsewhere.reply_for(PROMPT)
        assert completion.provider == "Elsewhere"
        assert sync_call("ChatCompletion.create", RetryProvider([Elsewhere], shuffle=False)) == [
            elsewhere.reply_for(PROMPT)
        ]
        assert Elsewhere.get_dict() == {
            "name": "Elsewhere",
            "url": elsewhere.base_url,
            "label": "AiChatOnline",
        }
        assert Elsewhere.get_parent() == "AiChatOnline"
        assert len(elsewhere.chat_requests) == 3
    assert server.requests == []
    # The parent class still follows AICHATONLINE_BASE_URL.
    assert sync_call("ChatCompletion.create", AiChatOnline) == [server.reply_for(PROMPT)]


def test_a_base_url_argument_comes_first(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalServer() as assigned, LocalServer() as argument:
        monkeypatch.setattr(AiChatOnline, "url", assigned.base_url)
        for entry in SYNC_ENTRIES:
            assert sync_call(entry, AiChatOnline, base_url=argument.base_url) == expected(
                argument, entry
            )
        assert len(argument.chat_requests) == len(SYNC_ENTRIES)
        # g4f 8.x's own client takes base_url= and passes it on; 6.x ignores it.
        client = G4FClient(provider=AiChatOnline, base_url=argument.base_url)
        client.chat.completions.create(model="", messages=messages())
        if G4F_PASSES_BASE_URL:
            assert len(argument.chat_requests) == len(SYNC_ENTRIES) + 1
        else:
            assert len(assigned.chat_requests) == 1
    assert server.requests == []


def test_the_default_url_leaves_the_environment_in_charge(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AiChatOnline, "url", "https://aichatonlineorg.erweima.ai/")
    assert sync_call("ChatCompletion.create", AiChatOnline) == [server.reply_for(PROMPT)]


def test_without_any_setting_the_real_service_is_used(refused_hosts: list[str]) -> None:
    # No AICHATONLINE_BASE_URL, the default url: the call heads for the real service (its
    # host name lookup is refused here, so nothing leaves the machine).
    with pytest.raises(APIConnectionError):
        g4f.ChatCompletion.create("", messages(), provider=AiChatOnline, max_retries=0)
    assert refused_hosts == [REAL_HOST]
    refused_hosts.clear()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("entry", SYNC_ENTRIES)
def test_sync_rate_limit_reaches_the_caller(server: LocalServer, entry: str, provider: str) -> None:
    server.inject(Fault(status=429, retry_after="7"))
    with pytest.raises(RateLimitError) as info:
        sync_call(entry, PROVIDERS[provider](), max_retries=0)
    assert info.value.status_code == 429
    assert info.value.retry_after == 7
    assert len(server.chat_requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("entry", ASYNC_ENTRIES)
async def test_async_rate_limit_reaches_the_caller(
    server: LocalServer, entry: str, provider: str
) -> None:
    server.inject(Fault(status=429, retry_after="7"))
    with pytest.raises(RateLimitError) as info:
        await async_call(entry, PROVIDERS[provider](), max_retries=0)
    assert info.value.status_code == 429
    assert len(server.chat_requests) == 1


def test_the_sdk_retries_under_g4f(server: LocalServer) -> None:
    server.inject(Fault(status=429, retry_after="0"), Fault(drop_after=2))
    pieces = sync_call("Client-stream", AiChatOnline, retry_policy=fast())
    assert pieces == server.pieces_for(PROMPT)
    assert len(server.chat_requests) == 3  # 429, dropped and resumed exactly, complete


def test_a_broken_stream_reaches_the_caller_with_its_text(server: LocalServer) -> None:
    server.inject(Fault(drop_after=2))
    received: list[str] = []
    stream = G4FClient(provider=AiChatOnline).chat.completions.create(
        model="", messages=messages(), stream=True, max_retries=0
    )

    def read_all() -> None:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises(StreamInterrupted) as info:
        read_all()
    assert received == server.pieces_for(PROMPT)[:2]
    assert info.value.partial == "".join(received)


def test_stream_timeout_bounds_the_silence_between_reads(server: LocalServer) -> None:
    server.inject(Fault(stall=2.0, stall_after=1))
    with pytest.raises(StreamInterrupted) as info:
        sync_call("ChatCompletion.create-stream", AiChatOnline, stream_timeout=0.3, max_retries=0)
    assert isinstance(info.value.__cause__, APITimeoutError)
    with pytest.raises(InvalidRequestError, match="stream_timeout"):
        sync_call("ChatCompletion.create", AiChatOnline, stream_timeout=-1)
