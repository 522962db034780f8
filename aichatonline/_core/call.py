"""One chat call as a state machine: events in, actions out. No I/O.

Theory of operation
-------------------
Everything that decides what a call does next lives in :class:`Call`, as h11 keeps
"everything that affects the state machine" in one class. The call is always in one
:class:`CallState`, which gives the action; the I/O layer (``_async`` and its generated
sync twin) runs a short loop that only does I/O and reports each outcome as an event::

    state          action        the I/O layer does, then reports
    NEEDS_TOKEN    FETCH_TOKEN   get the client's token -> token_ready(t) / token_failed(e)
    SENDING        Send          the request goes out   -> sent()
    AWAITING_HEAD  READ_HEAD     its head comes back    -> response_head(status, headers)
    READING_BODY   READ_BODY     read body bytes        -> receive(data): pieces for the
                                                           caller; at the end end_of_body()
    READING_ERROR  READ_ERROR    read a refusal's start -> error_body(body)
    BACKING_OFF    Sleep         wait action.seconds    -> slept()
    COMPLETE       COMPLETE      nothing: the answer is complete
    FAILED         Raise         raise action.error
    any state but the last two: an I/O step or a wait failed -> failed(exc); the caller's
    client closed -> stop(exc)

``_TAKES`` is the one table of which state takes which event. An event in any other state
is a bug of the loop and raises :class:`~aichatonline._core.actions.EventOrderError`.
A failure of the service (a refusal, an unreadable answer, an in-band error, a resumed
answer that differs) never raises out of an event: the event moves the call on, to
``BACKING_OFF`` (a retry), ``NEEDS_TOKEN`` or ``SENDING`` (a token rule) or ``FAILED``.

The rules the call holds (``docs/protocol.md``):

- The token comes from the client's :class:`~aichatonline._core.token_cache.TokenCache`,
  with its generation. A 401/403 on a token that is no longer the newest (another call
  replaced it, or dropped it after its own 401) is simply sent again with the newest,
  or, when there is none, after a fetch: no refresh spent, no back-off, not counted as a
  retry (so a burst of revocations, each seen by every call in flight, fails none of
  them). A 401/403 on the newest token drops it and fetches a new one: that is the
  call's one refresh, and a second rejection of the newest token is final. A call takes
  at most ``STALE_RESENDS`` free resends without progress (a call that delivers new text
  gets a fresh allowance), after which a rejection counts as if the token were the
  newest: no call bounces between tokens forever. A failed token fetch is final too: it
  was retried on its own by a :class:`~aichatonline._core.token_fetch.TokenFetch`.
- Retries: one :class:`~aichatonline._core.retries.Attempts` (tenacity) per call. An
  attempt that delivered new text earns a fresh budget; the whole-call bound is never
  slept into.
- Resume: the :class:`~aichatonline._core.transcript.Transcript` skips, on a re-sent
  request, the text the caller already has; a new answer that differs ends the call
  with ``StreamInterrupted``.
- A 200 answer in which no line could be read (an HTML page, an empty body, a coding we
  did not ask for) is a ``ProtocolError``, retried once.
- Errors keep the order of the stream: the pieces before an in-band error line are handed
  out first, and the call fails with that error as it hands them out.
- Any failure that ends the call after text was delivered is ``StreamInterrupted``
  carrying exactly that text, the failure as its cause.
- Time: :class:`~aichatonline._core.timeouts.TimeLimits` holds the whole-call bound from
  the start, and the first-piece bound from each chat request sent to its first piece.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any, ClassVar

from .._exceptions import APIError, AuthenticationError, ProtocolError, StreamInterrupted
from .actions import (
    COMPLETE,
    FETCH_TOKEN,
    READ_BODY,
    READ_ERROR,
    READ_HEAD,
    Raise,
    Send,
    Sleep,
    StateMachine,
)
from .codings import check_content_encoding
from .decoder import DEFAULT_MAX_LINE_BYTES, StreamDecoder
from .request import ChatRequest, Request
from .retries import Attempts, RetryPolicy
from .statuses import status_error
from .timeouts import TimeLimits, Timeout
from .token_cache import TokenCache
from .transcript import Transcript

__all__ = ["STALE_RESENDS", "Call", "CallState"]


#: How many times a call sends again, free, a request whose token another call had
#: replaced meanwhile, between two stretches of progress.
STALE_RESENDS = 8


class CallState(Enum):
    """Where a chat call is (each state gives one action: see the module docstring)."""

    NEEDS_TOKEN = "needs a token"
    SENDING = "sending the request"
    AWAITING_HEAD = "awaiting the response head"
    READING_BODY = "reading the answer"
    READING_ERROR = "reading a refusal"
    BACKING_OFF = "backing off before the next attempt"
    COMPLETE = "complete"
    FAILED = "failed"


_OVER = frozenset({CallState.COMPLETE, CallState.FAILED})
_UNDER_WAY = frozenset(CallState) - _OVER


def forget_tracebacks(exc: BaseException) -> None:
    """Drop the tracebacks of a failure that will be retried, and of the errors chained to it.

    A traceback holds its frames, and a frame the exception in its locals (``except ... as
    exc``; ``raise error``): a cycle, which keeps the failed attempt's response and buffers
    alive until CPython's next full collection, so a long run of retries grows the heap. The
    message and the chain of causes stay; the final error, raised to the caller, keeps its
    traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


