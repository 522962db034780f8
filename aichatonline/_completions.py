"""OpenAI's answers made of the service's text: a whole ``ChatCompletion``, or the chunk sequence.

One home for the OpenAI shape of an answer, used by ``client.chat.completions.create()``
(both clients) and by the gateway (whose SSE stream encodes the same chunks as bytes).
Pure: no I/O; the objects are those of :mod:`aichatonline.types`.

The chunks of one streamed answer
---------------------------------
1. the *opening*: ``delta={"role": "assistant", "content": ""}``, no text (as OpenAI's);
2. a *text* chunk for each piece of text;
3. the *stop*: an empty delta and ``finish_reason="stop"``;
4. with ``stream_options.include_usage``, the *usage* chunk: ``choices == []``, ``usage``
   null (the service counts no tokens).

Every chunk of one answer has the same ``id``, ``created`` and ``model``.

Committing. :class:`ChunkSequence` hands out the opening with the first text, or with the
end of an answer that had none, never before: until then nothing is committed, so a call
that fails before any text fails as a whole (the client raises from the first
``__anext__``; the gateway answers with an HTTP error status, not a stream that breaks). A
failure after the opening simply ends the chunks: only a complete answer gets a stop chunk.
"""

from __future__ import annotations

import secrets
import time
from typing import Literal

from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
)

__all__ = ["ChunkSequence", "new_completion_id", "text_of", "whole_completion"]


def new_completion_id() -> str:
    """A fresh ``chatcmpl-...`` id for one answer (shared by every chunk of a stream)."""
    return "chatcmpl-" + secrets.token_hex(14)


def whole_completion(model: str, text: str, *, created: int | None = None) -> ChatCompletion:
    """The ``chat.completion`` object of a whole answer ``text`` (``created``: now)."""
    return ChatCompletion(
        id=new_completion_id(),
        created=int(time.time()) if created is None else created,
        model=model,
        choices=[Choice(message=ChatCompletionMessage(content=text), finish_reason="stop")],
    )


def text_of(chunk: ChatCompletionChunk) -> str | None:
    """The text a text chunk carries; ``None`` for the opening, the stop and the usage chunk."""
    if len(chunk.choices) != 1:
        return None
    choice = chunk.choices[0]
    delta = choice.delta
    if delta.role is not None or choice.finish_reason is not None:
        return None
    return delta.content


class ChunkSequence:
    """The chunks of one streamed answer, in OpenAI's order; see the module docstring.

    Tell it what the answer does: :meth:`text` for each piece (or several joined), then
    :meth:`end` once the answer is complete. Each returns the chunks to hand out now. After
    a failure, call neither: the chunks simply end.
    """

    __slots__ = ("_ended", "_opened", "created", "id", "include_usage", "model")

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.id = new_completion_id() if id is None else id
        self.created = int(time.time()) if created is None else created
        self.model = model
        #: ``stream_options.include_usage``: end with the usage chunk.
        self.include_usage = include_usage
        self._opened = False
        self._ended = False

    @property
    def committed(self) -> bool:
        """Whether the opening was handed out (the answer has begun for the reader)."""
        return self._opened

    def text(self, text: str) -> list[ChatCompletionChunk]:
        """The chunks for ``text``: the opening first if nothing was handed out yet."""
        if self._ended:
            raise RuntimeError("text after the end of the answer")
        chunks = self._opening()
        chunks.append(self.text_chunk(text))
        return chunks

    def end(self) -> list[ChatCompletionChunk]:
        """The answer is complete: the chunks that end it (the opening first, if no text came)."""
        if self._ended:
            raise RuntimeError("the answer ended already")
        chunks = self._opening()
        chunks.append(self._chunk(ChoiceDelta(), finish_reason="stop"))
        if self.include_usage:
            chunks.append(
                ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[])
            )
        self._ended = True
        return chunks

    def text_chunk(self, text: str) -> ChatCompletionChunk:
        """A text chunk of this answer (nothing else changes)."""
        return self._chunk(ChoiceDelta(content=text))

    def _opening(self) -> list[ChatCompletionChunk]:
        if self._opened:
            return []
        self._opened = True
        return [self._chunk(ChoiceDelta(role="assistant", content=""))]

    def _chunk(
        self, delta: ChoiceDelta, finish_reason: Literal["stop"] | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
        )
