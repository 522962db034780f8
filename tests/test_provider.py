"""The original provider class, ``AiChatOnline``: its attributes and models, both examples of
the seed document run as written, ``grab_token`` with aiohttp and httpx sessions, the fault
matrix through ``create_async_generator`` and ``create_completion``, and the token cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import aiohttp
import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import pytest

from aichatonline import (
    AiChatOnline,
    APITimeoutError,
    AsyncGeneratorProvider,
    BlockedError,
    InvalidRequestError,
    ProtocolError,
    ProviderModelMixin,
    ServerError,
    StreamInterrupted,
)
from aichatonline.testing import Fault, ForwardProxy, LocalServer, pieces_for, reply_for
from tests.faults import STREAM_CASES, Case, case_params, verify
from tests.helpers import PROMPT, REPLY, STALL, assert_ours

MESSAGES = [{"role": "user", "content": PROMPT}]
SEED_MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]


# No proxy or base URL from the machine; then ``AICHATONLINE_BASE_URL`` points at the test's
# local server (``server``), where the provider class sends its calls. The provider takes no
# retry_policy argument: its back-off is turned off with the SDK's switch for test suites
# (``no_backoff``), so the fault matrix never sleeps.
pytestmark = pytest.mark.usefixtures("server_in_env", "no_backoff")


@pytest.fixture
def server_in_env(isolated: None, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``AICHATONLINE_BASE_URL`` at the test's ``server`` (after ``isolated`` cleared it)."""
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url)


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    """The provider's class-wide token cache, empty for each test and after it."""
    AiChatOnline._tokens.clear()
    yield
    AiChatOnline._tokens.clear()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy("http") as running:
        yield running


def options(case: Case) -> dict[str, object]:
    return {"timeout": case.timeout, "max_retries": case.max_retries, "strict": case.strict}


# --------------------------------------------------------------------------- the class


def test_class_attributes() -> None:
    assert issubclass(AiChatOnline, AsyncGeneratorProvider)
    assert issubclass(AiChatOnline, ProviderModelMixin)
    assert AiChatOnline.site_url == "https://aichatonline.org"
    assert AiChatOnline.url == "https://aichatonlineorg.erweima.ai"
    assert AiChatOnline.api_endpoint == "/aichatonline/api/chat/gpt"
    assert AiChatOnline.working is True
    assert AiChatOnline.default_model == "gpt-4o-mini"
    assert AiChatOnline.supports_stream is True


def test_what_g4f_reads_from_the_class() -> None:
    # g4f (6.7 and 8.8) reads these from a provider class; g4f itself is not needed.
    assert AiChatOnline.needs_auth is False
    assert not hasattr(AiChatOnline, "login_url")  # else g4f looks for an API key
    assert AiChatOnline.supports_message_history is True
    assert AiChatOnline.supports_system_message is True
    assert AiChatOnline.use_stream_timeout is True
    assert isinstance(AiChatOnline.live, int)
    assert AiChatOnline.label == "AiChatOnline"
    assert AiChatOnline.get_parent() == "AiChatOnline"
    assert AiChatOnline.get_dict() == {
        "name": "AiChatOnline",
        "url": "https://aichatonlineorg.erweima.ai",
        "label": "AiChatOnline",
    }
    assert AiChatOnline.get_models(api_key="ignored") == ["gpt-4o-mini"]
    assert _Counting.get_parent() == "_Counting"
    assert _Counting.get_dict()["label"] is None


