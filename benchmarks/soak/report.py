"""The soak's summary (the ``--json`` document), its verdict, and its table.

``client_summary`` turns a ``ClientRun`` into the summary: plain JSON types, the counts the
issue asks for (``streams``, ``exact``, ``typed_errors`` by class, ``chars_lost``,
``chars_repeated``, ``retries``, ``wall_s``, ``rss_mib``: the peak RSS sampled at 10/50/100 %,
``fds_start``, ``fds_end``) and more, plus ``problems``: every broken promise, in words (an
empty list is a pass). Memory is judged twice, each allowed to grow ``RSS_GROWTH_LIMIT``
percent: the peak RSS from the 10 % sample to the end (``rss_mib``, issue 19's criterion),
and the Python heap right after a full collection (``heap_kblocks``, thousands of allocated
blocks) from the idle client after its warm-up to the idle client at the end: a leak of
anything per stream grows it, garbage waiting for the next collection does not. ``render``
prints one or more summaries side by side, as aligned text or Markdown.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from ..report import table
from .check import KIND_LABELS, Tally
from .clients import ClientConfig, ClientRun

__all__ = ["RSS_GROWTH_LIMIT", "client_summary", "environment", "render", "rss_problem"]

RSS_GROWTH_LIMIT = 10.0
"""Percent the peak RSS may grow from the 10 % sample to the 100 % sample."""
WARM_FACTOR = 10
"""Streams per unit of concurrency before the 10 % sample counts as after the warm-up."""


def environment() -> dict[str, Any]:
    """Python, the SDK's version, the machine's cores and load."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "aichatonline": version("aichatonline"),
        "httpx": version("httpx"),
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in load] if load else None,
        "platform": sys.platform,
    }


def rss_problem(
    samples: dict[str, float], warm: bool, what: str, since: str = "10%"
) -> tuple[float | None, str | None]:
    """(growth in percent from the ``since`` sample to the last one, the problem if too much).

    The last one is ``"100%"``, or ``"end"`` from ``"start"`` (the idle client's samples).

    ``warm``: the run is long enough (``WARM_FACTOR``) for the 10 % sample to come after the
    warm-up; otherwise nothing is judged.
    """
    first, last = samples.get(since), samples.get("end" if since == "start" else "100%")
    if not warm or not first or last is None:
        return None, None
    growth = (last - first) / first * 100
    if growth > RSS_GROWTH_LIMIT:
        return growth, f"{what} grew {growth:.1f} % (limit {RSS_GROWTH_LIMIT} %)"
    return growth, None


def tally_problems(tally: Tally) -> list[str]:
    """The broken promises in a tally, in words."""
    problems = []
    if tally.wrong:
        problems.append(f"{tally.wrong} wrong outcome(s)")
    if tally.chars_lost or tally.chars_repeated:
        problems.append(f"{tally.chars_lost} character(s) lost, {tally.chars_repeated} repeated")
    if sum(tally.faults_without_trace.values()):
        problems.append(f"faults that left no trace: {dict(tally.faults_without_trace)}")
    return problems


def client_summary(config: ClientConfig, run: ClientRun) -> dict[str, Any]:
    """The ``--json`` summary of a client soak, ``problems`` included."""
    tally = run.tally
    warm = config.streams >= WARM_FACTOR * config.concurrency
    peak_growth, peak_issue = rss_problem(run.peak_rss_mib, warm, "the peak RSS after 10 %")
    heap_growth, heap_issue = rss_problem(
        run.heap_kblocks, warm, "the idle client's heap after a full collection", "start"
    )
    problems = tally_problems(tally)
    problems += [issue for issue in (peak_issue, heap_issue) if issue]
    if run.fds_start is not None and run.fds_end is not None and run.fds_end > run.fds_start:
        problems.append(f"{run.fds_end - run.fds_start} file descriptor(s) left open")
    if run.connections.get("after close"):
        problems.append(f"{run.connections['after close']} connection(s) open after close()")
    if tally.streams != config.streams:
        problems.append(f"{tally.streams} streams judged of {config.streams}")
    return {
        "kind": "client",
        "flavor": config.flavor,
        "streams": tally.streams,
        "concurrency": config.concurrency,
        "seed": config.seed,
        "fault_mix": str(config.mix),
        "read_timeout_s": config.read_timeout,
        "max_retries": config.max_retries,
        "exact": tally.exact,
        "typed_errors": dict(tally.typed_errors.most_common()),
        "wrong": tally.wrong,
        "chars_lost": tally.chars_lost,
        "chars_repeated": tally.chars_repeated,
        "retries": tally.retries,
        "anomalies": tally.anomalies,
        "faults_planned": dict(tally.faults_planned),
        "faults_without_trace": dict(tally.faults_without_trace),
        "server": run.server,
        "wall_s": round(run.wall_s, 2),
        "streams_per_s": round(tally.streams / run.wall_s) if run.wall_s else None,
        "rss_mib": run.peak_rss_mib,
        "rss_peak_growth_pct": None if peak_growth is None else round(peak_growth, 1),
        "heap_kblocks": run.heap_kblocks,
        "heap_growth_pct": None if heap_growth is None else round(heap_growth, 1),
        "fds_start": run.fds_start,
        "fds_end": run.fds_end,
        "connections": run.connections,
        "examples": tally.examples,
        "problems": problems,
        "environment": environment(),
    }


