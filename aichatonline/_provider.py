"""The original provider class, ``AiChatOnline``, kept working on the SDK's clients.

Code written for the original (``grab_token``, ``create_async_generator`` on
``AsyncGeneratorProvider`` and ``ProviderModelMixin``) runs unchanged; both
examples of its documentation work as written. Underneath, it is the same
transport as :class:`~aichatonline.Client`: the same requests, retries and
errors. Two things differ from the original, on purpose: the token is cached
(per base URL) instead of fetched before every chat, and failures raise the
SDK's typed errors instead of being skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from typing import Any, ClassVar

import anyio
import anyio.from_thread
import httpx

from ._client import AsyncClient, Client
from ._config import resolve_base_url
from ._core import (
    CHAT_PATH,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    ERROR_BODY_LIMIT,
    SITE_URL,
    Deadline,
    Outcome,
    RetryPolicy,
    build_headers,
    classify,
    parse_token,
    status_error,
    token_request,
)
from ._exceptions import APIConnectionError, APIError, APITimeoutError, InvalidRequestError
from ._retry import AsyncAttempts
from ._types import AsyncResult, CreateResult, Messages

__all__ = ["AiChatOnline", "AsyncGeneratorProvider", "ProviderModelMixin"]

logger = logging.getLogger("aichatonline")

# Options of ``create_async_generator`` / ``create_completion`` that the SDK uses;
# other keyword arguments (temperature, ...) are accepted and ignored, as before.
_CLIENT_OPTIONS = ("base_url", "timeout", "max_retries", "retry_policy", "user_agent", "strict")


class AsyncGeneratorProvider:
    """A provider whose answer is an async generator of text pieces.

    Subclasses implement :meth:`create_async_generator`; this class derives
    the blocking :meth:`create_completion` and the one-shot :meth:`create_async`.
    """

    url: ClassVar[str] = ""
    working: ClassVar[bool] = False
    supports_stream: ClassVar[bool] = True
    supports_message_history: ClassVar[bool] = True
    supports_system_message: ClassVar[bool] = True

    @classmethod
    def create_async_generator(
        cls, model: str, messages: Messages, proxy: str | None = None, **kwargs: Any
    ) -> AsyncResult:
        """The answer to ``messages``, piece by piece."""
        raise NotImplementedError

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> CreateResult:
        """The answer, blocking, as an iterator of pieces (one piece if ``stream`` is false).

        The async generator runs on an event loop in a worker thread, so this
        works in plain scripts and inside a running event loop alike.
        """
        with anyio.from_thread.start_blocking_portal() as portal:
            pieces = cls.create_async_generator(model, messages, **kwargs)
            try:
                if not stream:
                    yield portal.call(_join, pieces)
                    return
                while True:
                    try:
                        yield portal.call(pieces.__anext__)
                    except StopAsyncIteration:
                        return
            finally:
                aclose = getattr(pieces, "aclose", None)
                if aclose is not None:
                    portal.call(aclose)

    @classmethod
    async def create_async(cls, model: str, messages: Messages, **kwargs: Any) -> str:
        """The whole answer as one string."""
        return await _join(cls.create_async_generator(model, messages, **kwargs))


async def _join(pieces: AsyncResult) -> str:
    return "".join([piece async for piece in pieces])


class ProviderModelMixin:
    """Model names for a provider: the default, the list, and aliases."""

    default_model: ClassVar[str] = ""
    models: ClassVar[list[str]] = []
    model_aliases: ClassVar[dict[str, str]] = {}

    @classmethod
    def get_models(cls) -> list[str]:
        """The models this provider serves."""
        return list(cls.models) if cls.models else [cls.default_model]

    @classmethod
    def get_model(cls, model: str) -> str:
        """The provider's name for ``model``: empty means the default; aliases resolve."""
        if not model:
            return cls.default_model
        if model in cls.get_models():
            return model
        if model in cls.model_aliases:
            return cls.model_aliases[model]
        raise InvalidRequestError(
            f"model {model!r} is not supported; choose one of {', '.join(cls.get_models())}",
            field="model",
        )


