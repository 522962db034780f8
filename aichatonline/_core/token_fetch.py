"""One fetch of the unique id (the token) as a state machine: events in, actions out. No I/O.

The I/O layer carries out a :class:`TokenFetch` as it does a chat
:class:`~aichatonline._core.call.Call`: ``Send`` the request, hand the whole response
(its body cut at a bound) to :meth:`TokenFetch.response`, ``Sleep`` the back-off, until
``Fetched`` (the token) or ``Raise``. The fetch has its own retries (its own
:class:`~aichatonline._core.retries.Attempts`), within the time limits of the call that
needed it; each attempt asks with a fresh ``canvas``, as the original did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .._exceptions import APIError, ProtocolError
from .call import Action, Fetched, Raise, Send, Sleep
from .headers import is_header_token
from .prompt import get_random_string
from .request import Request
from .retries import Attempts, RetryPolicy
from .statuses import body_preview, status_error
from .timeouts import TimeLimits

__all__ = ["TOKEN_PATH", "TokenFetch", "parse_token", "token_request"]

TOKEN_PATH = "/api/v1/user/getUniqueId"


def token_request(base_url: str, headers: Mapping[str, str]) -> Request:
    """``GET {base}/api/v1/user/getUniqueId?canvas=-<10 chars>``: ask for a unique id."""
    url = f"{base_url}{TOKEN_PATH}?canvas=-{get_random_string(10)}"
    return Request("GET", url, headers)


def parse_token(body: bytes) -> str:
    """The unique id from a 200 token response; a :class:`ProtocolError` if it has none."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(
            f"the token response is not JSON: {body_preview(body)}", retryable=True
        ) from exc
    token = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise ProtocolError(
            "the token response has no non-empty string 'data' field", retryable=True
        )
    if not is_header_token(token):
        raise ProtocolError(
            "the token response's 'data' cannot be sent as a header value", retryable=True
        )
    return token


class TokenFetch:
    """One fetch of a unique id, with its own retries: ``Send`` until ``Fetched`` or ``Raise``."""

    __slots__ = ("_action", "_attempts", "_base_url", "_headers", "_request", "_secrets", "limits")

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        policy: RetryPolicy,
        limits: TimeLimits,
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
                self._action = Fetched(parse_token(body))
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
