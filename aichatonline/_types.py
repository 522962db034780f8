"""Public type aliases: the shapes of messages and of streamed results.

They keep the names of the original provider (``Messages``, ``AsyncResult``,
``CreateResult``) so code written against it type-checks unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict, Union

__all__ = ["AsyncResult", "Completion", "CreateResult", "Message", "Messages", "Role", "TextPart"]

Role: TypeAlias = Literal["system", "user", "assistant", "developer"]


class TextPart(TypedDict):
    """One part of a multi-part message content; only text parts are sent."""

    type: Literal["text"]
    text: str


class _MessageRequired(TypedDict):
    role: Role
    content: Union[str, list[TextPart]]  # noqa: UP007 - evaluated at runtime on Python 3.10


class Message(_MessageRequired, total=False):
    """One chat message, OpenAI-style: ``role``, ``content`` and an optional ``name``."""

    name: str


#: A conversation: a sequence of message mappings (``Message`` dicts or plain dicts).
Messages: TypeAlias = Sequence[Mapping[str, Any]]

#: What ``create_async_generator`` returns: an async iterator of text pieces.
AsyncResult: TypeAlias = AsyncIterator[str]

#: What ``create_completion`` returns: an iterator of text pieces.
CreateResult: TypeAlias = Iterator[str]


@dataclass(frozen=True)
class Completion:
    """A whole answer and how it came: what ``complete(..., full=True)`` returns.

    ``str(completion)`` is the text.
    """

    text: str
    #: The ``conversationId`` the call sent (pass it again to continue the conversation).
    conversation_id: str
    #: Why the answer ended: always ``"stop"`` (the service has no other end).
    finish_reason: Literal["stop"] = "stop"
    #: How many retries the call took.
    retries: int = 0
    #: Unreadable lines skipped on the way (and surrogate halves replaced).
    anomalies: int = 0
    #: The response headers of the last attempt (lower-case names).
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return self.text