class AiChatOnline(AsyncGeneratorProvider, ProviderModelMixin):
    """The AiChatOnline provider, as in the original, on the SDK's transport.

    ``AICHATONLINE_BASE_URL`` redirects it (for example to the local server of
    :mod:`aichatonline.testing`); ``base_url=``, ``timeout=``, ``max_retries=``,
    ``retry_policy=``, ``user_agent=`` and ``strict=`` may also be passed as
    keyword arguments.
    """

    site_url: ClassVar[str] = SITE_URL
    url: ClassVar[str] = DEFAULT_BASE_URL
    api_endpoint: ClassVar[str] = CHAT_PATH
    working: ClassVar[bool] = True
    default_model: ClassVar[str] = DEFAULT_MODEL
    models: ClassVar[list[str]] = [DEFAULT_MODEL]
    model_aliases: ClassVar[dict[str, str]] = {"gpt-4o-mini-2024-07-18": DEFAULT_MODEL}

    # One unique id per base URL, shared by every call (the original fetched
    # one per chat). Tokens outlive event loops; clients do not, so each call
    # gets a fresh client and the cached token.
    _tokens: ClassVar[dict[str, str]] = {}
    _tokens_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    async def grab_token(
        cls, session: Any, proxy: str | None = None, *, retry_policy: RetryPolicy | None = None
    ) -> str:
        """Fetch a fresh unique id with ``session``.

        ``session`` is an ``httpx.AsyncClient`` or, when aiohttp is installed,
        an ``aiohttp.ClientSession``. ``proxy`` applies per request with
        aiohttp; an httpx client takes its proxy when it is made, so passing
        one here with an httpx client is an error.
        """
        if isinstance(session, httpx.AsyncClient):
            if proxy is not None:
                raise InvalidRequestError(
                    "an httpx.AsyncClient takes its proxy when it is made: "
                    "httpx.AsyncClient(proxy=...); pass proxy=None here",
                    field="proxy",
                )
            # The SDK's own client around the caller's session: one transport.
            client = AsyncClient(http_client=session, retry_policy=retry_policy)
            return await client.get_token(refresh=True)
        fetch = _aiohttp_fetcher(session, proxy)
        base_url = resolve_base_url(None)
        attempts = AsyncAttempts(retry_policy or RetryPolicy(), Deadline(None), "the token fetch")
        while True:
            request = token_request(base_url, build_headers(base_url))
            try:
                status, headers, body = await fetch(request.url, dict(request.headers))
                if classify(status, headers, body) is not Outcome.OK:
                    raise status_error(status, headers, body)
                return parse_token(body)
            except APIError as exc:
                if not await attempts.wait(exc):
                    raise

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Messages, proxy: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[str, None]:
        """The answer to ``messages``, piece by piece, through :class:`AsyncClient`."""
        cls.get_model(model)
        options, conversation_id = _split_options(kwargs)
        async with AsyncClient(proxy=proxy, **options) as client:
            cached = cls._cached_token(client.base_url)
            if cached is not None:
                client.token = cached
            stream = client.stream(messages, conversation_id=conversation_id)
            try:
                async for piece in stream:
                    yield piece
            finally:
                await stream.aclose()
                cls._remember_token(client.base_url, client.token)

    @classmethod
    def create_completion(
        cls, model: str, messages: Messages, stream: bool = True, **kwargs: Any
    ) -> Generator[str, None, None]:
        """The answer, blocking, through :class:`Client`: no event loop involved,
        so it works in scripts, threads and inside a running loop alike."""
        cls.get_model(model)
        proxy = kwargs.pop("proxy", None)
        options, conversation_id = _split_options(kwargs)
        with Client(proxy=proxy, **options) as client:
            cached = cls._cached_token(client.base_url)
            if cached is not None:
                client.token = cached
            try:
                if stream:
                    with client.stream(messages, conversation_id=conversation_id) as pieces:
                        yield from pieces
                else:
                    yield client.complete(messages, conversation_id=conversation_id)
            finally:
                cls._remember_token(client.base_url, client.token)

    @classmethod
    def _cached_token(cls, base_url: str) -> str | None:
        with cls._tokens_lock:
            return cls._tokens.get(base_url)

    @classmethod
    def _remember_token(cls, base_url: str, token: str | None) -> None:
        with cls._tokens_lock:
            if token is None:
                cls._tokens.pop(base_url, None)
            else:
                cls._tokens[base_url] = token


def _split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    options = {name: kwargs.pop(name) for name in _CLIENT_OPTIONS if name in kwargs}
    conversation_id = kwargs.pop("conversation_id", None)
    if kwargs:
        logger.debug("ignoring options the service does not take: %s", ", ".join(sorted(kwargs)))
    return options, conversation_id


# GET a URL with headers; give back status, headers and the start of the body.
_Reply = tuple[int, Mapping[str, str], bytes]
_Fetch = Callable[[str, dict[str, str]], Awaitable[_Reply]]


def _aiohttp_fetcher(session: Any, proxy: str | None) -> _Fetch:
    """A GET function over the caller's aiohttp session (duck-typed: aiohttp is optional)."""
    if type(session).__module__.startswith("aiohttp"):
        import asyncio  # aiohttp runs on asyncio only

        import aiohttp  # only reached when the caller already has aiohttp

        async def get_aiohttp(url: str, headers: dict[str, str]) -> _Reply:
            try:
                async with session.get(url, headers=headers, proxy=proxy) as response:
                    # read(n) returns what is buffered so far, not the body:
                    # gather chunks to the end (or the limit) instead.
                    body = b""
                    async for chunk in response.content.iter_any():
                        body += chunk
                        if len(body) >= ERROR_BODY_LIMIT:
                            break
                    return response.status, response.headers, body
            except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct before Python 3.11
                raise APITimeoutError("the token fetch timed out") from exc
            except aiohttp.ClientError as exc:
                raise APIConnectionError(f"the token fetch failed: {type(exc).__name__}") from exc

        return get_aiohttp

    raise InvalidRequestError(
        "session must be an httpx.AsyncClient or an aiohttp.ClientSession, "
        f"not {type(session).__name__}",
        field="session",
    )