# --------------------------------------------------------------------------- the table


def _count(value: int, of: int) -> str:
    return f"{value:,} ({value / of * 100:.2f} %)" if of else f"{value:,}"


def _faults(counts: dict[str, int]) -> str:
    return ", ".join(f"{KIND_LABELS[kind]} {counts[kind]:,}" for kind in counts) or "none"


def _errors(errors: dict[str, int], streams: int) -> str:
    if not errors:
        return "none"
    return ", ".join(f"{name} {_count(count, streams)}" for name, count in errors.items())


def _samples(
    samples: dict[str, float],
    growth: float | None,
    points: tuple[str, ...] = ("10%", "50%", "100%"),
) -> str:
    text = " / ".join(f"{samples[point]:.0f}" for point in points if point in samples)
    if not text:
        return "n/a"
    return text + (f" ({growth:+.1f} %)" if growth is not None else " (too short to judge)")


def _na(value: object) -> str:
    return "n/a" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _client_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    streams = summary["streams"]
    connections = summary["connections"]
    return [
        ("streams (at once)", f"{streams:,} ({summary['concurrency']:,})"),
        ("exact", _count(summary["exact"], streams)),
        ("typed errors", _errors(summary["typed_errors"], streams)),
        ("wrong outcomes", f"{summary['wrong']:,}"),
        ("characters lost / repeated", f"{summary['chars_lost']} / {summary['chars_repeated']}"),
        ("faults dealt (first attempts)", _faults(summary["server"].get("mixed_faults", {}))),
        ("tokens issued", _na(summary["server"].get("tokens_issued"))),
        ("retries", f"{summary['retries']:,}"),
        ("malformed lines skipped", f"{summary['anomalies']:,}"),
        ("wall time", f"{summary['wall_s']:.0f} s ({_na(summary['streams_per_s'])} streams/s)"),
        (
            "peak RSS MiB at 10 / 50 / 100 %",
            _samples(summary["rss_mib"], summary["rss_peak_growth_pct"]),
        ),
        (
            "heap after gc.collect(), k blocks, idle: start / end",
            _samples(summary["heap_kblocks"], summary["heap_growth_pct"], ("start", "end")),
        ),
        ("open fds before / after", f"{_na(summary['fds_start'])} / {_na(summary['fds_end'])}"),
        (
            "connections: warm / end / closed",
            " / ".join(
                _na(connections.get(key)) for key in ("after warm-up", "at the end", "after close")
            ),
        ),
        ("verdict", "PASS" if not summary["problems"] else "FAIL"),
    ]


def _title(summary: dict[str, Any]) -> str:
    if summary["kind"] == "gateway":
        return "gateway (openai client)"
    return {"sync": "Client, threads", "asyncio": "AsyncClient, asyncio"}.get(
        summary["flavor"], f"AsyncClient, {summary['flavor']}"
    )


def render(summaries: Sequence[dict[str, Any]], markdown: bool) -> str:
    """One column per summary, one row per figure (summaries of one kind of soak)."""
    if any(summary["kind"] == "gateway" for summary in summaries):
        from .gateway import gateway_rows

        columns = [gateway_rows(summary) for summary in summaries]
    else:
        columns = [_client_rows(summary) for summary in summaries]
    labels = [label for label, _ in columns[0]]
    rows = []
    for index, label in enumerate(labels):
        rows.append(
            [label, *(column[index][1] if index < len(column) else "" for column in columns)]
        )
    headers = ["", *(_title(summary) for summary in summaries)]
    return table(headers, rows, markdown)
