"""The clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio and trio).

Both stand on :class:`_BaseClient`, which holds everything that does no I/O:
configuration, the cached token, and turning messages into a core ``Chat``.
The two subclasses are written as mirror images; they differ only where I/O
happens (``with`` / ``async with``, ``time.sleep`` / ``anyio.sleep``, a
``threading.Lock`` / an ``anyio.Lock``).

How one streamed chat runs (``_run``)::

    token   = cached, or fetched once for all concurrent callers (retried)
    attempt = open the chat request --> for each body chunk:
                  decoder.feed(chunk) -> pieces -> transcript.deliver -> caller
    on 401/403: drop the token, fetch a new one, send again (once)
    on a failure the policy retries: wait, send the same request again; the
              transcript skips the text the caller already has
    otherwise: raise (StreamInterrupted with the text so far, if any)
"""

from __future__ import annotations

import copy
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import aclosing, closing
from types import TracebackType
from typing import TypeVar

import anyio
import httpx

from ._config import redact, resolve_base_url, resolve_proxy
from ._core import (
    DEFAULT_MAX_LINE_BYTES,
    Chat,
    Deadline,
    RetryPolicy,
    StreamDecoder,
    Timeout,
    TimeoutTypes,
    Transcript,
    build_headers,
    format_prompt,
    is_header_text,
    is_header_token,
    parse_token,
    token_request,
)
from ._exceptions import APIError, APITimeoutError, AuthenticationError, InvalidRequestError
from ._pool import async_sharded_pool, sharded_pool
from ._retry import AsyncAttempts, Attempts
from ._transport import AsyncTransport, SyncTransport
from ._types import Messages

__all__ = ["DEFAULT_TIMEOUT", "AsyncClient", "AsyncStream", "Client", "Stream"]

#: Ten minutes for a whole call; 10 s to connect; 60 s of silence between reads.
DEFAULT_TIMEOUT = Timeout()

_SelfClient = TypeVar("_SelfClient", bound="Client")
_SelfAsyncClient = TypeVar("_SelfAsyncClient", bound="AsyncClient")
_SelfStream = TypeVar("_SelfStream", bound="Stream")
_SelfAsyncStream = TypeVar("_SelfAsyncStream", bound="AsyncStream")


class _BaseClient:
    """Configuration and state shared by both clients; no I/O."""

    def __init__(
        self,
        *,
        base_url: str | None,
        proxy: str | None,
        timeout: TimeoutTypes,
        max_retries: int,
        retry_policy: RetryPolicy | None,
        user_agent: str | None,
        strict: bool,
        max_line_bytes: int,
        http_client: object,
        http_client_type: type,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        http_client_given = http_client is not None
        if http_client_given and not isinstance(http_client, http_client_type):
            raise InvalidRequestError(
                f"http_client must be an {http_client_type.__module__}.{http_client_type.__name__}"
                f", not {type(http_client).__name__}",
                field="http_client",
            )
        if proxy is not None and http_client_given:
            raise InvalidRequestError(
                "pass either proxy= or http_client=, not both: "
                "configure the proxy on your own httpx client",
                field="proxy",
            )
        self.proxy = None if http_client_given else resolve_proxy(proxy, self.base_url)
        self.timeout = Timeout.of(timeout)
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self.strict = strict
        if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int):
            raise InvalidRequestError("max_line_bytes must be an int", field="max_line_bytes")
        if max_line_bytes < 1:
            raise InvalidRequestError("max_line_bytes must be positive", field="max_line_bytes")
        self.max_line_bytes = max_line_bytes
        if user_agent is not None and not (
            isinstance(user_agent, str) and is_header_text(user_agent)
        ):
            raise InvalidRequestError(
                "user_agent must be a string of printable ASCII characters", field="user_agent"
            )
        self._headers = build_headers(self.base_url, user_agent)
        self._token: str | None = None
        # Single flight: how many fetches have finished, and how the last one failed,
        # so that callers who waited for a failed fetch share its error.
        self._fetches = 0
        self._fetch_error: APIError | None = None

    @property
    def token(self) -> str | None:
        """The cached unique id (``None`` until the first call fetches one).

        Setting it starts the client with a unique id kept from earlier, which
        saves the first fetch; a rejected one is replaced automatically.
        """
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        if value is not None and not (isinstance(value, str) and is_header_token(value)):
            raise InvalidRequestError(
                "token must be None or a non-empty string of visible ASCII characters",
                field="token",
            )
        self._token = value

    @property
    def max_retries(self) -> int:
        """How many times a failed attempt is retried."""
        return self.retry_policy.max_retries

    def _chat(self, messages: Messages | str, conversation_id: str | None) -> Chat:
        """Validate the input (before any I/O) and fix what every attempt will send."""
        prompt = format_prompt(messages)
        if conversation_id is None:
            return Chat(self.base_url, self._headers, prompt)
        if not isinstance(conversation_id, str) or not conversation_id:
            raise InvalidRequestError(
                "conversation_id must be a non-empty string", field="conversation_id"
            )
        return Chat(self.base_url, self._headers, prompt, conversation_id)

    def _decoder(self, token: str) -> StreamDecoder:
        return StreamDecoder(
            strict=self.strict, max_line_bytes=self.max_line_bytes, secrets=(token,)
        )

    def _forget_token(self, token: str) -> None:
        # Only the token that was rejected: a concurrent call may have replaced it already.
        if self._token == token:
            self._token = None

    def _lock_timeout(self, deadline: Deadline) -> APITimeoutError:
        return APITimeoutError(
            f"waiting for the token: the call ran past its total timeout of {deadline.total:g}s"
        )

    def _shared_fetch_error(self, fetches_seen: int) -> APIError | None:
        """The error of the fetch a caller waited for, if one finished and failed meanwhile."""
        failed = self._fetch_error
        if self._fetches == fetches_seen or failed is None:
            return None
        error = copy.copy(failed)  # each caller raises its own object, cause kept
        error.__cause__ = failed.__cause__
        return error

    def _fetched(self, token: str | None, error: APIError | None) -> None:
        self._fetches += 1
        self._token, self._fetch_error = token, error

    def __repr__(self) -> str:
        proxy = f", proxy={redact(self.proxy)!r}" if self.proxy else ""
        return f"<{type(self).__name__} base_url={self.base_url!r}{proxy}>"


