"""The async client, for asyncio and trio: ``AsyncClient``.

The blocking ``Client`` (``_sync/client.py``) is generated from this file by
``scripts/unasync.py``, so the two cannot drift. Settings and their checks live in
``_base_client.py``; one call's rules in ``_core/call.py``; the loop that carries a call out
in ``stream.py``.
"""

from __future__ import annotations

import functools
import ssl
import threading
import weakref
from typing import TYPE_CHECKING, Any, Literal, overload

from .._base_client import NOT_GIVEN, BaseClient, NotGiven
from .._core import DEFAULT_MAX_LINE_BYTES, DEFAULT_TIMEOUT, RetryPolicy, TimeLimits, TimeoutTypes
from .._exceptions import APIError, InvalidRequestError
from .._http_clients import DefaultAsyncHttpxClient
from .._log_secrets import watch
from .._messages import Messages
from .._stream_waits import AsyncSocket, AsyncWaits, Expired
from ..types import Completion
from .chat_completions import AsyncChat
from .closing import AsyncClosing
from .conversation import AsyncConversation
from .facade import CallOptions
from .stream import AsyncStream
from .tokens import AsyncTokens
from .transport import AsyncTransport

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["AsyncClient"]


class AsyncClient(BaseClient, AsyncClosing):
    """A client of the AiChatOnline service for asyncio and trio.

    Example::

        async with AsyncClient() as client:
            async with client.stream("Hello") as stream:
                async for piece in stream:
                    print(piece, end="", flush=True)
            text = await client.complete([{"role": "user", "content": "Hello"}])

    Every argument is keyword-only. ``base_url`` falls back to ``AICHATONLINE_BASE_URL``,
    then the real service. ``proxy`` takes http, https and socks5 URLs (socks needs the
    ``socks`` extra) and falls back to ``AICHATONLINE_PROXY``, then the standard proxy
    variables. ``timeout`` is what it is in httpx: a number sets the per-operation limits
    (connect, read = the longest silence between two reads, write, pool); a
    :class:`~aichatonline.Timeout` can add a bound on the whole call (``total``) and on
    the wait for the first piece (``first_piece``); ``None`` turns every limit off.
    ``max_retries`` counts retries after the first attempt (or pass a whole
    ``retry_policy``, not both). ``http_client`` is the ``httpx.AsyncClient`` that carries
    the requests: by default the SDK makes a :class:`~aichatonline.DefaultAsyncHttpxClient`
    (and closes it with this client); pass your own (one of those, a
    :class:`~aichatonline.DefaultAioHttpClient`, any ``httpx.AsyncClient``) to add hooks,
    mounts, auth or another transport: the SDK never closes it. ``strict`` makes an
    unreadable stream line an error instead of a skipped, counted anomaly.
    ``trust_env=False`` ignores the proxy environment variables. ``verify`` is as in httpx:
    ``True`` (certifi's CA bundle), a CA bundle's path, an ``ssl.SSLContext``, or ``False``
    (no certificate check: for tests only). ``proxy``, ``verify`` and ``trust_env`` configure
    the SDK's own httpx client; with ``http_client=``, configure yours instead.
    """

    _http_client_class = "AsyncClient"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        proxy: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry_policy: RetryPolicy | None = None,
        http_client: Any = None,
        user_agent: str | None = None,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        trust_env: bool = True,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        super().__init__(
            base_url=base_url,
            proxy=proxy,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
            user_agent=user_agent,
            strict=strict,
            max_line_bytes=max_line_bytes,
            http_client=http_client,
            trust_env=trust_env,
            verify=verify,
        )
        if http_client is not None:
            self._transport = AsyncTransport(http_client, secrets=self._secrets)
        else:
            self._transport = AsyncTransport(
                make=self._default_http_client,
                proxy_shown=self._proxy.shown if self._proxy is not None else None,
                secrets=self._secrets,
            )
        self._tokens = AsyncTokens(self._transport, self.base_url, self._headers)
        self._tokens_cache = self._tokens.cache
        watch(self)
        self._streams: weakref.WeakSet[AsyncStream] = weakref.WeakSet()
        # Streams start in any thread while close() may run in another: a WeakSet is not
        # safe to copy while it grows (held only around the add and the copy).
        self._streams_lock = threading.Lock()

    def _default_http_client(self) -> DefaultAsyncHttpxClient:
        """The SDK's own httpx client (``proxy``, ``verify`` and ``trust_env`` as given)."""
        return DefaultAsyncHttpxClient(**self._http_options)

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry_policy: RetryPolicy | NotGiven = NOT_GIVEN,
        strict: bool | NotGiven = NOT_GIVEN,
    ) -> Self:
        """A client with other settings that shares this one's connections and token.

        The two share one pool: closing either closes both (close the one you made last,
        or only the original).
        """
        return self._with_options(
            timeout=timeout, max_retries=max_retries, retry_policy=retry_policy, strict=strict
        )

    def stream(
        self,
        messages: Messages | str,
        *,
        conversation_id: str | None = None,
        keep_text: bool = True,
        **options: Unpack[CallOptions],
    ) -> AsyncStream:
        """Stream the answer to ``messages`` (a string is one user message).

        The input is checked now; the request goes out when iteration starts. A dropped
        stream is resumed exactly where it broke. ``timeout``, ``max_retries`` and
        ``extra_headers`` apply to this call only.

        ``keep_text=False`` keeps only the length and a hash of the text delivered, so the
        stream holds the same few bytes however long the answer (a proxy or a gateway that
        forwards the pieces does not need them twice): resume stays exact, but ``text`` is
        unavailable and a ``StreamInterrupted`` carries ``delivered`` with ``partial=""``.
        """
        return self._stream(
            messages, resume=True, conversation_id=conversation_id, keep_text=keep_text, **options
        )

    @overload
    async def complete(
        self,
        messages: Messages | str,
        *,
        conversation_id: str | None = None,
        full: Literal[False] = False,
        **options: Unpack[CallOptions],
    ) -> str: ...

    @overload
    async def complete(
        self,
        messages: Messages | str,
        *,
        full: Literal[True],
        conversation_id: str | None = None,
        **options: Unpack[CallOptions],
    ) -> Completion: ...

    async def complete(
        self,
        messages: Messages | str,
        *,
        conversation_id: str | None = None,
        full: bool = False,
        **options: Unpack[CallOptions],
    ) -> str | Completion:
        """The whole answer to ``messages`` as one string (a dropped stream starts over).

        With ``full=True``, a :class:`~aichatonline.Completion` instead: the text, the
        ``conversation_id``, the finish reason, how many retries it took and the response
        headers of the last attempt. To continue the conversation under the same id later,
        pass ``conversation_id`` again (or use :meth:`conversation`).
        """
        stream = self._stream(messages, resume=False, conversation_id=conversation_id, **options)
        async with stream:
            async for _ in stream:
                pass
        if not full:
            return stream.text
        return Completion(
            text=stream.text,
            conversation_id=stream.conversation_id,
            retries=stream.retries,
            anomalies=stream.anomalies,
            headers=dict(stream.headers or {}),
        )

    @functools.cached_property
    def chat(self) -> AsyncChat:
        """OpenAI's shape: ``await client.chat.completions.create(model=..., messages=...)``."""
        return AsyncChat(self)

    def conversation(self, system: str | None = None) -> AsyncConversation:
        """A conversation that keeps its history and ``conversationId`` between turns."""
        return AsyncConversation(self, system)

    @property
    def http_client(self) -> Any:
        """The ``httpx.AsyncClient`` that carries the requests (the SDK's own, or yours)."""
        return self._transport.http_client

    async def get_token(self, *, refresh: bool = False) -> str:
        """The cached unique id, fetched first if there is none (or ``refresh`` is true)."""
        self._check_open()
        if refresh:
            self._tokens_cache.token = None
        limits = TimeLimits(self.timeout)
        waits = AsyncWaits()
        try:
            with waits.running():
                socket = AsyncSocket()
                waits.bound(limits.bound(), socket)
                try:
                    return await self._tokens.token_for(self.retry_policy, limits, socket)
                except APIError:
                    waits.check()  # a wait ended at the bound says so
                    raise
        except Expired:
            pass
        # Raised out of the except block: the error that ended the wait is not its context.
        raise limits.timeout_error("fetching the token", limits.bound_name())

    async def aclose(self) -> None:
        """Close the connections; a stream still running ends with ``StreamInterrupted``.

        An httpx client you passed in stays open: it is yours to close.
        """
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            stream.client_closed()
        self._tokens.wakeup.wake()
        await self._transport.aclose()

    @property
    def is_closed(self) -> bool:
        """Whether the client was closed."""
        return self._transport.closed

    def _check_open(self) -> None:
        if self._transport.closed:
            raise InvalidRequestError("the client is closed")

    def _stream(
        self,
        messages: Messages | str,
        *,
        resume: bool,
        conversation_id: str | None,
        keep_text: bool = True,
        **options: Unpack[CallOptions],
    ) -> AsyncStream:
        call = self._call(
            messages,
            resume=resume,
            conversation_id=conversation_id,
            timeout=options.get("timeout", NOT_GIVEN),
            max_retries=options.get("max_retries", NOT_GIVEN),
            extra_headers=options.get("extra_headers"),
            keep_text=keep_text,
        )
        self._check_open()
        stream = AsyncStream(call, self._transport, self._tokens)
        with self._streams_lock:
            self._streams.add(stream)
        return stream
