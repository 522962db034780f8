"""What the faces over a client's ``stream()`` share: the client they need, and a stream's facts.

The OpenAI shape (``chat_completions.py``) and conversations (``conversation.py``) are built
on a client's public ``stream()`` and ``complete()`` only: :class:`AsyncChatClient` says so
(a Protocol, so that they need not import the client, which imports them), and
:class:`CallOptions` names the per-call options they pass through. A stream of theirs tells
what the underlying :class:`~aichatonline.AsyncStream` tells (``text``, ``retries``,
``anomalies``, ``headers``, ``conversation_id``, ``completed``): :class:`AsyncStreamFacts`.

Written once, async; ``_sync/facade.py`` is generated from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar, overload

from .._base_client import NotGiven
from .._core import TimeoutTypes
from .._messages import Messages
from .stream import AsyncStream

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

__all__ = ["AsyncChatClient", "AsyncStreamFacts", "CallOptions"]

_T = TypeVar("_T")


class CallOptions(TypedDict, total=False):
    """The options of one call (``stream()``, ``complete()``), for this call only."""

    timeout: TimeoutTypes | NotGiven
    max_retries: int | NotGiven
    extra_headers: Mapping[str, str] | None


class AsyncChatClient(Protocol):
    """What a face needs from a client: ``stream()`` and ``complete()``."""

    def stream(
        self,
        messages: Messages | str,
        *,
        conversation_id: str | None = None,
        **options: Unpack[CallOptions],
    ) -> AsyncStream: ...

    async def complete(
        self,
        messages: Messages | str,
        *,
        conversation_id: str | None = None,
        **options: Unpack[CallOptions],
    ) -> str: ...


class _SameAsStream(Generic[_T]):
    """A read-only attribute: the underlying stream's attribute of the same name (and doc)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self.__doc__ = getattr(AsyncStream, name).__doc__

    @overload
    def __get__(self, instance: None, owner: type) -> Self: ...

    @overload
    def __get__(self, instance: AsyncStreamFacts, owner: type) -> _T: ...

    def __get__(self, instance: AsyncStreamFacts | None, owner: type) -> Any:
        if instance is None:
            return self
        return getattr(instance._pieces, self._name)


class AsyncStreamFacts:
    """What every stream over ``stream()`` tells about its call: the stream's own facts."""

    _pieces: AsyncStream

    text = _SameAsStream[str]()
    retries = _SameAsStream[int]()
    anomalies = _SameAsStream[int]()
    headers = _SameAsStream["Mapping[str, str] | None"]()
    conversation_id = _SameAsStream[str]()
    completed = _SameAsStream[bool]()

    def __repr__(self) -> str:
        state = "completed" if self.completed else f"chars={len(self.text)}"
        return f"<{type(self).__name__} conversation_id={self.conversation_id!r} {state}>"
