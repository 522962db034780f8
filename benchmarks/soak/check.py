"""What a soak stream must give, and the tally of what the streams gave: no I/O here.

``Plan`` says, for stream ``i`` of a run, its prompt, its conversation id and the text it must
deliver (``aichatonline.testing.reply_for``), and which fault the server's ``FaultMix`` deals
it. ``Tally.record`` judges one finished stream:

- no error: the delivered pieces must join to exactly the expected text (``exact``);
- an error: it must be one of the SDK's (``AiChatOnlineError``, counted by class in
  ``typed_errors``); if text was delivered it must be a ``StreamInterrupted`` whose
  ``.partial`` is exactly that text; and the delivered text must be a start of the expected;
- either way ``stream.text`` must equal what was delivered.

Anything else is a ``wrong`` outcome (the first few are described in ``examples``). When the
delivered text differs from what it should be, the characters are counted: ``chars_lost``
(expected characters missing before the last one delivered, or at the end of a stream that
claimed to be complete) and ``chars_repeated`` (delivered characters that match nothing
expected). A planned fault that left no trace on a stream that came out exact (no retry after
a drop, a 429, a 503 or a stall; no anomaly after malformed lines) is counted in
``faults_without_trace``: the harness would then be measuring less than it claims. A token
refresh is not a retry, so a token expiry leaves no trace to check.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aichatonline import AiChatOnlineError, StreamInterrupted
from aichatonline.testing import FaultMix, reply_for

__all__ = ["KIND_LABELS", "SOAK_MIX", "TRACED_BY_RETRY", "Plan", "Tally", "char_damage"]

SOAK_MIX = FaultMix(
    drop=0.01,
    rate_limit=0.005,
    unavailable=0.005,
    expire_token=0.002,
    malformed=0.001,
    stall=0.001,
)
"""Issue 19's fault mix (``stall_seconds`` and ``seed`` are set per run)."""
KIND_LABELS = {
    "drop": "drop",
    "rate_limit": "429",
    "unavailable": "503",
    "expire_token": "401",
    "malformed": "malformed",
    "stall": "stall",
}
"""How the tables name each ``FaultMix`` kind."""
TRACED_BY_RETRY = frozenset({"drop", "rate_limit", "unavailable", "stall"})
"""Fault kinds that an exact stream can only have survived by retrying."""

# Words of the prompts, which the answers echo: multi-byte UTF-8 (split across reads), JSON
# escapes (quotes, backslashes, tabs) and plain ASCII, so the decoder's every path is used.
_WORDS = (
    "alpha",
    "naïve",
    "café",
    "straße",
    "Ωμέγα",
    "日本語",
    "🚀",
    "🎉✓",
    '"quoted"',
    "back\\slash",
    "tab\there",
    "0123456789",
    "plain",
    "text",
)
_EXAMPLES = 5


@dataclass(frozen=True)
class Plan:
    """The streams of one run: stream ``i``'s prompt, conversation id and answer."""

    seed: int
    mix: FaultMix
    words: int
    """Average words per prompt (the answer echoes the prompt)."""

    def prompt(self, index: int) -> str:
        rng = random.Random(self.seed * 1_000_003 + index)
        count = rng.randint(0, 2 * self.words)
        return f"soak {index}: " + " ".join(rng.choice(_WORDS) for _ in range(count))

    def conversation_id(self, index: int) -> str:
        return f"soak{self.seed}x{index:08d}"

    def expected(self, index: int) -> str:
        return reply_for(self.prompt(index))

    def kind(self, index: int) -> str | None:
        return self.mix.kind_for(self.conversation_id(index))

    def warmup_id(self) -> str:
        """A conversation id the mix deals no fault to, for the warm-up stream."""
        for attempt in range(10_000):
            candidate = f"warmup{self.seed}x{attempt}"
            if self.mix.kind_for(candidate) is None:
                return candidate
        raise RuntimeError("the fault mix deals a fault to every conversation")


def char_damage(expected: str, delivered: str, complete: bool) -> tuple[int, int]:
    """(lost, repeated) characters of ``delivered`` against ``expected``.

    ``complete``: the stream claimed the whole answer, so missing characters at the end are
    lost too; otherwise only those missing before the last character delivered.
    """
    if delivered == expected or (not complete and expected.startswith(delivered)):
        return 0, 0
    matcher = difflib.SequenceMatcher(None, expected, delivered, autojunk=False)
    blocks = [block for block in matcher.get_matching_blocks() if block.size]
    matched = sum(block.size for block in blocks)
    repeated = len(delivered) - matched
    if complete:
        lost = len(expected) - matched
    else:
        reached = max((block.a + block.size for block in blocks), default=0)
        lost = reached - matched
    return lost, repeated


@dataclass
class Tally:
    """What the streams of a run gave (see the module docstring)."""

    streams: int = 0
    exact: int = 0
    typed_errors: Counter[str] = field(default_factory=Counter)
    wrong: int = 0
    chars_lost: int = 0
    chars_repeated: int = 0
    retries: int = 0
    anomalies: int = 0
    faults_planned: Counter[str] = field(default_factory=Counter)
    faults_without_trace: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def record(
        self,
        expected: str,
        pieces: list[str],
        stream: Any,
        error: BaseException | None,
        kind: str | None,
    ) -> None:
        """Judge one finished stream (its pieces, the stream object, the error that ended it)."""
        delivered = "".join(pieces)
        self.streams += 1
        self.retries += stream.retries
        self.anomalies += stream.anomalies
        if kind is not None:
            self.faults_planned[kind] += 1
        problem = None
        if stream.text != delivered:
            problem = "stream.text is not the text delivered"
        if error is None:
            lost, repeated = char_damage(expected, delivered, complete=True)
            if delivered != expected:
                problem = problem or "completed with other text than expected"
            elif problem is None:
                self.exact += 1
                self._trace(kind, stream)
        else:
            lost, repeated = char_damage(expected, delivered, complete=False)
            if not isinstance(error, AiChatOnlineError):
                problem = problem or "an error that is not the SDK's"
            else:
                self.typed_errors[type(error).__name__] += 1
                partial = getattr(error, "partial", "")
                if delivered and not isinstance(error, StreamInterrupted):
                    problem = (
                        problem or "text delivered, then an error other than StreamInterrupted"
                    )
                elif partial != delivered:
                    problem = problem or ".partial is not the text delivered"
                elif lost or repeated:
                    problem = "delivered text is not a start of the expected"
        self.chars_lost += lost
        self.chars_repeated += repeated
        if problem is not None:
            self.wrong += 1
            if len(self.examples) < _EXAMPLES:
                self.examples.append(
                    f"{problem}: fault {kind}, error {error!r}, "
                    f"expected {expected!r}, delivered {delivered!r}"
                )

    def _trace(self, kind: str | None, stream: Any) -> None:
        retried = kind in TRACED_BY_RETRY and stream.retries > 0
        skipped = kind == "malformed" and stream.anomalies > 0
        if kind is not None and kind != "expire_token" and not (retried or skipped):
            self.faults_without_trace[kind] += 1

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to this tally (the sync run keeps one per thread)."""
        for spec in dataclasses.fields(self):
            mine, theirs = getattr(self, spec.name), getattr(other, spec.name)
            if isinstance(mine, list):
                mine.extend(theirs[: _EXAMPLES - len(mine)])
            elif isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, spec.name, mine + theirs)

    @property
    def failed(self) -> bool:
        """Whether the run broke the SDK's promise (a wrong outcome, a character lost/repeated)."""
        return bool(self.wrong or self.chars_lost or self.chars_repeated)
