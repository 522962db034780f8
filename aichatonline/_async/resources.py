"""The faces over the client's ``stream()``: OpenAI's ``chat.completions``, and conversations.

``client.chat.completions.create(model=..., messages=..., stream=...)`` takes OpenAI's
parameters (checked by ``_openai.py``, shared with the gateway) and answers with the
OpenAI-shaped objects of :mod:`aichatonline.types`: a ``ChatCompletion``, or an async
iterable of ``ChatCompletionChunk`` in OpenAI's order (``_completions.py``, shared with the
gateway too). Underneath it is ``stream()``, with the same resume and
error guarantees.

``client.conversation(system=None)`` keeps a history and one ``conversationId``: each
``stream(text)`` / ``complete(text)`` sends the whole history and adds the exchange once the
answer completed (an interrupted one is not added; add its ``.partial`` yourself with
``add()`` if you want it).

Built on the client's public methods only. Written once, async; ``_sync/resources.py`` is
generated from it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from .._base_client import NOT_GIVEN, NotGiven
from .._completions import ChunkSequence, whole_completion
from .._core import TimeoutTypes, get_random_string, normalize_messages
from .._exceptions import InvalidRequestError
from .._messages import Message, Role
from .._openai import check_chat_params
from ..types import ChatCompletion, ChatCompletionChunk
from .stream import AsyncStream

if TYPE_CHECKING:
    from typing_extensions import Self

    from .client import AsyncClient

__all__ = [
    "AsyncChat",
    "AsyncChatCompletionStream",
    "AsyncCompletions",
    "AsyncConversation",
    "AsyncConversationStream",
]


class _Facade:
    """What every stream over ``stream()`` tells about its call."""

    _pieces: AsyncStream

    @property
    def text(self) -> str:
        """All text delivered so far."""
        return self._pieces.text

    @property
    def retries(self) -> int:
        """How many retries the call took so far."""
        return self._pieces.retries

    @property
    def anomalies(self) -> int:
        """Unreadable lines skipped (and surrogate halves replaced), over every attempt."""
        return self._pieces.anomalies

    @property
    def headers(self) -> Mapping[str, str] | None:
        """The response headers of the last attempt (lower-case names), once one came."""
        return self._pieces.headers

    @property
    def conversation_id(self) -> str:
        """The ``conversationId`` every attempt sent."""
        return self._pieces.conversation_id

    @property
    def completed(self) -> bool:
        """Whether the whole answer arrived and was handed out."""
        return self._pieces.completed

    def __repr__(self) -> str:
        state = "completed" if self.completed else f"chars={len(self.text)}"
        return f"<{type(self).__name__} conversation_id={self.conversation_id!r} {state}>"


class AsyncChat:
    """``client.chat``: holds ``completions``."""

    def __init__(self, client: AsyncClient) -> None:
        self.completions = AsyncCompletions(client)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.completions._client!r}>"


class AsyncCompletions:
    """``client.chat.completions``: OpenAI's ``create()``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Any,
        stream: Literal[False] = False,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Any,
        stream: Literal[True],
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
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
        ``usage`` is ``None``: the service reports no token counts.
        """
        checked = check_chat_params(
            {"model": model, "messages": messages, "stream": stream, **params}
        )
        options: dict[str, Any] = {
            "timeout": timeout,
            "max_retries": max_retries,
            "extra_headers": extra_headers,
        }
        if checked.stream:
            pieces = self._client.stream(checked.messages, **options)
            return AsyncChatCompletionStream(pieces, checked.model, checked.include_usage)
        text = await self._client.complete(checked.messages, **options)
        return whole_completion(checked.model, text)


class AsyncChatCompletionStream(_Facade):
    """A streamed answer as ``ChatCompletionChunk`` objects (``async for`` it).

    The chunks are OpenAI's sequence (``aichatonline._completions``): the first carries
    ``role="assistant"`` and no text, and comes with the first piece (so a call that fails
    before any text raises from the first ``__anext__``); then one per piece; the last one
    no text and ``finish_reason="stop"`` (then, with ``stream_options={"include_usage":
    True}``, one with ``choices == []`` and ``usage`` ``None``). Every chunk has the same
    ``id`` and ``created``. ``text`` is the text so far; close it (or leave its
    ``async with`` block) to stop early.
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncConversation:
    """A conversation: the history and one ``conversationId``, kept between turns.

    A turn is kept in the history once its answer completed. After an interrupted turn,
    ``add("assistant", exc.partial)`` keeps it with what did arrive (its question first).
    """

    def __init__(self, client: AsyncClient, system: str | None = None) -> None:
        if system is not None and not isinstance(system, str):
            raise InvalidRequestError(
                f"system must be a string or None, not {type(system).__name__}", field="system"
            )
        self._client = client
        self.system = system
        #: The ``conversationId`` every turn sends.
        self.conversation_id = get_random_string()
        self._history: list[Message] = []
        self._unanswered: str | None = None  # the question of a turn that did not complete
        self._epoch = 0  # a reset() starts a new one: a turn of an older one is not kept

    def __repr__(self) -> str:
        system = self.system
        if system is not None and len(system) > 40:
            system = system[:39].rstrip() + "…"
        return (
            f"<{type(self).__name__} conversation_id={self.conversation_id!r} "
            f"system={system!r} messages={len(self._history)}>"
        )

    @property
    def history(self) -> list[Message]:
        """The exchanges so far (a copy), the system message not included."""
        return [dict(message) for message in self._history]  # type: ignore[misc]

    def messages(self, text: str) -> list[Message]:
        """What a turn with ``text`` sends: the system message, the history, ``text``."""
        messages: list[Message] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.extend(self._history)
        messages.append({"role": "user", "content": text})
        return messages

    def add(self, role: Role, content: str) -> None:
        """Add a message to the history.

        Right after a turn that did not complete, an ``assistant`` message completes that
        turn: its question goes in first (``add("assistant", exc.partial)``).
        """
        normalize_messages([{"role": role, "content": content}])  # checks role and content
        if role == "assistant" and self._unanswered is not None:
            self._history.append({"role": "user", "content": self._unanswered})
        self._unanswered = None
        self._history.append({"role": role, "content": content})

    def reset(self) -> None:
        """Forget the history (the system message stays); a new ``conversationId``."""
        self._history.clear()
        self._unanswered = None
        self._epoch += 1
        self.conversation_id = get_random_string()

    def undo(self) -> list[Message]:
        """Take the last exchange (your message and its answer) back; returns what it removed."""
        self._unanswered = None
        removed: list[Message] = []
        while self._history:
            message = self._history.pop()
            removed.insert(0, message)
            if message["role"] == "user":
                break
        return removed

    def stream(
        self,
        text: str,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> AsyncConversationStream:
        """Stream the answer to ``text``; the exchange is kept once the answer completed."""
        pieces = self._client.stream(
            self.messages(text),
            conversation_id=self.conversation_id,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
        )
        self._unanswered = text
        return AsyncConversationStream(self, text, pieces, self._epoch)

    async def complete(
        self,
        text: str,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> str:
        """The whole answer to ``text``; the exchange is kept."""
        epoch = self._epoch
        self._unanswered = text
        answer = await self._client.complete(
            self.messages(text),
            conversation_id=self.conversation_id,
            timeout=timeout,
            max_retries=max_retries,
            extra_headers=extra_headers,
        )
        self._keep(text, answer, epoch)
        return answer

    def _keep(self, text: str, answer: str, epoch: int) -> None:
        """A turn of ``epoch`` completed: keep the exchange (unless reset() came since)."""
        if epoch != self._epoch:
            return
        self._unanswered = None
        self._history.append({"role": "user", "content": text})
        self._history.append({"role": "assistant", "content": answer})


class AsyncConversationStream(_Facade):
    """A turn's streamed answer; the exchange joins the history when it ends normally."""

    def __init__(
        self, conversation: AsyncConversation, text: str, pieces: AsyncStream, epoch: int
    ) -> None:
        self._conversation = conversation
        self._text = text
        self._pieces = pieces
        self._epoch = epoch
        self._settled = False  # kept, or known never to be

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        try:
            return await self._pieces.__anext__()
        except StopAsyncIteration:
            if not self._settled and self._pieces.completed:
                self._conversation._keep(self._text, self._pieces.text, self._epoch)
            self._settled = True
            raise
        except BaseException:
            self._settled = True  # an interrupted answer is not kept
            raise

    async def aclose(self) -> None:
        """Stop the stream (an answer stopped early is not kept; a whole one is, even when
        closed after its last piece but before the iteration's end)."""
        if not self._settled and self._pieces.completed:
            self._conversation._keep(self._text, self._pieces.text, self._epoch)
        self._settled = True
        await self._pieces.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
