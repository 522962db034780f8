"""``Timeout`` (httpx's per-operation limits plus ``total`` and ``first_piece``) and ``TimeLimits``.

``TimeLimits`` runs on a fake clock here: every number below is exact.
"""

from __future__ import annotations

import copy
import math
import pickle

import httpx
import pytest

from aichatonline._core import DEFAULT_TIMEOUT, OPERATIONS, TimeLimits, Timeout
from aichatonline._exceptions import APIConnectionError, APITimeoutError, InvalidRequestError

DEFAULTS = {"connect": 10.0, "read": 60.0, "write": 30.0, "pool": 30.0}
FIELDS = (*OPERATIONS, "total", "first_piece")


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- Timeout: forms -------------------------------------------------------------------------


def test_operations_are_httpx_s() -> None:
    assert OPERATIONS == ("connect", "read", "write", "pool")


def test_defaults() -> None:
    timeout = Timeout()
    assert timeout.as_dict() == {**DEFAULTS, "total": None, "first_piece": None}
    assert timeout == DEFAULT_TIMEOUT


def test_a_number_sets_the_four_operations_as_in_httpx() -> None:
    timeout = Timeout(5)
    assert timeout.as_dict() == {
        "connect": 5.0,
        "read": 5.0,
        "write": 5.0,
        "pool": 5.0,
        "total": None,  # no whole-call bound unless asked for
        "first_piece": None,
    }
    reference = httpx.Timeout(5)
    assert [getattr(timeout, name) for name in OPERATIONS] == [
        getattr(reference, name) for name in OPERATIONS
    ]


def test_values_are_floats() -> None:
    timeout = Timeout(5, total=30, first_piece=2)
    for name in FIELDS:
        assert type(getattr(timeout, name)) is float


def test_a_number_then_one_operation_changed() -> None:
    assert Timeout(5, connect=2).as_dict() == {
        "connect": 2.0,
        "read": 5.0,
        "write": 5.0,
        "pool": 5.0,
        "total": None,
        "first_piece": None,
    }


@pytest.mark.parametrize("name", OPERATIONS)
def test_an_unset_operation_keeps_its_default(name: str) -> None:
    timeout = Timeout(**{name: 1.5})
    for other in OPERATIONS:
        assert getattr(timeout, other) == (1.5 if other == name else DEFAULTS[other])


def test_none_turns_the_operations_off() -> None:
    assert Timeout(None).as_dict() == dict.fromkeys(FIELDS)
    assert Timeout(None, read=5).as_dict() == {**dict.fromkeys(FIELDS), "read": 5.0}
    assert Timeout(read=None).read is None
    assert Timeout(read=None).connect == 10.0


def test_total_and_first_piece() -> None:
    timeout = Timeout(5, total=30, first_piece=2.5)
    assert (timeout.total, timeout.first_piece) == (30.0, 2.5)
    assert timeout.read == 5.0


def test_only_the_number_is_positional() -> None:
    with pytest.raises(TypeError):
        Timeout(5, 6)  # type: ignore[misc]


# -- Timeout.of -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, 2.5, 0.001, 10**6])
def test_of_a_number(value: float) -> None:
    assert Timeout.of(value) == Timeout(value)
    assert Timeout.of(value).read == float(value)
    assert Timeout.of(value).total is None


def test_of_none() -> None:
    assert Timeout.of(None) == Timeout(None)
    assert Timeout.of(None).as_dict() == dict.fromkeys(FIELDS)


def test_of_a_timeout_is_the_same_object() -> None:
    timeout = Timeout(3, total=9)
    assert Timeout.of(timeout) is timeout


def test_of_an_httpx_timeout() -> None:
    timeout = Timeout.of(httpx.Timeout(3.0, connect=1.0, pool=None))
    assert timeout.as_dict() == {
        "connect": 1.0,
        "read": 3.0,
        "write": 3.0,
        "pool": None,
        "total": None,
        "first_piece": None,
    }
    assert Timeout.of(httpx.Timeout(None)) == Timeout(None)
    assert Timeout.of(httpx.Timeout(5)) == Timeout(5)


def test_of_a_bad_httpx_timeout() -> None:
    with pytest.raises(InvalidRequestError) as info:
        Timeout.of(httpx.Timeout(-1.0))
    assert info.value.field == "timeout.connect"


