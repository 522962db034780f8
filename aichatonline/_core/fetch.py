"""One fetch of the unique id (the token) as a state machine: events in, actions out. No I/O.

The I/O layer carries out a :class:`TokenFetch` as it does a chat
:class:`~aichatonline._core.call.Call`: ``Send`` the request, hand the whole response
(its body cut at a bound) to :meth:`TokenFetch.response`, ``Sleep`` the back-off, until
``Done`` (the token) or ``Raise``. The fetch has its own retries (its own
:class:`~aichatonline._core.retries.Attempts`), within the time limits of the call that
needed it; each attempt asks with a fresh ``canvas``, as the original did.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._exceptions import APIError, ProtocolError
from .call import Action, Done, Raise, Send, Sleep
from .retries import Attempts, RetryPolicy
from .timeouts import Limits
from .wire import parse_token, status_error, token_request

__all__ = ["TokenFetch"]


class TokenFetch:
    """One fetch of a unique id, with its own retries: ``Send`` until ``Done`` or ``Raise``."""

    __slots__ = ("_action", "_attempts", "_base_url", "_headers", "_request", "_secrets", "limits")

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        policy: RetryPolicy,
        limits: Limits,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._base_url = base_url
        self._secrets = secrets  # the proxy's credentials: a proxy may echo them
        self._headers = headers
        self.limits = limits
        self._attempts = Attempts(policy, limits, "the token fetch")
        self._request = token_request(base_url, headers)
        self._action: Action = Send(self._request)

    def next_action(self) -> Action:
        """What the I/O layer should do now."""
        return self._action

    def response(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """The whole response (its body cut at a bound) arrived."""
        if 200 <= status < 300:
            try:
                self._action = Done(parse_token(body))
            except ProtocolError as exc:
                self.failed(exc)
        else:
            self.failed(
                status_error(status, headers, body, request=self._request, secrets=self._secrets)
            )

    def failed(self, exc: APIError) -> None:
        """The attempt failed: Sleep and try again, or Raise."""
        delay = self._attempts.failed(exc)
        self._action = Raise(exc) if delay is None else Sleep(delay)

    def slept(self) -> None:
        """The back-off is over: ask again (a fresh ``canvas``, as the original did)."""
        self._request = token_request(self._base_url, self._headers)
        self._action = Send(self._request)
