"""The text of one chat call, and how it survives a dropped stream. No I/O.

Theory of operation
-------------------
A :class:`Transcript` sees every piece on its way to the caller and keeps what it needs
to check a resumed answer. When a stream drops, the client re-sends the same request
(same ``conversationId`` and prompt) and passes the new answer through
:meth:`Transcript.deliver` again, which returns what the caller should get:

* ``resume=True`` (``stream()``): the new answer must start with the text already
  delivered. That prefix is skipped, piece by piece (a piece may end inside it); what
  follows is delivered. The caller never sees a piece twice. If the new answer differs
  from the delivered text, or ends before reaching its end, :class:`StreamInterrupted`
  is raised.
* ``resume=False`` (``complete()``): nothing has reached the caller yet, so the text of
  a broken attempt is dropped and the next attempt starts from scratch.

A failure that finally escapes after text was delivered (retries used up, the deadline
reached) becomes :class:`StreamInterrupted` with the failure as its ``__cause__`` and
``delivered`` set to the number of characters delivered: nothing is lost silently.

What it keeps
-------------
``keep_text=True`` (the default): the delivered text itself, so that ``text`` works and
``StreamInterrupted.partial`` is exactly that text. Pieces are folded into compact blocks
once at least 64 have gathered, encoded as UTF-8, so the text costs about its own size
in memory and ``text`` stays linear (a ``str`` holding one emoji takes four bytes for
every character; UTF-8 takes one for most). A resumed answer is compared with it piece by
piece, so a difference is found where it starts.

``keep_text=False`` (lean, for a caller that does not need the text, like a gateway
relaying an endless answer): only ``length`` and a running BLAKE2b hash of the delivered
text's UTF-8 bytes (``surrogatepass``), whatever the answer's length. A resumed answer's
first ``length`` characters are hashed as they arrive (of a piece that straddles that
boundary, only the part before it), and the two digests are compared at the boundary:
what follows is delivered only when they are equal. A different digest, or an answer
that ends before the boundary, raises :class:`StreamInterrupted` at once, with
``partial=""`` (the text was not kept) and ``delivered`` set; ``text`` raises
:class:`InvalidRequestError`. A difference is found at the boundary, not where it starts.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterator

from .._exceptions import APIError, InvalidRequestError, StreamInterrupted

__all__ = ["Transcript"]

_FOLD_AT = 64
_ENCODING = ("utf-8", "surrogatepass")


def _text_hash() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=32)


class Transcript:
    """Text delivered by one chat call, across its attempts (or, lean, its length and
    hash)."""

    __slots__ = (
        "_batch",
        "_blocks",
        "_digest",
        "_folds",
        "_hash",
        "_last_failure",
        "_position",
        "_replay",
        "_replay_hash",
        "_tail",
        "keep_text",
        "length",
        "resume",
    )

    def __init__(self, *, resume: bool = True, keep_text: bool = True) -> None:
        self.resume = resume
        #: Whether the delivered text is kept (``text``, ``partial``), or only its
        #: length and hash.
        self.keep_text = keep_text
        self._blocks: list[bytes] = []
        self._tail: list[str] = []
        self._folds = 0
        # Lean: the running hash of the delivered text (None when the text is kept).
        self._hash = None if keep_text else _text_hash()
        # While replaying: the text delivered before the drop (kept), or the hash of the
        # new answer so far and the delivered text's digest (lean); and how much of it
        # the new answer has matched so far.
        self._replay: str | None = None
        self._replay_hash: hashlib.blake2b | None = None
        self._digest = b""
        self._position = 0
        self._last_failure: APIError | None = None
        #: How many characters were delivered (cheaper than ``len(text)``).
        self.length = 0
        # The batch being handed out to the caller, the iterator over it (how far it got),
        # and ``length`` once it was delivered: one tuple, published at once, so that
        # another thread reading ``seen_text`` sees the three agree.
        self._batch: tuple[list[str], Iterator[str], int] = ([], iter(()), 0)

    @property
    def replaying(self) -> bool:
        """Whether a resumed attempt is still re-reading text the caller already has."""
        return self._replay is not None or self._replay_hash is not None

    @property
    def text(self) -> str:
        """All text delivered so far (:class:`InvalidRequestError` when not kept).

        Another thread may read it while the stream runs: reading changes
        nothing, and a read that overlapped a fold of the pieces is retried
        (``_folds`` is odd during a fold and grows by two with each).
        """
        if not self.keep_text:
            raise InvalidRequestError(
                "the delivered text was not kept (keep_text=False): "
                f"{self.length} characters were delivered",
                field="keep_text",
            )
        while True:
            folds = self._folds
            text = b"".join(self._blocks).decode(*_ENCODING) + "".join(self._tail)
            if folds == self._folds and not folds % 2:
                return text

    # -- what the caller has been handed -------------------------------------------------

    def hand_out(self, pieces: list[str]) -> Iterator[str]:
        """The caller is handed ``pieces`` (just delivered) one by one, from the iterator
        returned: :attr:`seen_text` and :attr:`pending` follow that iterator, with no call
        for each piece."""
        handed = iter(pieces)
        self._batch = (pieces, handed, self.length)
        return handed

    def handed_out(self) -> None:
        """The batch went out whole: it is no longer held."""
        _, handed, end = self._batch
        self._batch = ([], handed, end)

    @property
    def pending(self) -> int:
        """How many pieces of the batch being handed out the caller has not had yet."""
        pieces, handed, _ = self._batch
        return operator.length_hint(handed) if pieces else 0

    @property
    def seen_text(self) -> str:
        """The text the caller has been handed so far (:attr:`text` less the pieces of the
        batch still to come; another thread may read it while the stream runs).

        :class:`InvalidRequestError` when the text is not kept.
        """
        pieces, handed, end = self._batch
        if pieces:
            pending = pieces[len(pieces) - operator.length_hint(handed) :]
            end -= sum(map(len, pending))
        return self.text[:end]

    def cut_batch(self) -> None:
        """End the batch being handed out after the piece that may be on its way now (the
        stream is closing from another thread)."""
        pieces, handed, end = self._batch
        keep = len(pieces) - operator.length_hint(handed) + 1
        if keep < len(pieces):
            # Published first: a reader of ``seen_text`` may see it short a moment, never
            # ahead.
            self._batch = (pieces, handed, end - sum(map(len, pieces[keep:])))
            del pieces[keep:]  # the list's iterator stops at its new end

    # -- attempts ---------------------------------------------------------------------------

    def begin_attempt(self) -> None:
        """A new attempt's answer is about to arrive."""
        if not self.resume:
            self._folds += 1
            self._blocks = []
            self._tail.clear()
            self.length = 0
            self._batch = ([], iter(()), 0)  # the caller has seen nothing of this attempt
            self._folds += 1
            if self._hash is not None:
                self._hash = _text_hash()
            return
        self._position = 0
        if self._hash is None:
            text = self.text
            self._replay = text or None
        elif self.length:
            self._replay_hash = _text_hash()
            self._digest = self._hash.digest()

    def deliver(self, pieces: list[str]) -> list[str]:
        """The pieces the caller should get, recorded as delivered.

        On a resumed attempt the text the caller already has is cut away. The caller
        must hand out every piece returned: they count as delivered from here on.
        """
        if self._replay is not None:
            pieces = self._skip_replayed(pieces)
            if not pieces:
                return pieces
        elif self._replay_hash is not None:
            pieces = self._skip_hashed(pieces)
            if not pieces:
                return pieces
        self.length += sum(map(len, pieces))
        if self._hash is not None:
            self._hash.update("".join(pieces).encode(*_ENCODING))
            return pieces
        tail = self._tail  # only ever cleared in place, never replaced
        tail.extend(pieces)
        if len(tail) >= _FOLD_AT:
            # Before the next network read: one compact string instead of many
            # small ones (~50 bytes each) while the stream waits.
            self._folds += 1
            self._blocks.append("".join(tail).encode(*_ENCODING))
            tail.clear()
            self._folds += 1
        return pieces

    def end_attempt(self) -> None:
        """The attempt's answer ended normally."""
        if self.replaying:
            raise self._diverged("the re-sent request's answer ended before the text already sent")

    def failure(self, exc: APIError) -> APIError:
        """Record a failed attempt; return the error to raise if no retry follows.

        Once text has gone out, any failure that ends the call is reported as
        :class:`StreamInterrupted` carrying that text (or, lean, its length), with
        ``exc`` as its cause.
        """
        self._last_failure = exc
        self._replay = None
        self._replay_hash = None
        if isinstance(exc, StreamInterrupted) or not self.length:
            return exc
        partial = self.text if self.keep_text else ""
        error = StreamInterrupted(
            f"the stream broke after {self.length} characters: {exc}",
            partial=partial,
            delivered=self.length,
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

    def _skip_hashed(self, pieces: list[str]) -> list[str]:
        # The lean twin of _skip_replayed: the same cut, checked by digest at the boundary.
        replay_hash = self._replay_hash
        assert replay_hash is not None
        boundary = self.length
        position = self._position
        for index, piece in enumerate(pieces):
            end = position + len(piece)
            if end < boundary:
                position = end
                continue
            head = boundary - position
            replay_hash.update(("".join(pieces[:index]) + piece[:head]).encode(*_ENCODING))
            if replay_hash.digest() != self._digest:
                raise self._diverged("the re-sent request gave a different answer")
            self._replay_hash = None  # caught up: from here on everything is new
            return pieces[index + 1 :] if end == boundary else [piece[head:], *pieces[index + 1 :]]
        replay_hash.update("".join(pieces).encode(*_ENCODING))
        self._position = position
        return []

    def _diverged(self, why: str) -> StreamInterrupted:
        partial = self._replay or ""
        self._replay = None
        self._replay_hash = None
        error = StreamInterrupted(
            f"the stream broke after {self.length} characters and could not be resumed: {why}",
            partial=partial,
            delivered=self.length,
        )
        error.__cause__ = self._last_failure
        return error