class Client(_BaseClient):
    """The blocking client, for scripts and threads (it never needs an event loop).

    Example::

        with Client() as client:
            for piece in client.stream("Hello"):
                print(piece, end="", flush=True)
            text = client.complete([{"role": "user", "content": "Hello"}])

    ``base_url`` falls back to ``AICHATONLINE_BASE_URL``, then the real
    service. ``proxy`` takes http, https and socks5 URLs (socks needs the
    ``socks`` extra) and falls back to ``AICHATONLINE_PROXY``; httpx's standard
    proxy variables apply otherwise. ``timeout`` is a number (the bound on a
    whole call), a :class:`Timeout`, an ``httpx.Timeout`` or ``None``.
    ``max_retries`` counts retries after the first attempt (or pass a whole
    ``retry_policy``). ``http_client`` lets you bring your own ``httpx.Client``
    (the SDK then leaves closing it to you). ``strict`` makes an unreadable
    stream line an error instead of a skipped, counted anomaly.
    """

    def __init__(
        self,
        base_url: str | None = None,
        proxy: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        *,
        http_client: httpx.Client | None = None,
        retry_policy: RetryPolicy | None = None,
        user_agent: str | None = None,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
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
            http_client_type=httpx.Client,
        )
        if http_client is None:
            self._transport = SyncTransport.over_pool(sharded_pool(self.proxy), self.timeout)
        else:
            self._transport = SyncTransport(http_client, self.timeout)
        self._token_lock = threading.Lock()

    def stream(self, messages: Messages | str, *, conversation_id: str | None = None) -> Stream:
        """Stream the answer to ``messages`` (a string is one user message).

        The input is checked now; the request goes out when iteration starts.
        """
        chat = self._chat(messages, conversation_id)
        transcript = Transcript(resume=True)
        return Stream(self._run(chat, transcript), transcript, chat.conversation_id)

    def complete(self, messages: Messages | str, *, conversation_id: str | None = None) -> str:
        """The whole answer to ``messages`` as one string (a dropped stream starts over).

        To continue the conversation under the same id later, pass your own
        ``conversation_id`` (``stream()`` exposes the one it made up).
        """
        chat = self._chat(messages, conversation_id)
        transcript = Transcript(resume=False)
        with closing(self._run(chat, transcript)) as pieces:
            for _ in pieces:
                pass
        return transcript.text

    def get_token(self, *, refresh: bool = False) -> str:
        """The cached unique id, fetched first if there is none (or ``refresh`` is true)."""
        deadline = Deadline(self.timeout.total)
        if refresh:
            self._token = None
        return self._token_for(deadline)

    def close(self) -> None:
        """Close the connections (unless the httpx client was yours)."""
        self._transport.close()

    def __enter__(self: _SelfClient) -> _SelfClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, chat: Chat, transcript: Transcript) -> Generator[str, None, None]:
        deadline = Deadline(self.timeout.total)
        attempts = Attempts(self.retry_policy, deadline, "the chat request")
        refreshed = False
        while True:
            token = None
            sent = len(transcript.text)
            try:
                token = self._token_for(deadline)
                with self._transport.open(chat.request(token), deadline) as response:
                    decoder = self._decoder(token)
                    transcript.begin_attempt()
                    with closing(self._transport.iter_bytes(response, deadline)) as chunks:
                        for chunk in chunks:
                            yield from transcript.deliver(decoder.feed(chunk))
                    yield from transcript.deliver(decoder.finish())
                    transcript.end_attempt()
                return
            except AuthenticationError as exc:
                if refreshed or token is None:
                    error = transcript.failure(exc)
                    raise error from error.__cause__
                refreshed = True
                self._forget_token(token)
            except APIError as exc:
                error = transcript.failure(exc)
                if len(transcript.text) > sent:  # progress: a fresh budget of retries
                    attempts = Attempts(self.retry_policy, deadline, "the chat request")
                # A failed token fetch was retried on its own already.
                if token is None or not attempts.wait(exc):
                    raise error from error.__cause__

    def _token_for(self, deadline: Deadline) -> str:
        token = self._token
        if token is not None:
            return token
        fetches_seen = self._fetches
        left = deadline.remaining()
        wait = -1 if left is None else min(max(left, 0.0), threading.TIMEOUT_MAX)
        if not self._token_lock.acquire(timeout=wait):
            raise self._lock_timeout(deadline)
        try:  # one fetch serves every thread that waited on the lock
            if self._token is not None:
                return self._token
            shared = self._shared_fetch_error(fetches_seen)
            if shared is not None:
                raise shared
            try:
                token = self._fetch_token(deadline)
            except APIError as exc:
                self._fetched(None, exc)
                raise
            self._fetched(token, None)
            return token
        finally:
            self._token_lock.release()

    def _fetch_token(self, deadline: Deadline) -> str:
        attempts = Attempts(self.retry_policy, deadline, "the token fetch")
        while True:
            try:
                request = token_request(self.base_url, self._headers)
                return parse_token(self._transport.fetch(request, deadline))
            except APIError as exc:
                if not attempts.wait(exc):
                    raise


