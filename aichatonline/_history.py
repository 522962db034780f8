"""A conversation's history between turns: the system line, the exchanges, one id. No I/O.

:class:`History` is what ``client.conversation()`` keeps (``AsyncConversation`` and
``Conversation`` are it plus a client) and what the command line's chat session keeps
across the clients it makes. The rules, in one place:

- a turn sends the system line (when there is one), the exchanges so far, then its text,
  all under one ``conversationId``;
- a turn's exchange (its text and the answer) is kept once the answer is complete, and only
  if no ``reset()`` came in between; an interrupted answer is not kept;
- right after a turn that was not kept, ``add("assistant", partial)`` keeps it after all:
  its question goes in first, so the history still alternates;
- ``undo()`` takes the last exchange back (the question and what answered it);
- ``reset()`` forgets every exchange and takes a new ``conversationId`` (the system line
  stays).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._core import get_random_string, normalize_messages
from ._exceptions import InvalidRequestError
from ._messages import Message, Role

__all__ = ["History", "Turn"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One question asked of a :class:`History`, to hand back with its answer."""

    text: str
    #: How many resets the history had seen when the question was asked.
    epoch: int


class History:
    """The system line, the exchanges and the ``conversationId`` of one conversation."""

    __slots__ = ("_epoch", "_messages", "_unanswered", "conversation_id", "system")

    def __init__(self, system: str | None = None) -> None:
        if system is not None and not isinstance(system, str):
            raise InvalidRequestError(
                f"system must be a string or None, not {type(system).__name__}", field="system"
            )
        #: Sent first with every turn (not part of the exchanges).
        self.system = system
        #: The ``conversationId`` every turn sends.
        self.conversation_id = get_random_string()
        self._messages: list[Message] = []
        self._unanswered: str | None = None  # the question of a turn that was not kept
        self._epoch = 0  # a reset() starts a new one: a turn of an older one is not kept

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def exchanges(self) -> list[Message]:
        """The exchanges so far (a copy), the system line not included."""
        return [dict(message) for message in self._messages]  # type: ignore[misc]

    def messages_for(self, text: str) -> list[Message]:
        """What a turn with ``text`` sends: the system line, the exchanges, ``text``."""
        messages: list[Message] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.extend(self._messages)
        messages.append({"role": "user", "content": text})
        return messages

    def ask(self, text: str) -> Turn:
        """A turn with ``text`` goes out; hand its answer to :meth:`answered`."""
        self._unanswered = text
        return Turn(text, self._epoch)

    def answered(self, turn: Turn, answer: str) -> None:
        """``turn``'s whole answer came: keep the exchange (unless a reset came since)."""
        if turn.epoch != self._epoch:
            return
        self._unanswered = None
        self._messages.append({"role": "user", "content": turn.text})
        self._messages.append({"role": "assistant", "content": answer})

    def add(self, role: Role, content: str) -> None:
        """Add a message; right after a turn that was not kept, an ``assistant`` message
        completes that turn (its question goes in first)."""
        normalize_messages([{"role": role, "content": content}])  # checks role and content
        if role == "assistant" and self._unanswered is not None:
            self._messages.append({"role": "user", "content": self._unanswered})
        self._unanswered = None
        self._messages.append({"role": role, "content": content})

    def undo(self) -> list[Message]:
        """Take the last exchange back (the question and its answer); returns what it removed."""
        self._unanswered = None
        removed: list[Message] = []
        while self._messages:
            message = self._messages.pop()
            removed.insert(0, message)
            if message["role"] == "user":
                break
        return removed

    def reset(self) -> None:
        """Forget the exchanges (the system line stays); a new ``conversationId``."""
        self._messages.clear()
        self._unanswered = None
        self._epoch += 1
        self.conversation_id = get_random_string()
