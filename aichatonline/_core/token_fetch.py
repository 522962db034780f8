"""Asking for the unique id (the token), and one fetch of it as a state machine. No I/O.

:func:`token_request` is the request, :func:`parse_token` reads the token from a 200
answer. The I/O layer carries out a :class:`TokenFetch` as it does a chat
:class:`~aichatonline._core.call.Call`: ``Send`` the request, hand the whole response
(its body cut at a bound) to :meth:`TokenFetch.response`, ``Sleep`` the back-off, until
``Fetched`` (the token) or ``Raise``. The fetch is always in one :class:`FetchState`; an
event in a state that does not take it raises ``EventOrderError``. The fetch has its own
retries (its own :class:`~aichatonline._core.retries.Attempts`), within the time limits of
the call that needed it; each attempt asks with a fresh ``canvas``, as the original did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import ClassVar

from .._exceptions import APIError, ProtocolError
from .actions import Fetched, Raise, Send, Sleep, StateMachine
from .headers import is_header_token
from .prompt import get_random_string
from .request import Request
from .retries import Attempts, RetryPolicy
from .statuses import body_preview, status_error
from .timeouts import TimeLimits

__all__ = ["TOKEN_PATH", "FetchState", "TokenFetch", "parse_token", "token_request"]

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


class FetchState(Enum):
    """Where a token fetch is."""

    SENDING = "sending the request"  # action Send: the whole response -> response()
    BACKING_OFF = "backing off before the next attempt"  # action Sleep -> slept()
    FETCHED = "fetched"  # action Fetched(token)
    FAILED = "failed"  # action Raise(error)


class TokenFetch(StateMachine[FetchState]):
    """One fetch of a unique id, with its own retries: ``Send`` until ``Fetched`` or ``Raise``."""

    #: The states that take each event (any other: ``EventOrderError``).
    _TAKES: ClassVar[Mapping[str, frozenset[FetchState]]] = MappingProxyType(
        {
            "response": frozenset({FetchState.SENDING}),
            "failed": frozenset({FetchState.SENDING}),
            "slept": frozenset({FetchState.BACKING_OFF}),
        }
    )

    __slots__ = ("_attempts", "_base_url", "_headers", "_request", "_secrets", "limits")

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
        super().__init__(FetchState.SENDING, Send(self._request))

    def response(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """The whole response (its body cut at a bound) arrived."""
        self._expect("response")
        if not 200 <= status < 300:
            error = status_error(
                status, headers, body, request=self._request, secrets=self._secrets
            )
            self._fail(error)
            return
        try:
            token = parse_token(body)
        except ProtocolError as exc:
            self._fail(exc)
            return
        self._to(FetchState.FETCHED, Fetched(token))

    def failed(self, exc: APIError) -> None:
        """The request failed (no response): Sleep and try again, or Raise."""
        self._expect("failed")
        self._fail(exc)

    def slept(self) -> None:
        """The back-off is over: ask again (a fresh ``canvas``, as the original did)."""
        self._expect("slept")
        self._request = token_request(self._base_url, self._headers)
        self._to(FetchState.SENDING, Send(self._request))

    def _fail(self, exc: APIError) -> None:
        delay = self._attempts.failed(exc)
        if delay is None:
            self._to(FetchState.FAILED, Raise(exc))
        else:
            self._to(FetchState.BACKING_OFF, Sleep(delay))