def test_models_and_aliases() -> None:
    assert AiChatOnline.get_models() == ["gpt-4o-mini"]
    assert AiChatOnline.get_model("") == "gpt-4o-mini"
    assert AiChatOnline.get_model("gpt-4o-mini") == "gpt-4o-mini"
    for alias in AiChatOnline.model_aliases:
        assert AiChatOnline.get_model(alias) == "gpt-4o-mini"
    assert AiChatOnline.get_model("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    with pytest.raises(InvalidRequestError, match="gpt-5"):
        AiChatOnline.get_model("gpt-5")


# --------------------------------------------------------------------------- the seed examples


def test_seed_example_grab_token(
    server: LocalServer, proxy: ForwardProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy_url = proxy.url  # stands for 'http://proxy.example.com'

    # -- the first example of the seed, as written
    import asyncio

    from aiohttp import ClientSession

    async def main():  # type: ignore[no-untyped-def]
        async with ClientSession() as session:
            token = await AiChatOnline.grab_token(session, proxy_url)
            print(token)

    asyncio.run(main())
    # --

    printed = capsys.readouterr().out
    assert printed.endswith("\n")
    token = printed[:-1]
    assert token
    assert "\n" not in token
    assert server.tokens_issued == 1
    # The token is one the server issued: a chat with it is accepted.
    response = httpx.post(
        server.base_url + AiChatOnline.api_endpoint,
        json={"conversationId": "abcdefghij", "prompt": "Hi"},
        headers={"UniqueId": token},
    )
    assert response.status_code == 200
    (request,) = proxy.requests
    assert request.startswith(f"GET {server.base_url}/api/v1/user/getUniqueId?canvas=-")


def test_seed_example_create_async_generator(
    server: LocalServer, proxy: ForwardProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy_url = proxy.url  # stands for 'http://proxy.example.com'

    # -- the second example of the seed, as written
    import asyncio

    async def main():  # type: ignore[no-untyped-def]
        messages = [{"role": "user", "content": "Hello, how are you?"}]
        async for chunk in AiChatOnline.create_async_generator(
            "gpt-4o-mini", messages, proxy=proxy_url
        ):
            print(chunk)

    asyncio.run(main())
    # --

    expected = pieces_for("Hello, how are you?")
    assert capsys.readouterr().out == "".join(f"{piece}\n" for piece in expected)
    assert "".join(expected) == reply_for("Hello, how are you?")
    # Everything went through the proxy.
    assert [r.split(" ")[0] for r in proxy.requests] == ["GET", "POST"]
    assert proxy.requests[1] == f"POST {server.base_url}/aichatonline/api/chat/gpt"
    assert server.chat_requests[0].json()["prompt"] == "Hello, how are you?"


# --------------------------------------------------------------------------- grab_token


def test_grab_token_with_aiohttp_without_proxy(server: LocalServer) -> None:
    async def main() -> tuple[str, str]:
        async with aiohttp.ClientSession() as session:
            return (
                await AiChatOnline.grab_token(session),
                await AiChatOnline.grab_token(session, None),
            )

    first, second = asyncio.run(main())
    assert first != second  # a fresh unique id each time
    assert server.tokens_issued == 2


@pytest.mark.anyio
async def test_grab_token_with_httpx(server: LocalServer, anyio_backend: str) -> None:
    async with httpx.AsyncClient() as session:
        token = await AiChatOnline.grab_token(session)
        assert token
        assert server.tokens_issued == 1
        with pytest.raises(InvalidRequestError, match="proxy"):
            await AiChatOnline.grab_token(session, "http://127.0.0.1:3128")
    assert len(server.token_requests) == 1


@pytest.mark.anyio
async def test_grab_token_rejects_other_sessions(server: LocalServer, anyio_backend: str) -> None:
    with pytest.raises(InvalidRequestError, match="session"):
        await AiChatOnline.grab_token(object())
    assert server.requests == []


GRAB_FAULTS = [
    pytest.param((Fault(endpoint="token", status=503),), None, 2, id="503-then-ok"),
    pytest.param((Fault(endpoint="token", drop_after=0),), None, 2, id="dropped-then-ok"),
    pytest.param((Fault(endpoint="token", trickle=True),), None, 1, id="trickle"),
    pytest.param((Fault(endpoint="token", status=500),) * 3, ServerError, 3, id="500-exhausted"),
    pytest.param((Fault(endpoint="token", malformed=True),), None, 2, id="not-json-then-ok"),
    pytest.param((Fault(endpoint="token", error_after=0),), None, 2, id="no-data-then-ok"),
    pytest.param(
        (Fault(endpoint="token", malformed=True),) * 3, ProtocolError, 3, id="not-json-exhausted"
    ),
    pytest.param(
        (Fault(endpoint="token", error_after=0),) * 3, ProtocolError, 3, id="no-data-exhausted"
    ),
    pytest.param((Fault(endpoint="token", cloudflare=True),), BlockedError, 1, id="cloudflare"),
]


@pytest.mark.parametrize(("faults", "error", "requests"), GRAB_FAULTS)
@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
def test_grab_token_faults(
    server: LocalServer,
    faults: tuple[Fault, ...],
    error: type[Exception] | None,
    requests: int,
    kind: str,
) -> None:
    server.inject(*faults)

    async def main() -> str:
        session: aiohttp.ClientSession | httpx.AsyncClient
        session = aiohttp.ClientSession() if kind == "aiohttp" else httpx.AsyncClient()
        async with session:
            return await AiChatOnline.grab_token(session)

    if error is None:
        assert asyncio.run(main())
    else:
        with pytest.raises(error) as info:
            asyncio.run(main())
        assert_ours(info.value)
    assert len(server.token_requests) == requests


# --------------------------------------------------------------------------- the fault matrix


@pytest.mark.anyio
@pytest.mark.parametrize("case", case_params(STREAM_CASES))
async def test_fault_create_async_generator(
    case: Case, server: LocalServer, anyio_backend: str
) -> None:
    server.inject(*case.faults)
    pieces: list[str] = []
    exc: Exception | None = None
    generator = AiChatOnline.create_async_generator("gpt-4o-mini", MESSAGES, **options(case))
    try:
        async for piece in generator:
            pieces.append(piece)
    except Exception as caught:  # noqa: BLE001 - any error, to check that it is one of ours
        exc = caught
    verify(case, server, pieces=pieces, text="".join(pieces), exc=exc)
    # The provider stays usable.
    assert await AiChatOnline.create_async("gpt-4o-mini", MESSAGES) == REPLY


@pytest.mark.parametrize("case", case_params(STREAM_CASES))
def test_fault_create_completion(case: Case, server: LocalServer) -> None:
    server.inject(*case.faults)
    pieces: list[str] = []
    exc: Exception | None = None
    try:
        for piece in AiChatOnline.create_completion("gpt-4o-mini", MESSAGES, **options(case)):
            pieces.append(piece)
    except Exception as caught:  # noqa: BLE001 - any error, to check that it is one of ours
        exc = caught
    verify(case, server, pieces=pieces, text="".join(pieces), exc=exc)


# --------------------------------------------------------------------------- the other calls


def test_create_completion_streams_and_joins(server: LocalServer) -> None:
    pieces = list(AiChatOnline.create_completion("gpt-4o-mini", MESSAGES, stream=True))
    assert pieces == pieces_for(PROMPT)
    assert list(AiChatOnline.create_completion("", MESSAGES, stream=False)) == [REPLY]
    # Options the service does not take are accepted and ignored.
    assert "".join(AiChatOnline.create_completion("gpt-4o-mini", MESSAGES, temperature=0.2)) == (
        REPLY
    )


def test_create_completion_inside_a_running_event_loop(server: LocalServer) -> None:
    async def main() -> tuple[list[str], list[str]]:
        streamed = list(AiChatOnline.create_completion("gpt-4o-mini", MESSAGES))
        whole = list(AiChatOnline.create_completion("gpt-4o-mini", MESSAGES, stream=False))
        return streamed, whole

    streamed, whole = asyncio.run(main())
    assert streamed == pieces_for(PROMPT)
    assert whole == [REPLY]


def test_create_completion_in_a_worker_thread_of_a_loop(server: LocalServer) -> None:
    async def main() -> str:
        return await anyio.to_thread.run_sync(
            lambda: "".join(AiChatOnline.create_completion("gpt-4o-mini", MESSAGES))
        )

    assert anyio.run(main, backend="trio") == REPLY


@pytest.mark.anyio
async def test_create_async(server: LocalServer, anyio_backend: str) -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    assert await AiChatOnline.create_async("gpt-4o-mini", messages) == reply_for(
        "System: S\nUser: Hi\nAssistant:"
    )
    assert server.chat_requests[0].json()["prompt"] == "System: S\nUser: Hi\nAssistant:"


@pytest.mark.anyio
async def test_unknown_model_and_bad_messages_send_nothing(
    server: LocalServer, anyio_backend: str
) -> None:
    with pytest.raises(InvalidRequestError):
        async for _ in AiChatOnline.create_async_generator("gpt-5", MESSAGES):
            pass
    with pytest.raises(InvalidRequestError):
        await AiChatOnline.create_async("gpt-4o-mini", [])
    with pytest.raises(InvalidRequestError):
        list(AiChatOnline.create_completion("gpt-5", MESSAGES))
    with pytest.raises(InvalidRequestError):
        list(AiChatOnline.create_completion("gpt-4o-mini", [{"role": "user"}]))
    assert server.requests == []


@pytest.mark.anyio
async def test_token_is_cached_per_base_url(server: LocalServer, anyio_backend: str) -> None:
    assert await AiChatOnline.create_async("gpt-4o-mini", MESSAGES) == REPLY
    assert set(AiChatOnline._tokens) == {server.base_url}
    assert await AiChatOnline.create_async("gpt-4o-mini", MESSAGES) == REPLY
    assert "".join(AiChatOnline.create_completion("gpt-4o-mini", MESSAGES)) == REPLY
    assert server.tokens_issued == 1
    # One round trip per chat once the token is known.
    assert [r.path for r in server.requests].count("/aichatonline/api/chat/gpt") == 3
    # An expired token is replaced, and the cache follows.
    old = AiChatOnline._tokens[server.base_url]
    server.expire_tokens()
    assert await AiChatOnline.create_async("gpt-4o-mini", MESSAGES) == REPLY
    assert AiChatOnline._tokens[server.base_url] != old
    assert server.tokens_issued == 2


@pytest.mark.anyio
async def test_base_url_keyword_overrides_the_environment(
    server: LocalServer, anyio_backend: str
) -> None:
    with LocalServer() as other:
        text = await AiChatOnline.create_async("gpt-4o-mini", MESSAGES, base_url=other.base_url)
        assert text == REPLY
        assert len(other.chat_requests) == 1
    assert server.requests == []


def test_g4f_entry_functions(server: LocalServer) -> None:
    # create_function / async_create_function: what g4f 6.7 calls; g4f's own keyword
    # arguments (stream=, provider=) are taken without complaint.
    assert list(AiChatOnline.create_function("", MESSAGES, stream=False)) == [REPLY]
    assert list(AiChatOnline.create_function("", MESSAGES, provider=AiChatOnline)) == (
        pieces_for(PROMPT)
    )

    async def main() -> list[str]:
        pieces = AiChatOnline.async_create_function(
            "gpt-4o-mini", MESSAGES, stream=True, provider=AiChatOnline
        )
        return [piece async for piece in pieces]

    assert asyncio.run(main()) == pieces_for(PROMPT)
    assert server.tokens_issued == 1


# --------------------------------------------------------------------------- where calls go
# A base_url= argument, then a url that differs from the default (subclass or assignment),
# then AICHATONLINE_BASE_URL, then the real service.


@pytest.mark.anyio
async def test_assigned_url_comes_before_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    with LocalServer() as assigned, LocalServer() as argument:
        monkeypatch.setattr(AiChatOnline, "url", assigned.base_url)
        assert await AiChatOnline.create_async("gpt-4o-mini", MESSAGES) == REPLY
        assert "".join(AiChatOnline.create_completion("gpt-4o-mini", MESSAGES)) == REPLY
        assert len(assigned.chat_requests) == 2
        # ...and after a base_url= argument.
        text = await AiChatOnline.create_async("", MESSAGES, base_url=argument.base_url)
        assert text == REPLY
        assert list(AiChatOnline.create_completion("", MESSAGES, base_url=argument.base_url))
        assert len(argument.chat_requests) == 2
    assert server.requests == []


def test_a_subclass_url_comes_before_the_environment(server: LocalServer) -> None:
    with LocalServer() as elsewhere:

        class Elsewhere(AiChatOnline):
            url = elsewhere.base_url + "/"

        assert list(Elsewhere.create_completion("", MESSAGES, stream=False)) == [REPLY]
        assert len(elsewhere.chat_requests) == 1
    assert server.requests == []
    assert list(AiChatOnline.create_completion("", MESSAGES, stream=False)) == [REPLY]
    assert len(server.chat_requests) == 1


def test_the_default_url_leaves_the_environment_in_charge(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for same in ("https://aichatonlineorg.erweima.ai/", "", None):
        monkeypatch.setattr(AiChatOnline, "url", same)
        assert list(AiChatOnline.create_completion("", MESSAGES, stream=False)) == [REPLY]
    assert len(server.chat_requests) == 3


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
def test_grab_token_goes_where_a_chat_goes(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    async def grab(**kwargs: Any) -> str:
        session: aiohttp.ClientSession | httpx.AsyncClient
        session = aiohttp.ClientSession() if kind == "aiohttp" else httpx.AsyncClient()
        async with session:
            return await AiChatOnline.grab_token(session, **kwargs)

    with LocalServer() as assigned, LocalServer() as argument:
        monkeypatch.setattr(AiChatOnline, "url", assigned.base_url)
        assert asyncio.run(grab())
        assert assigned.tokens_issued == 1
        assert asyncio.run(grab(base_url=argument.base_url))
        assert argument.tokens_issued == 1
        assert assigned.tokens_issued == 1
    assert server.requests == []


# --------------------------------------------------------------------------- stream_timeout


@pytest.mark.anyio
async def test_stream_timeout_bounds_the_silence_between_reads(
    server: LocalServer, anyio_backend: str
) -> None:
    server.inject(Fault(stall=STALL, stall_after=1))
    pieces: list[str] = []

    async def read_all() -> None:
        async for piece in AiChatOnline.create_async_generator(
            "", MESSAGES, stream_timeout=0.2, max_retries=0
        ):
            pieces.append(piece)

    with pytest.raises(StreamInterrupted) as info:
        await read_all()
    assert isinstance(info.value.__cause__, APITimeoutError)
    assert info.value.partial == "".join(pieces) == pieces_for(PROMPT)[0]
    for bad in (0, -1.0, float("inf"), "1", True):
        with pytest.raises(InvalidRequestError, match="stream_timeout"):
            await AiChatOnline.create_async("", MESSAGES, stream_timeout=bad)
    assert len(server.chat_requests) == 1


@pytest.mark.anyio
async def test_leaving_the_generator_early_closes_the_stream(
    server: LocalServer, anyio_backend: str
) -> None:
    server.pieces, server.delay = 40, 0.05
    generator = AiChatOnline.create_async_generator("gpt-4o-mini", MESSAGES)
    async for _ in generator:
        break
    await generator.aclose()  # type: ignore[attr-defined]
    assert await anyio.to_thread.run_sync(server.wait_for, lambda s: s.disconnects == 1, 5.0)


def test_leaving_create_completion_early_closes_the_stream(server: LocalServer) -> None:
    server.pieces, server.delay = 40, 0.05
    completion = AiChatOnline.create_completion("gpt-4o-mini", MESSAGES)
    next(completion)
    completion.close()  # type: ignore[attr-defined]
    assert server.wait_for(lambda s: s.disconnects == 1, 5.0)


class _Counting(AsyncGeneratorProvider):
    """A provider of the base class's own making: counts up, notes when it is closed."""

    closed: ClassVar[list[bool]] = []

    @classmethod
    async def create_async_generator(  # type: ignore[override]
        cls, model: str, messages: Any, proxy: str | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        try:
            for number in range(int(kwargs.get("count", 3))):
                await anyio.lowlevel.checkpoint()
                yield str(number)
        finally:
            cls.closed.append(True)


def test_base_create_completion_drives_any_async_generator() -> None:
    _Counting.closed.clear()
    assert list(_Counting.create_completion("m", [], count=4)) == ["0", "1", "2", "3"]
    assert list(_Counting.create_completion("m", [], stream=False, count=3)) == ["012"]
    assert _Counting.closed == [True, True]


def test_base_create_completion_works_inside_a_running_loop() -> None:
    async def handler() -> list[str]:
        return list(_Counting.create_completion("m", [], count=2))

    assert asyncio.run(handler()) == ["0", "1"]


def test_base_create_completion_closes_the_generator_on_early_exit() -> None:
    _Counting.closed.clear()
    pieces = _Counting.create_completion("m", [], count=1000)
    assert next(pieces) == "0"
    pieces.close()
    assert _Counting.closed == [True]