@pytest.mark.parametrize(
    "value",
    [True, False, "10", b"1", Ellipsis, [1], {"read": 1}, object()],
    ids=lambda value: type(value).__name__ if type(value) is object else repr(value),
)
def test_of_a_wrong_type(value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Timeout.of(value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert info.value.field == "timeout"
    assert type(value).__name__ in str(info.value)


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, math.inf, -math.inf], ids=repr)
def test_of_a_bad_number(value: float) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Timeout.of(value)
    assert info.value.field == "timeout"  # the argument given, not a limit it would set
    assert str(info.value).startswith("timeout must be a positive number of seconds or None")


# -- Timeout: bad values name the field -------------------------------------------------------


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("value", [0, 0.0, -3, math.nan, math.inf, "5", True, b"5", [5]], ids=repr)
def test_bad_value_names_the_field(name: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Timeout(**{name: value})  # type: ignore[arg-type]
    assert info.value.field == f"timeout.{name}"
    assert name in str(info.value)
    assert repr(value) in str(info.value)


def test_bad_positional_number_names_the_argument() -> None:
    # Issue 21: "timeout connect must be ..." for Client(timeout=-1) named a limit the
    # caller never wrote.
    for make in (lambda: Timeout(-1), lambda: Timeout(-1, connect=2)):
        with pytest.raises(InvalidRequestError) as info:
            make()
        assert info.value.field == "timeout"
        assert str(info.value) == "timeout must be a positive number of seconds or None, not -1"


def test_bad_positional_number_overridden_everywhere_is_not_checked() -> None:
    # The number only fills the operations not given: here it fills none.
    timeout = Timeout(-1, connect=1, read=2, write=3, pool=4)  # type: ignore[arg-type]
    assert [timeout.connect, timeout.read, timeout.write, timeout.pool] == [1, 2, 3, 4]


# -- Timeout: a value --------------------------------------------------------------------------


def test_immutable() -> None:
    timeout = Timeout(5)
    for name in FIELDS:
        with pytest.raises(AttributeError):
            setattr(timeout, name, 1.0)
    with pytest.raises(AttributeError):
        timeout.other = 1  # type: ignore[attr-defined]
    assert timeout == Timeout(5)


def test_fields_cannot_be_deleted() -> None:
    timeout = Timeout(5)
    with pytest.raises(AttributeError):
        del timeout.read
    assert timeout.read == 5.0


def test_equality() -> None:
    assert Timeout(5) == Timeout(connect=5, read=5, write=5, pool=5)
    assert Timeout(5) == Timeout(5.0)
    assert Timeout(5) != Timeout(5, total=1)
    assert Timeout(5) != Timeout(5, first_piece=1)
    assert Timeout(5) != Timeout(5, pool=None)
    assert Timeout() != Timeout(None)
    assert Timeout(5) != 5
    assert Timeout(5) != httpx.Timeout(5)  # not ours, even with the same four limits


def test_hash_agrees_with_equality() -> None:
    assert hash(Timeout(5)) == hash(Timeout(connect=5.0, read=5.0, write=5.0, pool=5.0))
    assert len({Timeout(5), Timeout(5.0), Timeout(5, total=1), Timeout(5, total=1.0)}) == 2
    assert {Timeout(): "a"}[Timeout(connect=10, read=60, write=30, pool=30)] == "a"


@pytest.mark.parametrize(
    "timeout", [Timeout(), Timeout(None), Timeout(2.5, total=30, first_piece=4, pool=None)]
)
def test_pickle_and_copy(timeout: Timeout) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(timeout, protocol))
        assert type(restored) is Timeout
        assert restored == timeout
        assert restored.as_dict() == timeout.as_dict()
    assert copy.copy(timeout) == timeout
    assert copy.deepcopy(timeout) == timeout


def test_copy_with() -> None:
    timeout = Timeout(5, total=30)
    changed = timeout.copy_with(total=60, read=None)
    assert changed.as_dict() == {**timeout.as_dict(), "total": 60.0, "read": None}
    assert timeout.total == 30.0  # the original is untouched
    assert timeout.read == 5.0
    assert timeout.copy_with() == timeout
    assert timeout.copy_with(first_piece=3).first_piece == 3.0


