"""What the core's state machines tell the I/O layer to do, and how they keep events in order.

A chat :class:`~aichatonline._core.call.Call` and a
:class:`~aichatonline._core.token_fetch.TokenFetch` answer ``next_action()`` with one of
these actions; the I/O layer does it and reports what happened as an event (a method of
the machine). No I/O here.

Each machine has an explicit state (an enum) and a table of the states each event is taken
in. An event in any other state is a bug of the I/O layer that drives the machine, not a
failure of the service or of the caller: it raises :class:`EventOrderError` (h11's
``LocalProtocolError`` idea) and changes nothing. Failures of the service or the caller
never raise out of an event: they are transitions, and the next action says what follows
(``Sleep`` and try again, ``Raise``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import ClassVar, Final, Generic, TypeVar

from .._exceptions import APIError
from .request import Request

__all__ = [
    "COMPLETE",
    "FETCH_TOKEN",
    "READ_BODY",
    "READ_ERROR",
    "READ_HEAD",
    "Action",
    "EventOrderError",
    "Fetched",
    "Raise",
    "Send",
    "Sleep",
    "StateMachine",
]


class Action:
    """What the I/O layer should do next."""

    __slots__ = ()


class _Named(Action):
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Get the client's token (cached, or fetched once for every waiting call).
FETCH_TOKEN: Final = _Named("FETCH_TOKEN")
#: The request went out: wait for its response head (the loop that sent it reports it).
READ_HEAD: Final = _Named("READ_HEAD")
#: Read the next bytes of the answer's body.
READ_BODY: Final = _Named("READ_BODY")
#: Read the start of a refused response's body.
READ_ERROR: Final = _Named("READ_ERROR")
#: The call ended: the whole answer was delivered.
COMPLETE: Final = _Named("COMPLETE")


class Send(Action):
    """Send ``request`` (and wait for its response head)."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request

    def __repr__(self) -> str:
        return f"Send({self.request!r})"


class Sleep(Action):
    """Wait ``seconds`` (the back-off before the next attempt)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Sleep({self.seconds:g})"


class Raise(Action):
    """The call (or fetch) failed for good: raise ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: APIError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"Raise({self.error!r})"


class Fetched(Action):
    """A token fetch succeeded with ``token``."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "Fetched(***)"


class EventOrderError(RuntimeError):
    """An event reached a state machine in a state that does not take it.

    A bug of the I/O layer that drives the machine (it reported something it was not asked
    to do, or reported it twice), never a failure of the service or of the caller.
    """


State = TypeVar("State", bound=Enum)


class StateMachine(Generic[State]):
    """An explicit state, and the table of the states each event is taken in.

    A subclass sets ``_TAKES`` (event name -> the states that take it) and calls
    :meth:`_expect` first thing in each event method; every transition goes through
    :meth:`_to`, which sets the state and its action together.
    """

    __slots__ = ("_action", "_state")

    _TAKES: ClassVar[Mapping[str, frozenset[Enum]]]

    def __init__(self, state: State, action: Action) -> None:
        self._state = state
        self._action = action

    @property
    def state(self) -> State:
        """Where the machine is."""
        return self._state

    def next_action(self) -> Action:
        """What the I/O layer should do now (asking again changes nothing)."""
        return self._action

    def _to(self, state: State, action: Action) -> None:
        self._state = state
        self._action = action

    def _expect(self, event: str) -> None:
        """Refuse ``event`` unless the machine is in a state that takes it."""
        if self._state not in self._TAKES[event]:
            taken = ", ".join(sorted(state.name for state in self._TAKES[event]))
            raise EventOrderError(
                f"{type(self).__name__}.{event}() in state {self._state.name} "
                f"(it is taken in {taken}; the next action was {self._action!r})"
            )
