"""Turning the caller's messages into the single prompt string the service takes.

Pure functions, no I/O: validation (with errors naming the message index and
field), ``format_prompt`` exactly as PROTOCOL.md section 3 gives it, and
``get_random_string`` for conversation ids and the token request's ``canvas``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import InvalidRequestError
from .._messages import Messages

__all__ = ["EMPTY_PROMPT", "ROLES", "format_prompt", "get_random_string", "normalize_messages"]

#: How every refusal of a prompt with no text begins, the SDK's and the command line's.
EMPTY_PROMPT = "the prompt is empty"
ROLES = frozenset({"system", "user", "assistant", "developer"})
_ALPHABET = string.ascii_lowercase + string.digits
_choices = random.choices


def get_random_string(length: int = 10) -> str:
    """Return ``length`` random characters from ``a-z0-9``.

    As the original did, from :mod:`random`: conversation ids and the token request's
    ``canvas`` only need to differ, not to be unguessable (the token is the service's).
    ``random`` is seeded from the OS at start-up and costs a microsecond, where
    :mod:`secrets` cost several on every chat.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise InvalidRequestError(f"length must be a non-negative int, not {length!r}")
    return "".join(_choices(_ALPHABET, k=length))


def _content_text(content: object, index: int) -> str:
    """The text of one message's content: a string, or the joined text of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = []
        for part_index, part in enumerate(content):
            field = f"content[{part_index}]"
            if not isinstance(part, Mapping):
                raise InvalidRequestError(
                    f"messages[{index}].{field} must be a mapping like "
                    f"{{'type': 'text', 'text': '...'}}, not {type(part).__name__}",
                    index=index,
                    field=field,
                )
            if part.get("type", "text") != "text":
                raise InvalidRequestError(
                    f"messages[{index}].{field} has type {part.get('type')!r}; "
                    "only 'text' parts can be sent to AiChatOnline",
                    index=index,
                    field=field,
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequestError(
                    f"messages[{index}].{field}.text must be a string, not {type(text).__name__}",
                    index=index,
                    field=f"{field}.text",
                )
            texts.append(text)
        return "".join(texts)
    raise InvalidRequestError(
        f"messages[{index}].content must be a string or a list of text parts, "
        f"not {type(content).__name__}",
        index=index,
        field="content",
    )


def normalize_messages(messages: Messages | str) -> list[tuple[str, str]]:
    """Validate ``messages`` and return them as ``(role, text)`` pairs.

    A plain string is shorthand for one user message. Raises
    :class:`InvalidRequestError` naming the offending index and field.
    """
    if isinstance(messages, str):
        return [("user", messages)]
    if isinstance(messages, (bytes, bytearray, Mapping)) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            f"messages must be a list of message mappings or a string, "
            f"not {type(messages).__name__}",
            field="messages",
        )
    if not messages:
        raise InvalidRequestError("messages must not be empty", field="messages")
    pairs = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequestError(
                f"messages[{index}] must be a mapping with 'role' and 'content', "
                f"not {type(message).__name__}",
                index=index,
            )
        role: Any = message.get("role")
        # isinstance first: an unhashable role (a list, a dict) would make the
        # frozenset lookup raise TypeError instead of InvalidRequestError.
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequestError(
                f"messages[{index}].role must be one of {', '.join(sorted(ROLES))}; got {role!r}",
                index=index,
                field="role",
            )
        if "content" not in message:
            raise InvalidRequestError(
                f"messages[{index}] has no 'content'", index=index, field="content"
            )
        content = message["content"]
        if content is None and role == "assistant":  # OpenAI's assistant turn without text
            content = ""
        pairs.append((role, _content_text(content, index)))
    return pairs


def format_prompt(messages: Messages | str, add_special_tokens: bool = False) -> str:
    """Format a conversation as the one prompt string the service expects.

    A prompt with no text (every message's text empty or blank, ``""`` included) is an
    :class:`InvalidRequestError`: the service would get nothing to answer. An empty message
    among others is kept, as OpenAI keeps an assistant turn without text.

    One message (and ``add_special_tokens`` false) gives that message's content
    as it is. Otherwise each message becomes ``"{Role}: {content}"``, joined
    with newlines, followed by ``"\\nAssistant:"``::

        >>> format_prompt([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])
        'System: S\\nUser: Hi\\nAssistant:'
    """
    pairs = normalize_messages(messages)
    if not any(text.strip() for _, text in pairs):
        raise InvalidRequestError(
            f"{EMPTY_PROMPT}: the messages hold no text to answer", field="messages"
        )
    if not add_special_tokens and len(pairs) == 1:
        return pairs[0][1]
    lines = "\n".join(f"{role.capitalize()}: {text}" for role, text in pairs)
    return f"{lines}\nAssistant:"
