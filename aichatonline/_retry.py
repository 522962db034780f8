"""Carrying out the retry policy with tenacity, for the sync and the async client.

The decisions (what to retry, how long to wait) are the core's
:class:`~aichatonline._core.RetryPolicy`; tenacity counts attempts, applies
the stop conditions (``max_retries`` and the whole-call deadline), logs, and
sleeps. Every call gets a fresh ``Retrying`` / ``AsyncRetrying``: their state
is per call and they are not safe to share between tasks.

A streamed attempt yields text while it runs, so it cannot sit inside
tenacity's ``with attempt:`` block (a consumer's ``break`` would arrive there
as ``GeneratorExit``). :class:`Attempts` therefore drives tenacity's decision
step by hand: the caller runs an attempt, and on failure asks ``wait(exc)``
whether to go again. The async twin sleeps through anyio, so trio works.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

import anyio

from ._core import Deadline, RetryPolicy
from ._exceptions import APIError

if TYPE_CHECKING:  # tenacity is imported at the first failure: most calls never fail
    import tenacity

__all__ = ["AsyncAttempts", "Attempts"]

logger = logging.getLogger("aichatonline")


def _settings(policy: RetryPolicy, deadline: Deadline, what: str) -> dict[str, Any]:
    """The tenacity arguments both twins share."""

    def retry(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        return exc is not None and policy.should_retry(exc)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return policy.delay(state.attempt_number, exc, random.random())

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number > policy.max_retries:
            return True
        # Stop, too, when the pause before the next attempt would reach the deadline.
        left = deadline.remaining()
        return left is not None and left <= state.upcoming_sleep

    def log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.info(
            "retrying %s in %.2fs after %s: %s (attempt %d of %d)",
            what,
            state.upcoming_sleep,
            type(exc).__name__,
            exc,
            state.attempt_number + 1,
            policy.max_retries + 1,
        )

    return {"retry": retry, "wait": wait, "stop": stop, "before_sleep": log, "reraise": True}


class Attempts:
    """The attempts of one sync call: ``if not attempts.wait(exc): raise``.

    The tenacity object is made at the first failure: most calls never fail,
    and they should not pay for it.
    """

    def __init__(self, policy: RetryPolicy, deadline: Deadline, what: str) -> None:
        self._settings = (policy, deadline, what)
        self._retrying: tenacity.Retrying | None = None
        self._state: tenacity.RetryCallState | None = None

    def wait(self, exc: APIError) -> bool:
        """Record a failed attempt. Sleep and return True to go again; False to give up."""
        import tenacity

        if self._retrying is None or self._state is None:
            self._retrying = tenacity.Retrying(sleep=time.sleep, **_settings(*self._settings))
            self._retrying.begin()
            self._state = tenacity.RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        self._state.set_exception((type(exc), exc, exc.__traceback__))
        try:
            action = self._retrying.iter(self._state)
        except APIError:  # tenacity re-raises the attempt's own error when it gives up
            return False
        if not isinstance(action, tenacity.DoSleep):
            return False
        self._state.prepare_for_next_attempt()
        time.sleep(action)
        return True


class AsyncAttempts:
    """The attempts of one async call: ``if not await attempts.wait(exc): raise``.

    The tenacity object is made at the first failure: most calls never fail,
    and they should not pay for it.
    """

    def __init__(self, policy: RetryPolicy, deadline: Deadline, what: str) -> None:
        self._settings = (policy, deadline, what)
        self._retrying: tenacity.AsyncRetrying | None = None
        self._state: tenacity.RetryCallState | None = None

    async def wait(self, exc: APIError) -> bool:
        """Record a failed attempt. Sleep and return True to go again; False to give up."""
        import tenacity

        if self._retrying is None or self._state is None:
            self._retrying = tenacity.AsyncRetrying(sleep=anyio.sleep, **_settings(*self._settings))
            self._retrying.begin()
            self._state = tenacity.RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        self._state.set_exception((type(exc), exc, exc.__traceback__))
        try:
            action = await self._retrying.iter(self._state)
        except APIError:  # tenacity re-raises the attempt's own error when it gives up
            return False
        if not isinstance(action, tenacity.DoSleep):
            return False
        self._state.prepare_for_next_attempt()
        await anyio.sleep(action)  # through anyio, so trio works too
        return True
