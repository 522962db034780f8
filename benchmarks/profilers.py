"""The profilers a worker can run around its timed section (``--profile DIR``).

``cprofile`` (deterministic: every call counted, which inflates small functions' costs),
``pyinstrument`` (sampling: the call tree with little distortion) and ``tracemalloc``
(who holds the Python heap near its peak). Each has ``start()``, ``stop()``, ``mark()``
(a moment of interest: a stream's first piece) and ``report()`` (the text, also written
to the path it was given).
"""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Any

__all__ = ["PROFILERS"]

MIB = 1024 * 1024


class _CProfile:
    """Deterministic: every call counted (inflates small functions' costs)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.profile = cProfile.Profile()

    def start(self) -> None:
        self.profile.enable()

    def stop(self) -> None:
        self.profile.disable()

    def mark(self) -> None:
        pass

    def report(self) -> str:
        self.profile.dump_stats(self.path)
        buffer = io.StringIO()
        stats = pstats.Stats(self.profile, stream=buffer)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(30)
        return buffer.getvalue()


class _Pyinstrument:
    """Sampling: the call tree with little distortion."""

    def __init__(self, path: str) -> None:
        from pyinstrument import Profiler

        self.path = path
        self.profiler = Profiler(interval=0.0005, async_mode="disabled")

    def start(self) -> None:
        self.profiler.start()

    def stop(self) -> None:
        self.profiler.stop()

    def mark(self) -> None:
        pass

    def report(self) -> str:
        text: str = self.profiler.output_text(unicode=False, color=False, show_all=False)
        with open(self.path, "w") as out:
            out.write(text)
        return text


class _Tracemalloc:
    """Memory: who holds the Python heap near its peak, and the traced peak.

    ``mark()`` is called at moments of interest (each stream's first piece);
    a snapshot is taken whenever the traced heap has grown 10% past the
    largest one snapshotted, so the snapshot kept is one near the peak.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.snapshot: Any = None
        self.at = 0

    def start(self) -> None:
        import tracemalloc

        tracemalloc.start(1)

    def mark(self) -> None:
        import tracemalloc

        current = tracemalloc.get_traced_memory()[0]
        if current > self.at * 1.1:
            self.snapshot = tracemalloc.take_snapshot()
            self.at = tracemalloc.get_traced_memory()[0]

    def stop(self) -> None:
        import tracemalloc

        self.mark()
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    def report(self) -> str:
        lines = [
            f"traced Python heap: {self.at / MIB:.1f} MiB at the snapshot, "
            f"peak {self.peak / MIB:.1f} MiB",
        ]
        for stat in self.snapshot.statistics("lineno")[:25]:
            where = f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}"
            lines.append(f"{stat.size / MIB:8.2f} MiB {stat.count:>9,} blocks  {where}")
        text = "\n".join(lines)
        with open(self.path, "w") as out:
            out.write(text)
        return text


PROFILERS: dict[str, Any] = {
    "cprofile": _CProfile,
    "pyinstrument": _Pyinstrument,
    "tracemalloc": _Tracemalloc,
}
