"""The text of one chat call, and how it survives a dropped stream. No I/O.

Theory of operation
-------------------
A :class:`Transcript` sees every piece on its way to the caller and keeps the
text delivered so far. When a stream drops, the client re-sends the same
request (same ``conversationId`` and prompt) and passes the new answer through
:meth:`Transcript.deliver` again, which returns what the caller should get:

* ``resume=True`` (``stream()``): the new answer must start with the text
  already delivered. That prefix is skipped, piece by piece (a piece may end
  inside it); what follows is delivered. The caller never sees a piece twice.
  If the new answer differs from the delivered text, or ends before reaching
  its end, :class:`StreamInterrupted` is raised with ``partial`` set to exactly
  the text delivered.
* ``resume=False`` (``complete()``): nothing has reached the caller yet, so the
  text of a broken attempt is dropped and the next attempt starts from scratch.

A failure that finally escapes after text was delivered (retries used up, the
deadline reached) becomes :class:`StreamInterrupted` carrying that text, with
the failure as its ``__cause__``: nothing is lost silently.

Text is stored as pieces folded into compact blocks once at least 64 have gathered,
encoded as UTF-8, so it costs about its own size in memory and ``text`` stays linear (a
``str`` holding one emoji takes four bytes for every character; UTF-8 takes one for most).
"""

from __future__ import annotations

from .._exceptions import APIError, StreamInterrupted

__all__ = ["Transcript"]

_FOLD_AT = 64


class Transcript:
    """Text delivered by one chat call, across its attempts."""

    __slots__ = (
        "_blocks",
        "_folds",
        "_last_failure",
        "_position",
        "_replay",
        "_tail",
        "length",
        "resume",
    )

    def __init__(self, *, resume: bool = True) -> None:
        self.resume = resume
        self._blocks: list[bytes] = []
        self._tail: list[str] = []
        self._folds = 0
        # While replaying: the text delivered before the drop, and how much of
        # it the new answer has matched so far.
        self._replay: str | None = None
        self._position = 0
        self._last_failure: APIError | None = None
        #: How many characters were delivered (cheaper than ``len(text)``).
        self.length = 0

    @property
    def replaying(self) -> bool:
        """Whether a resumed attempt is still re-reading text the caller already has."""
        return self._replay is not None

    @property
    def text(self) -> str:
        """All text delivered so far.

        Another thread may read it while the stream runs: reading changes
        nothing, and a read that overlapped a fold of the pieces is retried
        (``_folds`` is odd during a fold and grows by two with each).
        """
        while True:
            folds = self._folds
            text = b"".join(self._blocks).decode("utf-8", "surrogatepass") + "".join(self._tail)
            if folds == self._folds and not folds % 2:
                return text

    def begin_attempt(self) -> None:
        """A new attempt's answer is about to arrive."""
        if not self.resume:
            self._folds += 1
            self._blocks = []
            self._tail.clear()
            self.length = 0
            self._folds += 1
            return
        text = self.text
        self._replay = text or None
        self._position = 0

    def deliver(self, pieces: list[str]) -> list[str]:
        """The pieces the caller should get, recorded as delivered.

        On a resumed attempt the text the caller already has is cut away. The caller
        must hand out every piece returned: they count as delivered from here on.
        """
        if self._replay is not None:
            pieces = self._skip_replayed(pieces)
            if not pieces:
                return pieces
        tail = self._tail  # only ever cleared in place, never replaced
        tail.extend(pieces)
        self.length += sum(map(len, pieces))
        if len(tail) >= _FOLD_AT:
            # Before the next network read: one compact string instead of many
            # small ones (~50 bytes each) while the stream waits.
            self._folds += 1
            self._blocks.append("".join(tail).encode("utf-8", "surrogatepass"))
            tail.clear()
            self._folds += 1
        return pieces

    def end_attempt(self) -> None:
        """The attempt's answer ended normally."""
        if self._replay is not None:
            raise self._diverged("the re-sent request's answer ended before the text already sent")

    def failure(self, exc: APIError) -> APIError:
        """Record a failed attempt; return the error to raise if no retry follows.

        Once text has gone out, any failure that ends the call is reported as
        :class:`StreamInterrupted` carrying that text, with ``exc`` as its cause.
        """
        self._last_failure = exc
        self._replay = None
        if isinstance(exc, StreamInterrupted):
            return exc
        partial = self.text
        if not partial:
            return exc
        error = StreamInterrupted(
            f"the stream broke after {len(partial)} characters: {exc}", partial=partial
        )
        error.__cause__ = exc
        return error

    def _skip_replayed(self, pieces: list[str]) -> list[str]:
        replay = self._replay
        assert replay is not None
        position = self._position
        for index, piece in enumerate(pieces):
            end = position + len(piece)
            if end <= len(replay):
                if not replay.startswith(piece, position):
                    raise self._diverged("the re-sent request gave a different answer")
                position = end
                if end < len(replay):
                    continue
                rest = pieces[index + 1 :]
            else:
                head = len(replay) - position
                if not replay.endswith(piece[:head]):
                    raise self._diverged("the re-sent request gave a different answer")
                rest = [piece[head:], *pieces[index + 1 :]]
            self._replay = None  # caught up: from here on everything is new
            return rest
        self._position = position
        return []

    def _diverged(self, why: str) -> StreamInterrupted:
        partial = self._replay or ""
        self._replay = None
        error = StreamInterrupted(
            f"the stream broke after {len(partial)} characters and could not be resumed: {why}",
            partial=partial,
        )
        error.__cause__ = self._last_failure
        return error