class Call(StateMachine[CallState]):
    """The state of one chat call: token, attempts, decoder, transcript, time limits.

    ``resume`` true (``stream()``): a dropped answer is resumed where the caller is;
    false (``complete()``): it starts over. ``keep_text`` false: the transcript keeps only
    the delivered text's length and hash, not the text (see
    :class:`~aichatonline._core.transcript.Transcript`). ``strict``, ``max_line_bytes`` and
    ``json_loads`` configure each attempt's :class:`StreamDecoder`.
    """

    #: The states that take each event (any other: ``EventOrderError``).
    _TAKES: ClassVar[Mapping[str, frozenset[CallState]]] = MappingProxyType(
        {
            "token_ready": frozenset({CallState.NEEDS_TOKEN}),
            "token_failed": frozenset({CallState.NEEDS_TOKEN}),
            "sent": frozenset({CallState.SENDING}),
            "response_head": frozenset({CallState.AWAITING_HEAD}),
            "receive": frozenset({CallState.READING_BODY}),
            "end_of_body": frozenset({CallState.READING_BODY}),
            "error_body": frozenset({CallState.READING_ERROR}),
            "slept": frozenset({CallState.BACKING_OFF}),
            "failed": _UNDER_WAY,
            "stop": _UNDER_WAY,
        }
    )

    __slots__ = (
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
        super().__init__(CallState.NEEDS_TOKEN, FETCH_TOKEN)
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
        token = tokens.token
        if token is not None:
            self._send_with(token)

    # -- what the caller sees ---------------------------------------------------------

    @property
    def over(self) -> bool:
        """Whether the call has ended (``COMPLETE`` or ``FAILED``)."""
        return self._state in _OVER

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

    # -- events in ----------------------------------------------------------------------

    def token_ready(self, token: str) -> None:
        """The client's token is ``token`` (the cache's, just read or fetched): send the
        chat request with it."""
        self._expect("token_ready")
        self._send_with(token)

    def token_failed(self, exc: APIError) -> None:
        """Getting a token failed (its fetch was retried on its own): the call fails."""
        self._expect("token_failed")
        self._end(exc)

    def sent(self) -> None:
        """The chat request is going out: the first-piece bound starts."""
        self._expect("sent")
        self.limits.arm_first_piece()
        self._to(CallState.AWAITING_HEAD, READ_HEAD)

    def response_head(self, status: int, headers: Mapping[str, str]) -> None:
        """The response head arrived (``headers`` with lower-case names)."""
        self._expect("response_head")
        self.headers = headers
        self._status = status
        if not 200 <= status < 300:
            self._to(CallState.READING_ERROR, READ_ERROR)
            return
        try:
            check_content_encoding(headers.get("content-encoding"))
        except ProtocolError as exc:  # an encoding we did not ask for: unreadable
            self._fail(self._unreadable_error(str(exc)))
            return
        strict, max_line_bytes, json_loads = self._decoder_options
        self._decoder = StreamDecoder(
            strict=strict,
            max_line_bytes=max_line_bytes,
            json_loads=json_loads,
            secrets=self.secrets,
        )
        self.transcript.begin_attempt()
        self._to(CallState.READING_BODY, READ_BODY)

    def error_body(self, body: bytes) -> None:
        """The start of a refused response's body: the status becomes a typed error."""
        self._expect("error_body")
        assert self.headers is not None
        self._fail(
            status_error(
                self._status, self.headers, body, request=self._request, secrets=self._secrets
            )
        )

    def receive(self, data: bytes) -> list[str]:
        """Body bytes (content-decoded) arrived: the pieces to hand to the caller now.

        When the bytes hold an error (an in-band error line, an unreadable line in strict
        mode, a line over the bound), the pieces before it come back and the call has
        failed: the next action says what follows.
        """
        self._expect("receive")
        decoder = self._decoder
        assert decoder is not None
        try:
            pieces = decoder.feed(data)
        except APIError as exc:  # held from the bytes before, or a line over the bound
            self._fail(exc)
            return []
        if pieces:
            self.limits.disarm_first_piece()
            pieces = self._deliver(pieces)
        if decoder.error is not None and self._state is CallState.READING_BODY:
            self._fail(decoder.error)  # after these pieces, in the stream's order
        return pieces

    def end_of_body(self) -> list[str]:
        """The body ended: the last pieces; the call is complete, or the attempt failed."""
        self._expect("end_of_body")
        decoder = self._decoder
        assert decoder is not None
        try:
            pieces = decoder.finish()
        except APIError as exc:  # an error after the last piece, with no piece before it
            self._fail(exc)
            return []
        error = decoder.error  # an error after the last pieces: they go out first
        if decoder.readable == 0 and error is None:
            self._fail(self._unreadable(decoder))
            return []
        pieces = self._deliver(pieces)
        if self._state is not CallState.READING_BODY:
            return pieces
        if error is not None:
            self._fail(error)
            return pieces
        try:
            self.transcript.end_attempt()
        except StreamInterrupted as exc:  # a resumed answer that ended too early
            self._fail(exc)
            return pieces
        self._to(CallState.COMPLETE, COMPLETE)
        return pieces

    def failed(self, exc: APIError) -> None:
        """An I/O step (or a wait) failed with ``exc``: retry (after a Sleep), send again
        with another token, refresh the token, or Raise."""
        self._expect("failed")
        self._fail(exc)

    def stop(self, exc: APIError) -> None:
        """End the call with ``exc`` now, no retry (the client was closed, say)."""
        self._expect("stop")
        self._end(exc)

    def slept(self) -> None:
        """The back-off is over: the next attempt, with the newest token."""
        self._expect("slept")
        self._send_with_newest()

    # -- transitions --------------------------------------------------------------------

    def _send_with(self, token: str) -> None:
        current, generation = self.tokens.current
        # Replaced already (another thread's refresh came in between): outdated at once.
        self._generation = generation if current == token else -1
        self._token = token
        self._request = self.chat.request(token)
        self._to(CallState.SENDING, Send(self._request))

    def _send_with_newest(self) -> None:
        token = self.tokens.token
        if token is None:
            self._token = None
            self._to(CallState.NEEDS_TOKEN, FETCH_TOKEN)
        else:
            self._send_with(token)

    def _deliver(self, pieces: list[str]) -> list[str]:
        """The pieces for the caller, through the transcript (``[]`` and failed when a
        resumed answer differs from the text already delivered)."""
        try:
            return self.transcript.deliver(pieces)
        except StreamInterrupted as exc:
            self._fail(exc)
            return []

    def _fail(self, exc: APIError) -> None:
        self._end_attempt()
        token = self._token
        if isinstance(exc, AuthenticationError) and token is not None and self._rejected(token):
            self.transcript.failure(exc)
            forget_tracebacks(exc)
            return
        final = self.transcript.failure(exc)
        if self.transcript.length > self._best:
            # Progress, past anything an earlier attempt reached (complete() starts each
            # attempt over, so text alone is not progress): a fresh budget of retries.
            self._attempts.reset()
            self._stale_resends = 0
            self._best = self.transcript.length
        delay = self._attempts.failed(exc)
        if delay is None:
            self._to(CallState.FAILED, Raise(final))
        else:
            forget_tracebacks(exc)
            self._to(CallState.BACKING_OFF, Sleep(delay))

    def _end(self, exc: APIError) -> None:
        self._end_attempt()
        self._to(CallState.FAILED, Raise(self.transcript.failure(exc)))

    def _rejected(self, token: str) -> bool:
        """The service refused ``token``: move on and say True, or say False when the
        rejection is final."""
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
        self._to(CallState.NEEDS_TOKEN, FETCH_TOKEN)
        return True

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
