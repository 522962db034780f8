"""Conversations over the client's ``stream()``: ``client.conversation(system=None)``.

A conversation is a :class:`~aichatonline._history.History` (the system line, the
exchanges, one ``conversationId``: its rules are written there) and a client: each
``stream(text)`` / ``complete(text)`` sends the whole history, and the exchange is kept once
the answer completed (an interrupted one is not kept; ``add()`` its ``.partial`` yourself
if you want it).

Built on the client's public methods only. Written once, async; ``_sync/conversation.py``
is generated from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._history import History, Turn
from .._messages import Message, Role
from .closing import AsyncClosing
from .facade import AsyncChatClient, AsyncStreamFacts, CallOptions
from .stream import AsyncStream

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["AsyncConversation", "AsyncConversationStream"]


class AsyncConversation:
    """A conversation: the history and one ``conversationId``, kept between turns.

    A turn is kept in the history once its answer completed. After an interrupted turn,
    ``add("assistant", exc.partial)`` keeps it with what did arrive (its question first).
    ``timeout``, ``max_retries`` and ``extra_headers`` apply to one turn, as for
    ``stream()``.
    """

    def __init__(self, client: AsyncChatClient, system: str | None = None) -> None:
        self._client = client
        self._history = History(system)

    def __repr__(self) -> str:
        system = self.system
        if system is not None and len(system) > 40:
            system = system[:39].rstrip() + "…"
        return (
            f"<{type(self).__name__} conversation_id={self.conversation_id!r} "
            f"system={system!r} messages={len(self._history)}>"
        )

    @property
    def system(self) -> str | None:
        """The system message sent first with every turn (not part of the history)."""
        return self._history.system

    @system.setter
    def system(self, value: str | None) -> None:
        self._history.system = value

    @property
    def conversation_id(self) -> str:
        """The ``conversationId`` every turn sends."""
        return self._history.conversation_id

    @conversation_id.setter
    def conversation_id(self, value: str) -> None:
        self._history.conversation_id = value

    @property
    def history(self) -> list[Message]:
        """The exchanges so far (a copy), the system message not included."""
        return self._history.exchanges

    def messages(self, text: str) -> list[Message]:
        """What a turn with ``text`` sends: the system message, the history, ``text``."""
        return self._history.messages_for(text)

    def add(self, role: Role, content: str) -> None:
        """Add a message to the history.

        Right after a turn that did not complete, an ``assistant`` message completes that
        turn: its question goes in first (``add("assistant", exc.partial)``).
        """
        self._history.add(role, content)

    def reset(self) -> None:
        """Forget the history (the system message stays); a new ``conversationId``."""
        self._history.reset()

    def undo(self) -> list[Message]:
        """Take the last exchange back (your message and its answer); returns what it removed."""
        return self._history.undo()

    def stream(self, text: str, **options: Unpack[CallOptions]) -> AsyncConversationStream:
        """Stream the answer to ``text``; the exchange is kept once the answer completed."""
        history = self._history
        pieces = self._client.stream(
            history.messages_for(text), conversation_id=history.conversation_id, **options
        )
        return AsyncConversationStream(history, history.ask(text), pieces)

    async def complete(self, text: str, **options: Unpack[CallOptions]) -> str:
        """The whole answer to ``text``; the exchange is kept."""
        history = self._history
        turn = history.ask(text)
        answer = await self._client.complete(
            history.messages_for(text), conversation_id=history.conversation_id, **options
        )
        history.answered(turn, answer)
        return answer


class AsyncConversationStream(AsyncStreamFacts, AsyncClosing):
    """A turn's streamed answer; the exchange joins the history when it ends normally.

    ``text``, ``retries``, ``anomalies``, ``headers``, ``conversation_id`` and ``completed``
    are the underlying stream's.
    """

    def __init__(self, history: History, turn: Turn, pieces: AsyncStream) -> None:
        self._history = history
        self._turn = turn
        self._pieces = pieces
        self._settled = False  # kept, or known never to be

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        try:
            return await self._pieces.__anext__()
        except StopAsyncIteration:
            self._settle()
            raise
        except BaseException:
            self._settled = True  # an interrupted answer is not kept
            raise

    async def aclose(self) -> None:
        """Stop the stream (an answer stopped early is not kept; a whole one is, even when
        closed after its last piece but before the iteration's end)."""
        self._settle()
        await self._pieces.aclose()

    def _settle(self) -> None:
        """Keep the exchange if the answer is whole (once)."""
        if not self._settled and self._pieces.completed:
            self._history.answered(self._turn, self._pieces.text)
        self._settled = True
