"""The shapes of chat messages: ``Role``, ``TextPart``, ``Message`` and ``Messages``.

What a caller passes as ``messages`` (OpenAI's ``{"role", "content"}`` mappings, content a
string or text parts), typed for readers and type checkers. Pure: no imports from the rest
of the package, so the core and every face can lean on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypedDict, Union

__all__ = ["Message", "Messages", "Role", "TextPart"]

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