def test_copy_with_checks_what_it_is_given() -> None:
    with pytest.raises(InvalidRequestError, match="bogus"):
        Timeout().copy_with(bogus=1)
    with pytest.raises(InvalidRequestError) as info:
        Timeout().copy_with(read=-1)
    assert info.value.field == "timeout.read"


def test_repr_shows_every_limit() -> None:
    text = repr(Timeout(5, total=30))
    assert text.startswith("Timeout(")
    for part in ("connect=5.0", "read=5.0", "write=5.0", "pool=5.0", "total=30.0"):
        assert part in text
    assert "first_piece=None" in text


# -- TimeLimits: cap() --------------------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_cap_without_a_bound_is_the_operation_s_own_limit(operation: str) -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(), clock=clock)
    assert limits.cap(operation) == DEFAULTS[operation]
    clock.advance(10_000)  # no bound: time passing changes nothing
    assert limits.cap(operation) == DEFAULTS[operation]
    assert limits.bound() is None
    assert limits.remaining() is None
    assert not limits.expired()
    error = limits.timeout_error()
    assert error.limit == operation
    assert error.seconds == DEFAULTS[operation]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_cap_of_an_operation_without_a_limit(operation: str) -> None:
    assert TimeLimits(Timeout(None), clock=Clock()).cap(operation) is None


@pytest.mark.parametrize("operation", OPERATIONS)
def test_cap_under_a_total(operation: str) -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(5, total=12), clock=clock)
    assert limits.cap(operation) == 5.0  # the operation's limit is the nearer
    assert limits.timeout_error().limit == operation
    clock.advance(9.0)
    assert limits.cap(operation) == pytest.approx(3.0)  # the total is the nearer
    assert limits.timeout_error().limit == "total"
    assert limits.remaining() == pytest.approx(3.0)
    clock.advance(10.0)
    assert limits.cap(operation) == 0.0  # never below zero
    assert limits.remaining() == 0.0


def test_cap_under_a_total_when_the_operation_has_no_limit() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(None, total=10), clock=clock)
    clock.advance(4.0)
    assert limits.cap("read") == pytest.approx(6.0)
    assert limits.timeout_error().limit == "total"


def test_the_operation_binds_when_it_equals_what_is_left() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(5, total=10), clock=clock)
    clock.advance(5.0)
    assert limits.cap("read") == 5.0
    assert limits.timeout_error().limit == "read"  # the clock has not reached the bound


@pytest.mark.parametrize("operation", OPERATIONS)
def test_first_piece_armed_and_disarmed(operation: str) -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(60, first_piece=2), clock=clock)
    assert limits.cap(operation) == 60.0  # not armed: no effect
    assert limits.bound() is None
    limits.arm_first_piece()
    assert limits.cap(operation) == 2.0
    assert limits.timeout_error().limit == "first_piece"
    clock.advance(1.5)
    assert limits.cap(operation) == pytest.approx(0.5)
    assert limits.bound() == pytest.approx(0.5)
    assert limits.remaining() is None  # first_piece is not the whole-call bound
    assert not limits.expired()
    limits.disarm_first_piece()
    assert limits.cap(operation) == 60.0
    assert limits.timeout_error().limit == operation
    assert limits.bound() is None


def test_first_piece_off_arming_does_nothing() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(7), clock=clock)
    limits.arm_first_piece()
    clock.advance(100.0)
    assert limits.cap("read") == 7.0
    assert limits.bound() is None
    limits.disarm_first_piece()
    assert limits.cap("read") == 7.0


def test_each_arming_starts_a_fresh_first_piece_window() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(60, first_piece=2), clock=clock)
    limits.arm_first_piece()
    clock.advance(1.0)
    limits.disarm_first_piece()
    clock.advance(30.0)
    limits.arm_first_piece()  # the next attempt's request went out
    assert limits.cap("read") == 2.0
    clock.advance(1.0)
    limits.arm_first_piece()  # armed again before any piece: the window restarts
    assert limits.cap("read") == 2.0


