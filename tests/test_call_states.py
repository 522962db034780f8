"""The state machines' tables: every event in every state of ``Call`` and ``TokenFetch``.

An event in a state that takes it moves the machine on; in any other state it is a bug of
the I/O loop, raises ``EventOrderError`` and changes nothing. The failures of the service
never raise out of an event (``tests/test_call.py`` drives each of them).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aichatonline._core import (
    COMPLETE,
    FETCH_TOKEN,
    READ_BODY,
    READ_ERROR,
    READ_HEAD,
    Call,
    CallState,
    EventOrderError,
    Fetched,
    FetchState,
    Raise,
    Send,
    Sleep,
    Timeout,
    TokenFetch,
)
from aichatonline._core.timeouts import TimeLimits
from aichatonline._exceptions import AiChatOnlineError, APIConnectionError
from tests.test_call import BASE, HEADERS, NO_WAIT, answer, begin, make_call, stream

# -- Call ---------------------------------------------------------------------------------------


def _reading_error() -> Call:
    call = make_call()
    begin(call, 500)
    return call


def _backing_off() -> Call:
    call = _reading_error()
    call.error_body(b"")
    return call


def _complete() -> Call:
    call = make_call()
    begin(call)
    stream(call, answer("done"))
    return call


def _awaiting_head() -> Call:
    call = make_call()
    call.sent()
    return call


def _reading_body() -> Call:
    call = make_call()
    begin(call)
    return call


def _failed() -> Call:
    call = make_call()
    call.stop(APIConnectionError("closed"))
    return call


#: A call in each state, and the action that state gives.
CALLS: dict[CallState, tuple[Callable[[], Call], Callable[[object], bool]]] = {
    CallState.NEEDS_TOKEN: (lambda: make_call(token=None), lambda a: a is FETCH_TOKEN),
    CallState.SENDING: (make_call, lambda a: type(a) is Send),
    CallState.AWAITING_HEAD: (_awaiting_head, lambda a: a is READ_HEAD),
    CallState.READING_BODY: (_reading_body, lambda a: a is READ_BODY),
    CallState.READING_ERROR: (_reading_error, lambda a: a is READ_ERROR),
    CallState.BACKING_OFF: (_backing_off, lambda a: type(a) is Sleep),
    CallState.COMPLETE: (_complete, lambda a: a is COMPLETE),
    CallState.FAILED: (_failed, lambda a: type(a) is Raise),
}

#: Every event of a call, with arguments.
CALL_EVENTS: dict[str, Callable[[Call], object]] = {
    "token_ready": lambda call: call.token_ready("tok-2"),
    "token_failed": lambda call: call.token_failed(APIConnectionError("no token")),
    "sent": lambda call: call.sent(),
    "response_head": lambda call: call.response_head(200, {}),
    "receive": lambda call: call.receive(answer("x")),
    "end_of_body": lambda call: call.end_of_body(),
    "error_body": lambda call: call.error_body(b""),
    "slept": lambda call: call.slept(),
    "failed": lambda call: call.failed(APIConnectionError("reset")),
    "stop": lambda call: call.stop(APIConnectionError("closed")),
}


def test_the_table_names_every_event_and_every_state() -> None:
    assert set(Call._TAKES) == set(CALL_EVENTS)
    assert set(CALLS) == set(CallState)
    taken = set().union(*Call._TAKES.values())
    assert taken == set(CallState) - {CallState.COMPLETE, CallState.FAILED}


@pytest.mark.parametrize("state", list(CallState), ids=lambda state: state.name)
def test_each_state_gives_its_action(state: CallState) -> None:
    make, is_its_action = CALLS[state]
    call = make()
    assert call.state is state
    assert is_its_action(call.next_action()), call.next_action()
    assert call.over is (state in (CallState.COMPLETE, CallState.FAILED))


@pytest.mark.parametrize("event", list(CALL_EVENTS))
@pytest.mark.parametrize("state", list(CallState), ids=lambda state: state.name)
def test_an_event_is_taken_only_in_its_states(state: CallState, event: str) -> None:
    make, _ = CALLS[state]
    call = make()
    action = call.next_action()
    if state in Call._TAKES[event]:
        CALL_EVENTS[event](call)  # taken: no EventOrderError (wherever it leads)
        return
    with pytest.raises(EventOrderError) as info:
        CALL_EVENTS[event](call)
    assert f"Call.{event}() in state {state.name}" in str(info.value)
    assert (call.state, call.next_action()) == (state, action)  # nothing changed


def test_an_event_order_error_is_no_failure_of_the_service() -> None:
    # A bug of the loop, not something a caller's except clause for APIError would catch.
    assert issubclass(EventOrderError, RuntimeError)
    assert not issubclass(EventOrderError, AiChatOnlineError)


def test_sent_twice_is_refused() -> None:
    call = make_call()
    call.sent()
    with pytest.raises(EventOrderError):
        call.sent()


def test_a_failure_of_the_service_is_a_transition_not_an_exception() -> None:
    call = make_call()
    begin(call, 503)
    call.error_body(b"busy")  # no exception: the call moves on
    assert call.state is CallState.BACKING_OFF
    call.slept()
    begin(call, 200, {"content-encoding": "br"})  # unreadable: no exception either
    assert call.state is CallState.BACKING_OFF


# -- TokenFetch ---------------------------------------------------------------------------------


def _fetch() -> TokenFetch:
    return TokenFetch(BASE, HEADERS, policy=NO_WAIT, limits=TimeLimits(Timeout()))


def _fetch_backing_off() -> TokenFetch:
    fetch = _fetch()
    fetch.response(503, {}, b"")
    return fetch


def _fetch_fetched() -> TokenFetch:
    fetch = _fetch()
    fetch.response(200, {}, b'{"data": "tok"}')
    return fetch


def _fetch_failed() -> TokenFetch:
    fetch = _fetch()
    fetch.response(400, {}, b"")
    return fetch


FETCHES: dict[FetchState, tuple[Callable[[], TokenFetch], type]] = {
    FetchState.SENDING: (_fetch, Send),
    FetchState.BACKING_OFF: (_fetch_backing_off, Sleep),
    FetchState.FETCHED: (_fetch_fetched, Fetched),
    FetchState.FAILED: (_fetch_failed, Raise),
}

FETCH_EVENTS: dict[str, Callable[[TokenFetch], object]] = {
    "response": lambda fetch: fetch.response(200, {}, b'{"data": "tok"}'),
    "failed": lambda fetch: fetch.failed(APIConnectionError("reset")),
    "slept": lambda fetch: fetch.slept(),
}


def test_the_fetch_table_names_every_event_and_every_state() -> None:
    assert set(TokenFetch._TAKES) == set(FETCH_EVENTS)
    assert set(FETCHES) == set(FetchState)


@pytest.mark.parametrize("event", list(FETCH_EVENTS))
@pytest.mark.parametrize("state", list(FetchState), ids=lambda state: state.name)
def test_a_fetch_event_is_taken_only_in_its_states(state: FetchState, event: str) -> None:
    make, action_type = FETCHES[state]
    fetch = make()
    assert fetch.state is state
    action = fetch.next_action()
    assert type(action) is action_type
    if state in TokenFetch._TAKES[event]:
        FETCH_EVENTS[event](fetch)
        return
    with pytest.raises(EventOrderError, match=rf"TokenFetch\.{event}\(\) in state {state.name}"):
        FETCH_EVENTS[event](fetch)
    assert (fetch.state, fetch.next_action()) == (state, action)
