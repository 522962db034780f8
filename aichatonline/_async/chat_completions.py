"""OpenAI's shape over the client's ``stream()``: ``client.chat.completions.create()``.

``client.chat.completions.create(model=..., messages=..., stream=...)`` takes OpenAI's
parameters (checked by ``_openai.py``, shared with the gateway) and answers with the
OpenAI-shaped objects of :mod:`aichatonline.types`: a ``ChatCompletion``, or an async
iterable of ``ChatCompletionChunk`` in OpenAI's order (``_completions.py``, shared with the
gateway too). Underneath it is ``stream()``, with the same resume and error guarantees.

Built on the client's public methods only. Written once, async;
``_sync/chat_completions.py`` is generated from it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from .._base_client import NOT_GIVEN, NotGiven
from .._completions import ChunkSequence, whole_completion
from .._core import TimeoutTypes
from .._openai import check_chat_params
from ..types import ChatCompletion, ChatCompletionChunk
from .closing import AsyncClosing
from .facade import AsyncChatClient, AsyncStreamFacts, CallOptions
from .stream import AsyncStream

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncChat", "AsyncChatCompletionStream", "AsyncCompletions"]


class AsyncChat:
    """``client.chat``: holds ``completions``."""

    def __init__(self, client: AsyncChatClient) -> None:
        self.completions = AsyncCompletions(client)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.completions._client!r}>"


class AsyncCompletions:
    """``client.chat.completions``: OpenAI's ``create()``."""

    def __init__(self, client: AsyncChatClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    @overload
    async def create(
        self, *, model: str, messages: Any, stream: Literal[False] = False, **params: Any
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self, *, model: str, messages: Any, stream: Literal[True], **params: Any
    ) -> AsyncChatCompletionStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: Any,
        stream: bool = False,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatCompletion | AsyncChatCompletionStream:
        """Answer ``messages`` as OpenAI's ``chat.completions.create`` would.

        ``model`` is one of the provider's models or aliases. Sampling knobs
        (``temperature``, ``top_p``, ``max_tokens``, ``user``, ...) are accepted and
        ignored: the service has no such setting. Parameters that would change what you
        get (``n`` > 1, ``tools``, a JSON ``response_format``, image parts, ...) raise
        :class:`~aichatonline.InvalidRequestError` naming the parameter, before any I/O.
        ``usage`` is ``None``: the service reports no token counts. ``timeout``,
        ``max_retries`` and ``extra_headers`` apply to this call only, as for ``stream()``.
        """
        checked = check_chat_params(
            {"model": model, "messages": messages, "stream": stream, **params}
        )
        options: CallOptions = {
            "timeout": timeout,
            "max_retries": max_retries,
            "extra_headers": extra_headers,
        }
        if checked.stream:
            pieces = self._client.stream(checked.messages, **options)
            return AsyncChatCompletionStream(pieces, checked.model, checked.include_usage)
        text = await self._client.complete(checked.messages, **options)
        return whole_completion(checked.model, text)


class AsyncChatCompletionStream(AsyncStreamFacts, AsyncClosing):
    """A streamed answer as ``ChatCompletionChunk`` objects (``async for`` it).

    The chunks are OpenAI's sequence (``aichatonline._completions``): the first carries
    ``role="assistant"`` and no text, and comes with the first piece (so a call that fails
    before any text raises from the first ``__anext__``); then one per piece; the last one
    no text and ``finish_reason="stop"`` (then, with ``stream_options={"include_usage":
    True}``, one with ``choices == []`` and ``usage`` ``None``). Every chunk has the same
    ``id`` and ``created``. ``text`` is the text so far (``retries``, ``anomalies``,
    ``headers``, ``conversation_id`` and ``completed`` too: the underlying stream's); close
    it (or leave its ``async with`` block) to stop early.
    """

    def __init__(self, pieces: AsyncStream, model: str, include_usage: bool) -> None:
        self._pieces = pieces
        self._sequence = ChunkSequence(model, include_usage=include_usage)
        self.id = self._sequence.id
        self.created = self._sequence.created
        self.model = model
        self._ready: deque[ChatCompletionChunk] = deque()  # chunks due, not handed out yet
        self._ended = False  # nothing more will come from the pieces

    def __repr__(self) -> str:
        state = "completed" if self.completed else f"chars={len(self.text)}"
        return f"<{type(self).__name__} id={self.id!r} model={self.model!r} {state}>"

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        ready = self._ready
        if not ready:
            if self._ended:
                raise StopAsyncIteration
            try:
                piece = await self._pieces.__anext__()
            except StopAsyncIteration:
                self._ended = True
                if not self._pieces.completed:  # closed early: it did not finish
                    raise
                ready.extend(self._sequence.end())
            except BaseException:
                self._ended = True  # after an error, nothing more: above all no "stop"
                raise
            else:
                ready.extend(self._sequence.text(piece))
        return ready.popleft()

    async def aclose(self) -> None:
        """Stop the stream and release its connection."""
        self._ended = True
        self._ready.clear()
        await self._pieces.aclose()

    #: openai's name for it (``await stream.close()``).
    close = aclose
