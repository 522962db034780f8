"""The original provider class, ``AiChatOnline``, kept working on the SDK's clients.

Code written for the original (``grab_token``, ``create_async_generator`` on
``AsyncGeneratorProvider`` and ``ProviderModelMixin``) runs unchanged; both
examples of its documentation work as written. Underneath, it is the same
transport as :class:`~aichatonline.Client`: the same requests, retries and
errors. Two things differ from the original, on purpose: the token is cached
(per base URL) instead of fetched before every chat, and failures raise the
SDK's typed errors instead of being skipped.

The class is also a drop-in g4f provider, without depending on g4f: it has
every attribute and method g4f (6.7 and 8.8) reads from a provider class on the
paths of ``g4f.client.Client`` / ``AsyncClient``, ``g4f.ChatCompletion.create``
/ ``create_async``, ``RetryProvider`` and ``IterListProvider`` (``needs_auth``,
``live``, ``get_dict``, ``get_parent``, ``create_function``,
``async_create_function``, ``use_stream_timeout``, ...). g4f looks these up on
the class, so the stand-in base classes below are enough.

Where a call goes: a ``base_url=`` argument, then a ``url`` that differs from
the real service's (a subclass, or ``AiChatOnline.url = ...``, as g4f users
point a provider elsewhere), then ``AICHATONLINE_BASE_URL``, then the real service.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from typing import Any, ClassVar, TypeAlias

import anyio
import anyio.from_thread

from ._async.client import AsyncClient
from ._async.tokens import async_fetch_token
from ._config import resolve_base_url
from ._core import (
    CHAT_PATH,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ERROR_BODY_LIMIT,
    MODEL_ALIASES,
    MODELS,
    SITE_URL,
    Request,
    RetryPolicy,
    TimeLimits,
    Timeout,
    TimeoutTypes,
    TokenFetch,
    build_headers,
)
from ._exceptions import APIConnectionError, InvalidRequestError
from ._messages import Messages
from ._sync.client import Client

__all__ = [
    "AiChatOnline",
    "AsyncGeneratorProvider",
    "AsyncResult",
    "CreateResult",
    "ProviderModelMixin",
]

#: What ``create_async_generator`` returns: an async iterator of text pieces.
AsyncResult: TypeAlias = AsyncIterator[str]

#: What ``create_completion`` returns: an iterator of text pieces.
CreateResult: TypeAlias = Iterator[str]

logger = logging.getLogger("aichatonline")

# Options of ``create_async_generator`` / ``create_completion`` that the SDK uses;
# other keyword arguments (temperature, ...) are accepted and ignored, as before.
_CLIENT_OPTIONS = ("base_url", "timeout", "max_retries", "retry_policy", "user_agent", "strict")
# What g4f passes on every call and that says nothing the service could take:
# ``stream`` (the async generator always streams) and the provider class itself.
_G4F_PLUMBING = ("stream", "provider")


class AsyncGeneratorProvider:
    """A provider whose answer is an async generator of text pieces.

    Subclasses implement :meth:`create_async_generator`; this class derives
    the blocking :meth:`create_completion` and the one-shot :meth:`create_async`,
    and carries what g4f reads from any provider class (``needs_auth``, ``live``,
    ``get_dict``, ``create_function``, ...).
    """

    url: ClassVar[str] = ""
    working: ClassVar[bool] = False
    #: g4f looks for an API key (``{PARENT}_API_KEY``) only when this is true.
    needs_auth: ClassVar[bool] = False
    supports_stream: ClassVar[bool] = True
    supports_message_history: ClassVar[bool] = True
    supports_system_message: ClassVar[bool] = True
    #: For g4f 8.8: ``stream_timeout=`` is the longest wait for the next piece, and
    #: ``timeout=`` keeps the meaning the SDK's clients give it (g4f must not apply it
    #: per piece).
    use_stream_timeout: ClassVar[bool] = True
    #: g4f's health counter: g4f adds 1 on a success and takes 1 on a failure; the SDK
    #: never reads it.
    live: ClassVar[int] = 0

    @classmethod
    def get_dict(cls) -> dict[str, str | None]:
        """The provider as g4f describes it: ``name``, ``url`` and ``label``."""
        return {"name": cls.__name__, "url": cls.url, "label": getattr(cls, "label", None)}

    @classmethod
    def get_parent(cls) -> str:
        """The provider family's name (``parent``, else the class name), as g4f keys it."""
        parent = getattr(cls, "parent", None)
        return parent if isinstance(parent, str) and parent else cls.__name__

    @classmethod
    def create_function(cls, *args: Any, **kwargs: Any) -> CreateResult:
        """g4f 6.7's blocking entry point: :meth:`create_completion`."""
        return cls.create_completion(*args, **kwargs)

    @classmethod
    async def async_create_function(cls, *args: Any, **kwargs: Any) -> AsyncGenerator[str, None]:
        """g4f 6.7's async entry point: the pieces of :meth:`create_async_generator`."""
        pieces = cls.create_async_generator(*args, **kwargs)
        try:
            async for piece in pieces:
                yield piece
        finally:
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                await aclose()

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
    def get_models(cls, api_key: str | None = None, **kwargs: Any) -> list[str]:
        """The models this provider serves (g4f's ``api_key=`` and options are ignored)."""
        return list(cls.models) if cls.models else [cls.default_model]

    @classmethod
    def get_model(cls, model: str, **kwargs: Any) -> str:
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

    Where it goes: a ``base_url=`` argument, then ``url`` when it differs from
    the real service's (a subclass or an assignment, the g4f way), then
    ``AICHATONLINE_BASE_URL`` (for example the local server of
    :mod:`aichatonline.testing`), then the real service. ``timeout=`` (as the
    clients take it), g4f's ``stream_timeout=`` (the longest silence between two
    reads), ``max_retries=``, ``retry_policy=``, ``user_agent=``, ``strict=`` and
    ``conversation_id=`` may also be passed as keyword arguments; others
    (``temperature``, ``api_key``, ...) are ignored.

    It is a g4f provider too (without depending on g4f): pass the class as
    ``provider=`` to ``g4f.client.Client`` / ``AsyncClient``,
    ``g4f.ChatCompletion.create`` / ``create_async``, or in a ``RetryProvider``
    / ``IterListProvider`` list. The SDK's typed errors reach the caller.
    """

    site_url: ClassVar[str] = SITE_URL
    url: ClassVar[str] = DEFAULT_BASE_URL
    api_endpoint: ClassVar[str] = CHAT_PATH
    working: ClassVar[bool] = True
    #: The unique id is fetched anonymously: no key, no login.
    needs_auth: ClassVar[bool] = False
    #: What g4f shows for the provider, and the family name its subclasses share.
    label: ClassVar[str] = "AiChatOnline"
    parent: ClassVar[str] = "AiChatOnline"
    default_model: ClassVar[str] = DEFAULT_MODEL
    models: ClassVar[list[str]] = list(MODELS)
    model_aliases: ClassVar[dict[str, str]] = dict(MODEL_ALIASES)

    # One unique id per base URL, shared by every call (the original fetched
    # one per chat). Tokens outlive event loops; clients do not, so each call
    # gets a fresh client and the cached token.
    _tokens: ClassVar[dict[str, str]] = {}
    _tokens_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def _client_base_url(cls, base_url: str | None) -> str | None:
        """The ``base_url`` to give a client: the argument, else ``url`` if it is not
        the real service's; ``None`` leaves ``AICHATONLINE_BASE_URL``, then the
        real service, to the client."""
        if base_url is not None:
            return base_url
        url = cls.url
        if url and url.strip().rstrip("/") != DEFAULT_BASE_URL:
            return url
        return None

    @classmethod
    async def grab_token(
        cls,
        session: Any,
        proxy: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the clients' setting
    ) -> str:
        """Fetch a fresh unique id with ``session``.

        ``session`` is an ``httpx.AsyncClient`` or, when aiohttp is installed,
        an ``aiohttp.ClientSession``. ``proxy`` applies per request with
        aiohttp; an httpx client takes its proxy when it is made, so passing
        one here with an httpx client is an error. The base URL is chosen as
        for a chat: ``base_url=``, then ``url``, then ``AICHATONLINE_BASE_URL``.
        The fetch is the clients' own (the same requests, retries and time
        limits: ``timeout`` as the clients take it).
        """
        if type(session).__module__.startswith("httpx"):
            if proxy is not None:
                raise InvalidRequestError(
                    "an httpx.AsyncClient takes its proxy when it is made: "
                    "httpx.AsyncClient(proxy=...); pass proxy=None here",
                    field="proxy",
                )
            # The SDK's own client around the caller's session: one transport.
            client = AsyncClient(
                base_url=cls._client_base_url(base_url),
                http_client=session,
                retry_policy=retry_policy,
                timeout=timeout,
            )
            return await client.get_token(refresh=True)
        fetcher = _AiohttpFetcher(session, proxy)
        url = resolve_base_url(cls._client_base_url(base_url))
        fetch = TokenFetch(
            url,
            build_headers(url),
            policy=retry_policy or RetryPolicy(),
            limits=TimeLimits(Timeout.of(timeout)),
        )
        return await async_fetch_token(fetcher, fetch)

    @classmethod
    async def create_async_generator(
        cls, model: str, messages: Messages, proxy: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[str, None]:
        """The answer to ``messages``, piece by piece, through :class:`AsyncClient`."""
        cls.get_model(model)
        options, conversation_id = _split_options(kwargs)
        options["base_url"] = cls._client_base_url(options.get("base_url"))
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
        options["base_url"] = cls._client_base_url(options.get("base_url"))
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
    stream_timeout = kwargs.pop("stream_timeout", None)
    if stream_timeout is not None:
        options["timeout"] = _with_read_limit(options.get("timeout", Timeout()), stream_timeout)
    for name in _G4F_PLUMBING:
        kwargs.pop(name, None)
    if kwargs:
        logger.debug("ignoring options the service does not take: %s", ", ".join(sorted(kwargs)))
    return options, conversation_id


def _with_read_limit(timeout: TimeoutTypes, seconds: object) -> Timeout:
    """``timeout`` with g4f's ``stream_timeout`` as its read limit (the longest
    silence between two reads)."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not seconds > 0
        or math.isinf(seconds)
    ):
        raise InvalidRequestError(
            f"stream_timeout must be a positive number of seconds, not {seconds!r}",
            field="stream_timeout",
        )
    return Timeout.of(timeout).copy_with(read=float(seconds))


