"""``FaultMix``: faults at fixed rates, decided once per conversation, for soak tests.

``inject()`` and ``always`` script the next request; a soak needs something else: thousands of
streams, a small share of them failing in each way, every failure on a stream's FIRST attempt
only (a drop that came back on every retry would test nothing but the retry limit), and the
same streams failing in the same way on every run with the same seed. A ``FaultMix`` gives
each kind of fault a rate and a seed::

    mix = FaultMix(drop=0.01, rate_limit=0.005, unavailable=0.005, seed=7)
    with LocalServer(fault_mix=mix) as server:  # or spawn_server(fault_mix=mix)
        ...
    mix.kind_for("k3j9x0a1b2")  # what that conversation's first answer got: "drop" or None

The decision is a pure function of ``(seed, conversationId)`` (a keyed BLAKE2b hash of the
two), so a client that chooses its conversation ids knows in advance which of its streams
will meet which fault. The server acts a conversation's fault out on the first chat request
carrying that ``conversationId`` (and a valid token: a request refused for its token does not
use the fault up), never again; ``MixMemory`` remembers the ids it has seen, the latest
``MIX_MEMORY`` of them. Faults from ``X-Fault``, ``inject()`` and ``always`` come first; the
mix applies only to a request none of them gave a fault to.

The kinds (``KINDS``), in the order their rates are stacked on ``[0, 1)``:

- ``drop``: the connection closes after k of the answer's n lines, 1 <= k < n (mid-stream);
- ``rate_limit``: 429 with ``Retry-After: 0``;
- ``unavailable``: 503 without ``Retry-After``;
- ``expire_token``: the request's token is revoked, for every request that shares it, and the
  request gets 401;
- ``malformed``: unreadable lines between the valid ones (the text is unchanged);
- ``stall``: ``stall_seconds`` of silence after k of the n lines (as for ``drop``); make it
  longer than the client's read timeout.

The text form, for ``--fault-mix`` and ``ServerOptions.to_argv``, is ``name=value`` items
separated by ``,`` or ``;``, rates as fractions or percentages:
``"drop=1%, rate_limit=0.5%, stall=0.1%, stall_seconds=3, seed=7"`` (``str(mix)`` gives it back).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter
from dataclasses import dataclass, fields
from typing import Literal

from ._faults import NO_FAULT, Fault

__all__ = ["KINDS", "MIX_MEMORY", "FaultKind", "FaultMix", "MixMemory"]

FaultKind = Literal["drop", "rate_limit", "unavailable", "expire_token", "malformed", "stall"]
KINDS: tuple[FaultKind, ...] = (
    "drop",
    "rate_limit",
    "unavailable",
    "expire_token",
    "malformed",
    "stall",
)
"""The kinds of fault a mix deals out, in the order their rates are stacked."""
MIX_MEMORY = 1_000_000
"""How many conversation ids a server remembers as seen (the oldest are forgotten first)."""

_SCALE = float(2**64)


@dataclass(frozen=True, kw_only=True)
class FaultMix:
    """Each kind of fault at its rate (a share of conversations, 0 to 1), and the seed."""

    drop: float = 0.0
    """Answers cut mid-stream (the connection closes after k of n lines, 0 < k < n)."""
    rate_limit: float = 0.0
    """429 with ``Retry-After: 0``."""
    unavailable: float = 0.0
    """503 without ``Retry-After`` (the client backs off)."""
    expire_token: float = 0.0
    """401 after revoking the request's token (every request sharing it is refused too)."""
    malformed: float = 0.0
    """Unreadable lines interleaved with the valid ones."""
    stall: float = 0.0
    """``stall_seconds`` of silence mid-stream."""
    stall_seconds: float = 5.0
    """How long a ``stall`` lasts: longer than the client's read timeout."""
    seed: int = 0
    """The same seed deals the same faults to the same conversation ids."""

    def __post_init__(self) -> None:
        for name in KINDS:
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise ValueError(f"{name} must be a number from 0 to 1, got {rate!r}")
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be from 0 to 1, got {rate!r}")
        if sum(getattr(self, name) for name in KINDS) > 1 + 1e-9:
            raise ValueError("the rates of a fault mix add up to more than 1")
        seconds = self.stall_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(f"stall_seconds must be a number, got {seconds!r}")
        if not 0 < seconds < math.inf:
            raise ValueError(f"stall_seconds must be > 0, got {seconds!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @classmethod
    def parse(cls, text: str) -> FaultMix:
        """A mix from its text form (``"drop=1%, stall=0.1%, seed=7"``); ``ValueError`` if bad."""
        values: dict[str, float | int] = {}
        for item in text.replace(";", ",").split(","):
            item = item.strip()
            if not item:
                continue
            name, equals, raw = (part.strip() for part in item.partition("="))
            name = name.lower().replace("-", "_")
            if not equals or not raw:
                raise ValueError(f"bad fault mix item {item!r}: expected name=value")
            if name not in _FIELD_NAMES:
                raise ValueError(
                    f"bad fault mix item {item!r}: the names are {', '.join(_FIELD_NAMES)}"
                )
            try:
                if name == "seed":
                    values[name] = int(raw)
                elif raw.endswith("%"):
                    values[name] = float(raw[:-1]) / 100
                else:
                    values[name] = float(raw)
            except ValueError:
                raise ValueError(f"bad fault mix item {item!r}: not a number") from None
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        """The text form: every rate that is not zero, ``stall_seconds`` and ``seed``."""
        items = [f"{name}={getattr(self, name)!r}" for name in KINDS if getattr(self, name)]
        items += [f"stall_seconds={self.stall_seconds!r}", f"seed={self.seed}"]
        return ", ".join(items)

    def kind_for(self, conversation_id: str) -> FaultKind | None:
        """The kind of fault this conversation's first answer gets, or None."""
        return self._draw(conversation_id)[0]

    def fault_for(self, conversation_id: str, lines: int) -> Fault:
        """The ``Fault`` for this conversation's first answer of ``lines`` lines (``NO_FAULT``
        if the mix gives it none)."""
        kind, point = self._draw(conversation_id)
        mid_stream = 1 + point % (lines - 1) if lines >= 2 else lines
        if kind == "drop":
            return Fault(drop_after=mid_stream)
        if kind == "rate_limit":
            return Fault(status=429, retry_after="0")
        if kind == "unavailable":
            return Fault(status=503)
        if kind == "expire_token":
            return Fault(expire_token=True)
        if kind == "malformed":
            return Fault(malformed=True)
        if kind == "stall":
            return Fault(stall=self.stall_seconds, stall_after=mid_stream)
        return NO_FAULT

    def _draw(self, conversation_id: str) -> tuple[FaultKind | None, int]:
        """The kind (from the hash's first 8 bytes) and a point (from the next 8)."""
        digest = hashlib.blake2b(
            conversation_id.encode("utf-8", "surrogatepass"),
            digest_size=16,
            key=str(self.seed).encode(),
        ).digest()
        draw = int.from_bytes(digest[:8], "big") / _SCALE
        point = int.from_bytes(digest[8:], "big")
        edge = 0.0
        for kind in KINDS:
            edge += getattr(self, kind)
            if draw < edge:
                return kind, point
        return None, point


_FIELD_NAMES = tuple(spec.name for spec in fields(FaultMix))


class MixMemory:
    """What a server has dealt from its mix: the conversation ids seen, counts by kind."""

    def __init__(self, capacity: int = MIX_MEMORY) -> None:
        self._capacity = capacity
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest first
        self._dealt: Counter[str] = Counter()
        self._lock = threading.Lock()

    def deal(self, mix: FaultMix, conversation_id: str, lines: int) -> Fault:
        """The fault for this request: the mix's for a conversation's first request, else none."""
        with self._lock:
            if conversation_id in self._seen:
                return NO_FAULT
            self._seen[conversation_id] = None
            if len(self._seen) > self._capacity:
                del self._seen[next(iter(self._seen))]
        kind = mix.kind_for(conversation_id)
        if kind is None:
            return NO_FAULT
        with self._lock:
            self._dealt[kind] += 1
        return mix.fault_for(conversation_id, lines)

    def dealt(self) -> dict[str, int]:
        """How many faults of each kind were dealt (every kind, zeros included)."""
        with self._lock:
            return {kind: self._dealt[kind] for kind in KINDS}

    def clear(self) -> None:
        """Forget the conversations seen and the counts."""
        with self._lock:
            self._seen.clear()
            self._dealt.clear()
