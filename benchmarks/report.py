"""The tables, one per scenario, and the header saying what they were measured on.

Every figure is the median over the runs (``min – max`` shows the spread where
it matters). The targets' table is ``benchmarks/targets.py``'s; the cell formats and
row notes here are shared with it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

from .rows import shape_key
from .scenarios import Row, import_top

__all__ = [
    "DASH",
    "MIB",
    "environment",
    "fmt_mib",
    "fmt_ms0",
    "fmt_num",
    "render_scenario",
    "row_note",
    "rss_per_stream",
    "server_line",
    "table",
]

MIB = 1024 * 1024
DASH = "—"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """A plain-text table (aligned columns) or a Markdown one."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
        ]
        return "\n".join(lines)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def fmt_num(value: float | None, spec: str) -> str:
    return DASH if value is None else format(value, spec)


def _ms(value: float | None) -> str:
    return DASH if value is None else f"{value * 1e3:.3f}"


def fmt_ms0(value: float | None) -> str:
    return DASH if value is None else f"{value * 1e3:,.0f}"


def fmt_mib(value: float | None) -> str:
    return DASH if value is None else f"{value / MIB:.1f}"


def rss_per_stream(row: Row) -> float | None:
    """Peak RSS above the warm client's RSS, per stream, in bytes (median over the runs).

    Clamped at 0: the kernel's RSS counters are synced lazily, so at a handful of streams
    the peak can read a few pages below the RSS sampled before them.
    """
    values = [
        max(0, r["peak_rss"] - r["rss_before"]) / r["streams"]
        for r in row.results
        if r.get("peak_rss") and r.get("rss_before") and r.get("streams")
    ]
    values.sort()
    return values[len(values) // 2] if values else None


def _server(row: Row) -> str:
    cpu, wall = row.median("server_cpu"), row.median("seconds")
    if cpu is None or not wall:
        return DASH
    return f"{cpu:.2f} ({cpu / wall:.0%})"


def row_note(row: Row) -> str:
    notes = []
    if row.skip:
        notes.append(row.skip)
    notes += [f"CRASH: {why.splitlines()[-1][:120]}" for why in row.crashed]
    if row.capped:
        notes.append(f"stopped at the {row.cap:g} s cap")
    if row.max_runs is not None:
        notes.append(f"{row.max_runs} run(s) only: no target needs it")
    early = sum(1 for r in row.results if r.get("server_released_early"))
    if early:
        notes.append(f"{early} run(s) not all open at once: barrier timer (see peak conns)")
    parsers = sorted({r["sdk_parser"] for r in row.results if r.get("sdk_parser")})
    if parsers:
        notes.append(f"decoder used {'/'.join(parsers)}")
    return "; ".join(notes)


def server_line(rows: list[Row]) -> str:
    """How busy the bench server was: it must never be the bottleneck."""
    cpu = sum(r["server_cpu"] for row in rows for r in row.results if "server_cpu" in r)
    wall = sum(r["seconds"] for row in rows for r in row.results if "server_cpu" in r)
    loads = [
        r["server_cpu"] / r["seconds"] for row in rows for r in row.results if r.get("seconds")
    ]
    if not loads:
        return ""
    return (
        f"bench server: {cpu:.2f} CPU s over {wall:.1f} s of timed sections; "
        f"busiest measurement {max(loads):.0%} of one core"
    )


def render_scenario(scenario: str, rows: list[Row], markdown: bool) -> str:
    """The table of one scenario."""
    by_key = {row.key: row for row in rows}
    if scenario == "throughput":
        floor = by_key["floor"].median("rate") if "floor" in by_key else None
        headers = [
            "stack", "pieces", "pieces/s", "min – max", "× floor", "× orjson floor, same lines",
            "client CPU s", "server CPU s", "note",
        ]  # fmt: skip
        body = []
        for row in rows:
            rate, spread = row.median("rate"), row.spread("rate")
            same = by_key.get(shape_key("floor-orjson", row.spec.get("shape") or "usual"))
            orjson_floor = same.median("rate") if same is not None else None
            body.append([
                row.label,
                f"{row.spec['pieces']:,}",
                fmt_num(rate, ",.0f"),
                DASH if spread is None else f"{spread[0]:,.0f} – {spread[1]:,.0f}",
                DASH if rate is None or not floor else f"{rate / floor:.2f}",
                DASH if rate is None or not orjson_floor else f"{rate / orjson_floor:.2f}",
                fmt_num(row.median("client_cpu"), ".3f"),
                _server(row),
                row_note(row),
            ])  # fmt: skip
        return table(headers, body, markdown)
    if scenario == "latency":
        headers = ["stack", "p50 ms", "p99 ms", "HTTP requests per chat", "server CPU s", "note"]
        body = [
            [
                row.label,
                _ms(row.median("p50")),
                _ms(row.median("p99")),
                fmt_num(row.median("requests_per_chat"), ".2f"),
                _server(row),
                row_note(row),
            ]
            for row in rows
        ]
        return table(headers, body, markdown)
    if scenario == "concurrency":
        headers = [
            "stack", "streams", "wall s", "pieces/s", "first piece p50 ms", "p99 ms", "failed",
            "peak RSS MiB", "RSS/stream KiB", "peak conns", "server CPU s", "note",
        ]  # fmt: skip
        body = []
        for row in rows:
            wall = row.median("seconds")
            wall_text = fmt_num(wall, ".2f")
            if row.capped:
                wall_text = f"> {row.cap:g}"
            # A stream that raised, delivered the wrong text, or was stopped by the cap.
            failed = [r["streams"] - r["completed"] for r in row.results]
            body.append([
                row.label,
                f"{row.spec['streams']:,}",
                wall_text,
                fmt_num(row.median("rate"), ",.0f"),
                fmt_ms0(row.median("first_p50")),
                fmt_ms0(row.median("first_p99")),
                DASH if not failed else str(max(failed)),
                fmt_mib(row.median("peak_rss")),
                fmt_num(None if (v := rss_per_stream(row)) is None else v / 1024, ".1f"),
                fmt_num(row.median("server_peak_open"), ",.0f"),
                _server(row),
                row_note(row),
            ])  # fmt: skip
        return table(headers, body, markdown)
    if scenario == "gateway":
        return _render_gateway(rows, markdown)
    if scenario == "long":
        headers = [
            "stack", "pieces", "wall s", "pieces/s", "RSS before MiB", "peak RSS MiB",
            "growth MiB", "answer text MiB", "RSS while streaming, MiB (median run)", "note",
        ]  # fmt: skip
        body = []
        for row in rows:
            before, peak = row.median("rss_before"), row.median("peak_rss")
            samples = _median_run(row)
            body.append([
                row.label,
                f"{row.spec['pieces']:,}",
                fmt_num(row.median("seconds"), ".2f"),
                fmt_num(row.median("rate"), ",.0f"),
                fmt_mib(before),
                fmt_mib(peak),
                fmt_mib(None if before is None or peak is None else peak - before),
                fmt_mib(row.median("text_bytes")),
                " ".join(f"{s / MIB:.0f}" for s in samples) if samples else DASH,
                row_note(row),
            ])  # fmt: skip
        return table(headers, body, markdown)
    if scenario == "import":
        httpx = by_key["httpx"].median("seconds")
        headers = ["import", "median ms", "min – max ms", "× import httpx", "note"]
        body = []
        for row in rows:
            median, spread = row.median("seconds"), row.spread("seconds")
            body.append([
                row.label,
                _ms(median),
                DASH if spread is None else f"{spread[0] * 1e3:.1f} – {spread[1] * 1e3:.1f}",
                DASH if median is None or not httpx else f"{median / httpx:.2f}",
                row_note(row),
            ])  # fmt: skip
        text = table(headers, body, markdown)
        for row in rows:
            if row.profile and Path(row.profile).exists():
                top = import_top(row.profile, 8)
                listed = ", ".join(f"{name} {us / 1000:.1f}" for us, _, name in top)
                text += f"\n  largest self times, {row.label} (ms): {listed}"
        return text
    raise ValueError(scenario)


def _render_gateway(rows: list[Row], markdown: bool) -> str:
    """The SDK direct and through the gateway, side by side (one stream; many clients)."""
    by_key = {row.key: row for row in rows}
    headers = [
        "stack", "streams", "pieces each", "wall s", "pieces/s", "× SDK direct",
        "first piece p50 ms", "p99 ms", "failed", "SSE events per stream",
        "CPU µs/piece (SDK's process)", "peak RSS MiB (SDK's process)", "server CPU s", "note",
    ]  # fmt: skip
    body = []
    for row in rows:
        many = row.spec["scenario"] == "concurrency"
        streams = row.spec.get("streams", 1)
        direct = by_key.get(f"sdk@{streams}" if many else "sdk")
        rate = row.median("rate")
        direct_rate = direct.median("rate") if direct is not None else None
        gateway = row.spec["stack"] == "gateway"
        failed = [r["streams"] - r["completed"] for r in row.results] if many else []
        peak = row.median("gateway_peak_rss" if gateway else "peak_rss")
        wall = fmt_num(row.median("seconds"), ".2f")
        if row.capped:
            wall = f"> {row.cap:g}"
        body.append([
            row.label,
            f"{streams:,}",
            f"{row.spec['pieces']:,}",
            wall,
            fmt_num(rate, ",.0f"),
            DASH if not rate or not direct_rate else f"{rate / direct_rate:.2f}",
            fmt_ms0(row.median("first_p50")) if many else DASH,
            fmt_ms0(row.median("first_p99")) if many else DASH,
            str(max(failed)) if failed else DASH,
            fmt_num(row.median("events"), ",.0f") if gateway else DASH,
            fmt_num(None if (v := row.median("cpu_per_piece")) is None else v * 1e6, ".2f"),
            fmt_mib(peak),
            _server(row),
            row_note(row),
        ])  # fmt: skip
    text = table(headers, body, markdown)
    return text + (
        "\n\nCPU and peak RSS are those of the process doing the SDK's work: the worker for the "
        "SDK direct, the gateway process (started afresh for each measurement) for the "
        "gateway rows. uvicorn runs the gateway on uvloop when uvloop is installed (see the "
        "header); the SDK direct rows then run on uvloop too. SSE events fewer than pieces: "
        "the gateway coalesced them."
    )


def _median_run(row: Row) -> list[int]:
    runs = [r for r in row.results if r.get("rss_samples")]
    if not runs:
        return []
    runs.sort(key=lambda r: r["peak_rss"])
    samples: list[int] = runs[len(runs) // 2]["rss_samples"]
    return samples


def environment(fd_note: str = "") -> str:
    """What the figures were measured on: enough to compare two runs.

    ``fd_note`` says what became of the open-files limit (``server.raise_fd_limit``).
    """
    versions = []
    for name in (
        "httpx",
        "httpcore",
        "anyio",
        "trio",
        "aiohttp",
        "httpx-aiohttp",
        "orjson",
        "openai",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "aichatonline",
    ):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} absent")
    try:
        somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    except OSError:
        somaxconn = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = fd_note or f"open files limit {soft} (hard limit {hard})"
    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load}; listen backlog 8192 capped by "
        f"net.core.somaxconn={somaxconn}; {files}\n" + ", ".join(versions) + f"\n{sys.executable}"
    )
