"""The requests the SDK sends, as plain values, and the chat request of one call. No I/O.

A :class:`Request` is what the transport sends: method, URL, headers, body, and the
secrets it carries (so that no message repeats them). A :class:`ChatRequest` is what stays
the same across every attempt of one chat call: base URL, headers, prompt and conversation
id; it gives the attempt's :class:`Request` for the token of the moment. A re-sent request
carries the same ``conversationId`` and prompt, which is what lets a dropped stream be
resumed (``docs/protocol.md``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._exceptions import InvalidRequestError
from .prompt import get_random_string

__all__ = ["CHAT_PATH", "ChatRequest", "Request"]

CHAT_PATH = "/aichatonline/api/chat/gpt"

# A str as a JSON string literal, non-ASCII kept (json's own C encoder).
_json_string = json.encoder.encode_basestring


@dataclass(frozen=True)
class Request:
    """One HTTP request for the transport to send. The repr leaves headers out (the token)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(default=None, repr=False)
    #: Values the request carries that no error message may repeat (the token).
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def shown_url(self) -> str:
        """The URL for messages: the query left out (it holds nothing the reader needs)."""
        return self.url.partition("?")[0]


@dataclass(frozen=True)
class ChatRequest:
    """The chat request of one call: what stays the same across all of its attempts.

    A re-sent request carries the same ``conversationId`` and prompt, which is
    what lets a dropped stream be resumed.
    """

    base_url: str
    headers: Mapping[str, str] = field(repr=False)
    prompt: str = field(repr=False)
    conversation_id: str = field(default_factory=get_random_string)
    #: The JSON body, built once (at construction, so that text which cannot
    #: be encoded fails before any I/O) and sent with every attempt.
    body: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # json.dumps(..., ensure_ascii=False, separators=(",", ":")) of the two-key object,
        # spelled out: the same bytes, without a dict and an encoder for every call.
        text = (
            f'{{"conversationId":{_json_string(self.conversation_id)},'
            f'"prompt":{_json_string(self.prompt)}}}'
        )
        try:
            body = text.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 for it
            raise InvalidRequestError(
                f"the messages contain text that is not valid Unicode ({exc.reason})",
                field="messages",
            ) from None
        object.__setattr__(self, "body", body)  # frozen: set once, here

    def request(self, token: str) -> Request:
        """The attempt's request, authenticated by ``token``."""
        headers = {**self.headers, "Content-Type": "application/json", "UniqueId": token}
        return Request("POST", f"{self.base_url}{CHAT_PATH}", headers, self.body, (token,))