def test_first_piece_and_total_the_nearer_binds() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(60, total=10, first_piece=3), clock=clock)
    clock.advance(1.0)
    limits.arm_first_piece()  # first piece due at +4, total at +10
    clock.advance(1.0)
    assert limits.cap("read") == pytest.approx(2.0)
    assert limits.timeout_error().limit == "first_piece"
    limits.disarm_first_piece()
    assert limits.cap("read") == pytest.approx(8.0)
    assert limits.timeout_error().limit == "total"
    clock.advance(6.0)  # at +8: the total is 2 s away, nearer than a new first-piece window
    limits.arm_first_piece()
    assert limits.cap("read") == pytest.approx(2.0)
    assert limits.timeout_error().limit == "total"
    assert limits.bound() == pytest.approx(2.0)


def test_remaining_and_expired() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(total=10), clock=clock)
    assert limits.started == 1000.0
    assert limits.remaining() == 10.0
    assert not limits.expired()
    clock.advance(9.999)
    assert not limits.expired()
    clock.advance(0.001)
    assert limits.expired()  # at the bound exactly
    assert limits.remaining() == 0.0
    clock.advance(50.0)
    assert limits.expired()
    assert limits.remaining() == 0.0


def test_bound_without_first_piece_is_the_total() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(1, total=10), clock=clock)
    clock.advance(3.0)
    assert limits.bound() == pytest.approx(7.0)
    limits.cap("read")  # the operation binds this wait...
    assert limits.timeout_error().limit == "read"
    limits.bound()  # ...and bound() sizes a wait by the bound
    assert limits.timeout_error().limit == "total"


# -- TimeLimits: timeout_error() ---------------------------------------------------------------


def _fired(limit: str, seconds: float) -> APITimeoutError:
    """The error for ``limit`` (set to ``seconds``) after a wait it sized ran out."""
    clock = Clock()
    if limit in OPERATIONS:
        limits = TimeLimits(Timeout(**{limit: seconds}), clock=clock)
        limits.cap(limit)
    elif limit == "total":
        limits = TimeLimits(Timeout(None, total=seconds), clock=clock)
        limits.cap("read")
    else:
        limits = TimeLimits(Timeout(None, first_piece=seconds), clock=clock)
        limits.arm_first_piece()
        limits.cap("read")
    clock.advance(seconds)
    return limits.timeout_error()


@pytest.mark.parametrize("limit", FIELDS)
@pytest.mark.parametrize(("seconds", "shown"), [(5, "5"), (0.25, "0.25"), (90.5, "90.5")])
def test_timeout_error_names_the_limit_and_its_value(
    limit: str, seconds: float, shown: str
) -> None:
    error = _fired(limit, seconds)
    assert isinstance(error, APITimeoutError)
    assert isinstance(error, APIConnectionError)  # retried like a dropped connection
    assert error.limit == limit
    assert error.seconds == seconds
    text = str(error)
    assert f"{limit.replace('_', ' ')} timeout" in text
    assert f"(Timeout.{limit}={shown})" in text
    assert f"{shown}s" in text
    lowered = text.lower()
    assert "peer" not in lowered
    assert "closed" not in lowered


def test_read_timeout_message() -> None:
    assert str(_fired("read", 5)) == "read timeout: no data for 5s (Timeout.read=5)"


def test_timeout_error_with_what_was_going_on() -> None:
    limits = TimeLimits(Timeout(total=3), clock=Clock())
    error = limits.timeout_error("waiting for another call's token fetch", "total")
    assert str(error).startswith("waiting for another call's token fetch: total timeout")
    assert error.limit == "total"
    assert error.seconds == 3.0


def test_an_operation_that_runs_out_with_the_bound_is_reported_as_the_bound() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(5, total=5), clock=clock)
    assert limits.cap("read") == 5.0
    assert limits.timeout_error().limit == "read"
    clock.advance(5.0)  # the read limit and the total ran out together
    error = limits.timeout_error()
    assert error.limit == "total"
    assert error.seconds == 5.0


def test_an_operation_that_runs_out_with_the_first_piece_window() -> None:
    clock = Clock()
    limits = TimeLimits(Timeout(2, first_piece=2), clock=clock)
    limits.arm_first_piece()
    assert limits.cap("read") == 2.0
    clock.advance(2.0)
    assert limits.timeout_error().limit == "first_piece"


def test_timeout_error_is_a_fresh_error_each_time() -> None:
    limits = TimeLimits(Timeout(), clock=Clock())
    limits.cap("connect")
    first, second = limits.timeout_error(), limits.timeout_error()
    assert first is not second
    assert str(first) == str(second)
    assert first.limit == "connect"
