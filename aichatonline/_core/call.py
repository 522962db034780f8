"""One chat call as a state machine: events in, actions out. No I/O.

Theory of operation
-------------------
Everything that decides what a call does next lives in :class:`Call`, as h11 keeps
"everything that affects the state machine" in one class. The I/O layer (``_async`` and
its generated sync twin) runs a short loop that only does I/O::

    action = call.next_action()
    FETCH_TOKEN  get the client's token (cached, or fetched once for every waiting call)
                 -> call.token_ready(token)
    Send         send action.request -> call.sent(); its response head comes back
                 -> call.response_head(status, headers)
    READ_BODY    read the next body bytes -> call.receive(data) gives the caller's pieces;
                 at the end of the body -> call.end_of_body() gives the last ones
    READ_ERROR   read the start of a refused response's body -> call.error_body(body)
    Sleep        wait action.seconds (the back-off) -> call.slept()
    Raise        raise action.error
    COMPLETE         the answer is complete
    any I/O step that fails -> call.failed(exc), and the loop asks again

The rules the call holds (PROTOCOL.md and ``docs/protocol.md``):

- The token comes from the client's :class:`~aichatonline._core.session.TokenCache`,
  with its generation. A 401/403 on a token that is no longer the newest (another call
  replaced it, or dropped it after its own 401) is simply sent again with the newest,
  or, when there is none, after a fetch: no refresh spent, no back-off, not counted as a
  retry (so a burst of revocations, each seen by every call in flight, fails none of
  them). A 401/403 on the newest token drops it and fetches a new one: that is the
  call's one refresh, and a second rejection of the newest token is final. A call takes
  at most ``STALE_RESENDS`` free resends without progress (a call that delivers new text
  gets a fresh allowance), after which a rejection counts as if the token were the
  newest: no call bounces between tokens forever. A failed token fetch is final too: it
  was retried on its own by a :class:`~aichatonline._core.fetch.TokenFetch`.
- Retries: one :class:`~aichatonline._core.retries.Attempts` (tenacity) per call. An
  attempt that delivered new text earns a fresh budget; the whole-call bound is never
  slept into.
- Resume: the :class:`~aichatonline._core.resume.Transcript` skips, on a re-sent
  request, the text the caller already has, or raises ``StreamInterrupted`` when the new
  answer differs.
- A 200 answer in which no line could be read (an HTML page, an empty body) is a
  ``ProtocolError``, retried once.
- Any failure that ends the call after text was delivered is ``StreamInterrupted``
  carrying exactly that text, the failure as its cause.
- Time: :class:`~aichatonline._core.timeouts.Limits` holds the whole-call bound from the
  start, and the first-piece bound from each chat request sent to its first piece.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._exceptions import APIError, AuthenticationError, ProtocolError
from .codings import check_content_encoding
from .decoder import DEFAULT_MAX_LINE_BYTES, StreamDecoder
from .request import ChatRequest, Request
from .retries import Attempts, RetryPolicy
from .statuses import status_error
from .timeouts import TimeLimits, Timeout
from .token_cache import TokenCache
from .transcript import Transcript

__all__ = [
    "COMPLETE",
    "FETCH_TOKEN",
    "READ_BODY",
    "READ_ERROR",
    "STALE_RESENDS",
    "Action",
    "Call",
    "Fetched",
    "Raise",
    "Send",
    "Sleep",
]


#: How many times a call sends again, free, a request whose token another call had
#: replaced meanwhile, between two stretches of progress.
STALE_RESENDS = 8


class Action:
    """What the I/O layer should do next."""

    __slots__ = ()


class _Named(Action):
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


FETCH_TOKEN: Final = _Named("FETCH_TOKEN")
READ_BODY: Final = _Named("READ_BODY")
READ_ERROR: Final = _Named("READ_ERROR")
COMPLETE: Final = _Named("COMPLETE")


class Send(Action):
    """Send ``request``."""

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
    """The call failed: raise ``error``."""

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


class Call:
    """The state of one chat call: token, attempts, decoder, transcript, time limits.

    ``resume`` true (``stream()``): a dropped answer is resumed where the caller is;
    false (``complete()``): it starts over. ``keep_text`` false: the transcript keeps only
    the delivered text's length and hash, not the text (see
    :class:`~aichatonline._core.resume.Transcript`). ``strict``, ``max_line_bytes`` and
    ``json_loads`` configure each attempt's :class:`StreamDecoder`.
    """

    __slots__ = (
        "_action",
        "_attempts",
        "_best",
        "_decoder",
        "_decoder_options",
        "_generation",
        "_refreshed",
        "_request",
        "_secrets",
        "_skipped_before",
        "_stale_resends",
        "_status",
        "_token",
        "_unreadable_retried",
        "chat",
        "headers",
        "limits",
        "policy",
        "tokens",
        "transcript",
    )

    def __init__(
        self,
        chat: ChatRequest,
        *,
        tokens: TokenCache,
        policy: RetryPolicy,
        timeout: Timeout,
        resume: bool,
        keep_text: bool = True,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        json_loads: Callable[[bytes], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.chat = chat
        self._secrets = secrets  # the proxy's credentials: a proxy may echo them
        self.tokens = tokens
        #: The retry policy of this call (its token fetch, if it needs one, follows it too).
        self.policy = policy
        self.limits = TimeLimits(timeout, clock)
        self.transcript = Transcript(resume=resume, keep_text=keep_text)
        #: The response headers of the last attempt (lower-case names), once one came.
        self.headers: Mapping[str, str] | None = None
        self._attempts = Attempts(policy, self.limits, "the chat request")
        self._decoder_options = (strict, max_line_bytes, json_loads)
        self._decoder: StreamDecoder | None = None
        self._token: str | None = None
        self._generation = -1  # the generation of ``_token`` (-1: already outdated)
        self._stale_resends = 0  # free resends since the last progress
        self._request: Request | None = None
        self._status = 0
        self._refreshed = False
        self._unreadable_retried = False
        self._best = 0  # the most text any attempt had delivered when it failed
        self._skipped_before = 0  # anomalies of the attempts before this one
        self._action: Action = FETCH_TOKEN
        token = tokens.token
        if token is not None:
            self.token_ready(token)

    # -- what the caller sees ---------------------------------------------------------

    @property
    def retries(self) -> int:
        """How many retries the call took so far."""
        return self._attempts.retries

    @property
    def anomalies(self) -> int:
        """Unreadable lines skipped (and surrogate halves replaced), over every attempt."""
        current = self._decoder.anomalies if self._decoder is not None else 0
        return self._skipped_before + current

    @property
    def request(self) -> Request | None:
        """The chat request of the current attempt (``None`` before there is a token)."""
        return self._request

    @property
    def secrets(self) -> tuple[str, ...]:
        """What no message may repeat: the token in use, and the proxy's credentials."""
        return (self._token, *self._secrets) if self._token else self._secrets

    # -- events in, actions out -------------------------------------------------------

    def next_action(self) -> Action:
        """What the I/O layer should do now."""
        return self._action

    def token_ready(self, token: str) -> None:
        """The client's token is ``token`` (the cache's, just read or fetched): send the
        chat request with it."""
        current, generation = self.tokens.current
        # Replaced already (another thread's refresh came in between): outdated at once.
        self._generation = generation if current == token else -1
        self._token = token
        self._request = self.chat.request(token)
        self._action = Send(self._request)

    def token_failed(self, exc: APIError) -> None:
        """Getting a token failed (its fetch was retried on its own): the call fails."""
        self.stop(exc)

    def sent(self) -> None:
        """The chat request went out: the first-piece bound starts."""
        self.limits.arm_first_piece()

    def response_head(self, status: int, headers: Mapping[str, str]) -> None:
        """The response head arrived (``headers`` with lower-case names)."""
        self.headers = headers
        self._status = status
        if not 200 <= status < 300:
            self._action = READ_ERROR
            return
        try:
            check_content_encoding(headers.get("content-encoding"))
        except ProtocolError as exc:  # an encoding we did not ask for: unreadable
            raise self._unreadable_error(str(exc)) from None
        strict, max_line_bytes, json_loads = self._decoder_options
        self._decoder = StreamDecoder(
            strict=strict,
            max_line_bytes=max_line_bytes,
            json_loads=json_loads,
            secrets=self.secrets,
        )
        self.transcript.begin_attempt()
        self._action = READ_BODY

    def error_body(self, body: bytes) -> None:
        """The start of a refused response's body: the status becomes a typed error."""
        assert self.headers is not None
        self.failed(
            status_error(
                self._status, self.headers, body, request=self._request, secrets=self._secrets
            )
        )

    def receive(self, data: bytes) -> list[str]:
        """Body bytes (content-decoded) arrived: the pieces to hand to the caller now."""
        decoder = self._decoder
        assert decoder is not None
        pieces = decoder.feed(data)
        if not pieces:
            return pieces
        self.limits.disarm_first_piece()
        return self.transcript.deliver(pieces)

    def end_of_body(self) -> list[str]:
        """The body ended normally: the last pieces; the call is done."""
        decoder = self._decoder
        assert decoder is not None
        pieces = decoder.finish()
        error = decoder.error  # an error after the last pieces: they go out first
        if decoder.readable == 0 and error is None:
            raise self._unreadable(decoder)
        delivered = self.transcript.deliver(pieces)
        if error is not None:
            self.failed(error)
            return delivered
        self.transcript.end_attempt()  # a resumed answer that ended too early raises
        self._action = COMPLETE
        return delivered

    def failed(self, exc: APIError) -> None:
        """An I/O step failed with ``exc``: retry (after a Sleep), send again with another
        token, refresh the token, or Raise."""
        self._end_attempt()
        token = self._token
        if isinstance(exc, AuthenticationError) and token is not None and self._rejected(token):
            self.transcript.failure(exc)
            return
        final = self.transcript.failure(exc)
        if self.transcript.length > self._best:
            # Progress, past anything an earlier attempt reached (complete() starts each
            # attempt over, so text alone is not progress): a fresh budget of retries.
            self._attempts.reset()
            self._stale_resends = 0
            self._best = self.transcript.length
        delay = self._attempts.failed(exc)
        self._action = Raise(final) if delay is None else Sleep(delay)

    def stop(self, exc: APIError) -> None:
        """End the call with ``exc`` now, no retry (the client was closed, say)."""
        self._end_attempt()
        self._action = Raise(self.transcript.failure(exc))

    def slept(self) -> None:
        """The back-off is over: the next attempt, with the newest token."""
        self._send_with_newest()

    # -- internals --------------------------------------------------------------------

    def _rejected(self, token: str) -> bool:
        """The service refused ``token``: set the next action and say True, or say False
        when the rejection is final."""
        if (
            not self.tokens.is_current(token, self._generation)
            and self._stale_resends < STALE_RESENDS
        ):
            # Another call replaced or dropped it meanwhile: it was never this call's to
            # refresh. Sent again with the newest, within the allowance.
            self._stale_resends += 1
            self._send_with_newest()
            return True
        if self._refreshed:
            return False  # a second rejection of the newest token
        # The newest token expired or was revoked: this call's one refresh.
        self._refreshed = True
        self.tokens.forget(token, self._generation)
        self._token = None
        self._action = FETCH_TOKEN
        return True

    def _send_with_newest(self) -> None:
        token = self.tokens.token
        if token is None:
            self._token = None
            self._action = FETCH_TOKEN
        else:
            self.token_ready(token)

    def _end_attempt(self) -> None:
        self.limits.disarm_first_piece()  # each attempt gets its own window
        if self._decoder is not None:
            self._skipped_before += self._decoder.anomalies
            self._decoder = None

    def _unreadable(self, decoder: StreamDecoder) -> ProtocolError:
        skipped = f"{decoder.anomalies} unreadable lines" if decoder.anomalies else "no lines"
        return self._unreadable_error(
            f"the service answered {self._status} but no line of the body could be read "
            f"({skipped}; an HTML page, or an empty body?)"
        )

    def _unreadable_error(self, message: str) -> ProtocolError:
        # Like a dropped stream, worth one more attempt; not two.
        error = ProtocolError(message, retryable=not self._unreadable_retried)
        self._unreadable_retried = True
        return error