class AsyncClient(_BaseClient):
    """The async client, for asyncio and trio (through anyio).

    Example::

        async with AsyncClient() as client:
            async for piece in client.stream("Hello"):
                print(piece, end="", flush=True)
            text = await client.complete([{"role": "user", "content": "Hello"}])

    The arguments are those of :class:`Client`; ``http_client`` is an
    ``httpx.AsyncClient``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        proxy: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        *,
        http_client: httpx.AsyncClient | None = None,
        retry_policy: RetryPolicy | None = None,
        user_agent: str | None = None,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
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
            http_client_type=httpx.AsyncClient,
        )
        if http_client is None:
            self._transport = AsyncTransport.over_pool(async_sharded_pool(self.proxy), self.timeout)
        else:
            self._transport = AsyncTransport(http_client, self.timeout)
        self._token_lock = anyio.Lock()

    def stream(
        self, messages: Messages | str, *, conversation_id: str | None = None
    ) -> AsyncStream:
        """Stream the answer to ``messages`` (a string is one user message).

        The input is checked now; the request goes out when iteration starts.
        """
        chat = self._chat(messages, conversation_id)
        transcript = Transcript(resume=True)
        return AsyncStream(self._run(chat, transcript), transcript, chat.conversation_id)

    async def complete(
        self, messages: Messages | str, *, conversation_id: str | None = None
    ) -> str:
        """The whole answer to ``messages`` as one string (a dropped stream starts over).

        To continue the conversation under the same id later, pass your own
        ``conversation_id`` (``stream()`` exposes the one it made up).
        """
        chat = self._chat(messages, conversation_id)
        transcript = Transcript(resume=False)
        async with aclosing(self._run(chat, transcript)) as pieces:
            async for _ in pieces:
                pass
        return transcript.text

    async def get_token(self, *, refresh: bool = False) -> str:
        """The cached unique id, fetched first if there is none (or ``refresh`` is true)."""
        deadline = Deadline(self.timeout.total)
        if refresh:
            self._token = None
        return await self._token_for(deadline)

    async def aclose(self) -> None:
        """Close the connections (unless the httpx client was yours)."""
        await self._transport.aclose()

    async def __aenter__(self: _SelfAsyncClient) -> _SelfAsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, chat: Chat, transcript: Transcript) -> AsyncGenerator[str, None]:
        deadline = Deadline(self.timeout.total)
        attempts = AsyncAttempts(self.retry_policy, deadline, "the chat request")
        refreshed = False
        while True:
            token = None
            sent = len(transcript.text)
            try:
                token = await self._token_for(deadline)
                async with self._transport.open(chat.request(token), deadline) as response:
                    decoder = self._decoder(token)
                    transcript.begin_attempt()
                    async with aclosing(self._transport.iter_bytes(response, deadline)) as chunks:
                        async for chunk in chunks:
                            for piece in transcript.deliver(decoder.feed(chunk)):
                                yield piece
                    for piece in transcript.deliver(decoder.finish()):
                        yield piece
                    transcript.end_attempt()
                return
            except AuthenticationError as exc:
                if refreshed or token is None:
                    error = transcript.failure(exc)
                    raise error from error.__cause__
                refreshed = True
                self._forget_token(token)
            except APIError as exc:
                error = transcript.failure(exc)
                if len(transcript.text) > sent:  # progress: a fresh budget of retries
                    attempts = AsyncAttempts(self.retry_policy, deadline, "the chat request")
                # A failed token fetch was retried on its own already.
                if token is None or not await attempts.wait(exc):
                    raise error from error.__cause__

    async def _token_for(self, deadline: Deadline) -> str:
        token = self._token
        if token is not None:
            return token
        fetches_seen = self._fetches
        try:
            with anyio.fail_after(deadline.remaining()):
                await self._token_lock.acquire()
        except TimeoutError:
            raise self._lock_timeout(deadline) from None
        try:  # one fetch serves every task that waited on the lock
            if self._token is not None:
                return self._token
            shared = self._shared_fetch_error(fetches_seen)
            if shared is not None:
                raise shared
            try:
                token = await self._fetch_token(deadline)
            except APIError as exc:
                self._fetched(None, exc)
                raise
            self._fetched(token, None)
            return token
        finally:
            self._token_lock.release()

    async def _fetch_token(self, deadline: Deadline) -> str:
        attempts = AsyncAttempts(self.retry_policy, deadline, "the token fetch")
        while True:
            try:
                request = token_request(self.base_url, self._headers)
                return parse_token(await self._transport.fetch(request, deadline))
            except APIError as exc:
                if not await attempts.wait(exc):
                    raise


class Stream:
    """A streamed answer: iterate it for text pieces.

    Leaving early (``break``, an exception, ``close()``, the end of a
    ``with`` block, or garbage collection) closes the HTTP response and gives
    the connection back to the pool. ``text`` is the text delivered so far;
    another thread may read it, but only the iterating thread may ``close()``.
    """

    def __init__(
        self, pieces: Generator[str, None, None], transcript: Transcript, conversation_id: str
    ) -> None:
        self._pieces = pieces
        self._transcript = transcript
        #: The ``conversationId`` sent with every attempt of this stream.
        self.conversation_id = conversation_id

    @property
    def text(self) -> str:
        """All text delivered so far."""
        return self._transcript.text

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop the stream and release its connection."""
        self._pieces.close()

    def __enter__(self: _SelfStream) -> _SelfStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Stream conversation_id={self.conversation_id!r} chars={len(self.text)}>"


class AsyncStream:
    """A streamed answer: ``async for`` it for text pieces.

    Leaving early (``break`` then ``aclose()``, the end of an ``async with``
    block, cancellation, or garbage collection) closes the HTTP response and
    gives the connection back to the pool. ``text`` is the text delivered so far.
    """

    def __init__(
        self, pieces: AsyncGenerator[str, None], transcript: Transcript, conversation_id: str
    ) -> None:
        self._pieces = pieces
        self._transcript = transcript
        #: The ``conversationId`` sent with every attempt of this stream.
        self.conversation_id = conversation_id

    @property
    def text(self) -> str:
        """All text delivered so far."""
        return self._transcript.text

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces

    async def __anext__(self) -> str:
        return await self._pieces.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its connection."""
        await self._pieces.aclose()

    async def __aenter__(self: _SelfAsyncStream) -> _SelfAsyncStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncStream conversation_id={self.conversation_id!r} chars={len(self.text)}>"