class _AiohttpFetcher:
    """Token requests over the caller's aiohttp session (duck-typed: aiohttp is optional)."""

    def __init__(self, session: Any, proxy: str | None) -> None:
        if not type(session).__module__.startswith("aiohttp"):
            raise InvalidRequestError(
                "session must be an httpx.AsyncClient or an aiohttp.ClientSession, "
                f"not {type(session).__name__}",
                field="session",
            )
        self._session = session
        self._proxy = proxy

    async def fetch(
        self, request: Request, limits: TimeLimits, socket: object = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """GET ``request``: its status, headers and the start of its body."""
        import asyncio  # aiohttp runs on asyncio only

        import aiohttp  # only reached when the caller already has aiohttp

        bound = limits.bound()
        timeout = aiohttp.ClientTimeout(
            total=bound, connect=limits.cap("connect"), sock_read=limits.cap("read")
        )
        during = f"{request.method} {request.shown_url} (aiohttp)"
        try:
            # Never a redirect: the token and the prompt go to the configured origin only
            # (a 3xx comes back as it is, and becomes the clients' redirect error).
            async with self._session.get(
                request.url,
                headers=dict(request.headers),
                proxy=self._proxy,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                # read(n) returns what is buffered so far, not the body:
                # gather chunks to the end (or the limit) instead.
                body = b""
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) >= ERROR_BODY_LIMIT:
                        break
                headers = {k.lower(): v for k, v in response.headers.items()}
                return response.status, headers, body
        except (TimeoutError, asyncio.TimeoutError):  # distinct before Python 3.11
            raise limits.timeout_error(during) from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"{during}: {type(exc).__name__}") from exc
