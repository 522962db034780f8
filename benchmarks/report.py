"""The tables: one per scenario, then the targets with their ratios and PASS/MISS.

Every figure is the median over the runs (``min – max`` shows the spread where
it matters). Ratios are SDK / reference, oriented so that the target reads as
written in the issue: a throughput ratio above 1 means the SDK is faster, a
time ratio below 1 means the SDK is faster.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

from .scenarios import Row, Sizes, import_top

__all__ = [
    "Target",
    "environment",
    "evaluate",
    "render_scenario",
    "render_targets",
    "server_line",
    "targets",
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


def _num(value: float | None, spec: str) -> str:
    return DASH if value is None else format(value, spec)


def _ms(value: float | None) -> str:
    return DASH if value is None else f"{value * 1e3:.3f}"


def _ms0(value: float | None) -> str:
    return DASH if value is None else f"{value * 1e3:,.0f}"


def _mib(value: float | None) -> str:
    return DASH if value is None else f"{value / MIB:.1f}"


def _rss_per_stream(row: Row) -> float | None:
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


def _note(row: Row) -> str:
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
            "stack", "pieces", "pieces/s", "min – max", "× floor", "client CPU s", "server CPU s",
            "note",
        ]  # fmt: skip
        body = []
        for row in rows:
            rate, spread = row.median("rate"), row.spread("rate")
            body.append([
                row.label,
                f"{row.spec['pieces']:,}",
                _num(rate, ",.0f"),
                DASH if spread is None else f"{spread[0]:,.0f} – {spread[1]:,.0f}",
                DASH if rate is None or not floor else f"{rate / floor:.2f}",
                _num(row.median("client_cpu"), ".3f"),
                _server(row),
                _note(row),
            ])  # fmt: skip
        return table(headers, body, markdown)
    if scenario == "latency":
        headers = ["stack", "p50 ms", "p99 ms", "HTTP requests per chat", "server CPU s", "note"]
        body = [
            [
                row.label,
                _ms(row.median("p50")),
                _ms(row.median("p99")),
                _num(row.median("requests_per_chat"), ".2f"),
                _server(row),
                _note(row),
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
            wall_text = _num(wall, ".2f")
            if row.capped:
                wall_text = f"> {row.cap:g}"
            # A stream that raised, delivered the wrong text, or was stopped by the cap.
            failed = [r["streams"] - r["completed"] for r in row.results]
            body.append([
                row.label,
                f"{row.spec['streams']:,}",
                wall_text,
                _num(row.median("rate"), ",.0f"),
                _ms0(row.median("first_p50")),
                _ms0(row.median("first_p99")),
                DASH if not failed else str(max(failed)),
                _mib(row.median("peak_rss")),
                _num(None if (v := _rss_per_stream(row)) is None else v / 1024, ".1f"),
                _num(row.median("server_peak_open"), ",.0f"),
                _server(row),
                _note(row),
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
                _num(row.median("seconds"), ".2f"),
                _num(row.median("rate"), ",.0f"),
                _mib(before),
                _mib(peak),
                _mib(None if before is None or peak is None else peak - before),
                _mib(row.median("text_bytes")),
                " ".join(f"{s / MIB:.0f}" for s in samples) if samples else DASH,
                _note(row),
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
                _note(row),
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
        wall = _num(row.median("seconds"), ".2f")
        if row.capped:
            wall = f"> {row.cap:g}"
        body.append([
            row.label,
            f"{streams:,}",
            f"{row.spec['pieces']:,}",
            wall,
            _num(rate, ",.0f"),
            DASH if not rate or not direct_rate else f"{rate / direct_rate:.2f}",
            _ms0(row.median("first_p50")) if many else DASH,
            _ms0(row.median("first_p99")) if many else DASH,
            str(max(failed)) if failed else DASH,
            _num(row.median("events"), ",.0f") if gateway else DASH,
            _num(None if (v := row.median("cpu_per_piece")) is None else v * 1e6, ".2f"),
            _mib(peak),
            _server(row),
            _note(row),
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


# -- targets ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """One goal of the issue: ``sdk`` compared with ``reference`` (or a fixed value)."""

    text: str
    scenario: str
    sdk: str
    metric: str
    threshold: float
    higher_is_better: bool
    reference: str | None = None  # None: compare the SDK's value with the threshold itself
    worst_run: bool = False  # judge the worst run, not the median (errors)
    excess: bool = False  # the ratio is what the SDK row adds: sdk / reference - 1
    info: str = ""  # what the note reports besides: "scale" (RSS per stream), "gateway"


def _ratio_targets() -> list[Target]:
    t = Target
    return [
        # Throughput, no regression: the stdlib rows against the stdlib floor and the original.
        t("1 stream, SDK sync (stdlib json) vs the stdlib floor", "throughput",
          "sdk-sync+stdlib", "rate", 0.9, True, "floor"),
        t("1 stream, SDK async (stdlib json) vs the stdlib floor", "throughput",
          "sdk-async+stdlib", "rate", 0.85, True, "floor"),
        t("1 stream, SDK sync (stdlib json) vs the original's way", "throughput",
          "sdk-sync+stdlib", "rate", 2.5, True, "original"),
        t("1 stream, SDK async (stdlib json) vs the original's way", "throughput",
          "sdk-async+stdlib", "rate", 2.5, True, "original"),
        # With orjson, against the orjson floor (issue 12; replaces "≥ 2x the stdlib floor").
        t("1 stream, SDK sync with orjson vs the orjson floor", "throughput",
          "sdk-sync+default", "rate", 0.85, True, "floor-orjson"),
        t("1 stream, SDK async (asyncio) with orjson vs the orjson floor", "throughput",
          "sdk-async+default", "rate", 0.8, True, "floor-orjson"),
        t("1 stream, SDK async (trio) with orjson vs the orjson floor", "throughput",
          "sdk-async-trio+default", "rate", 0.8, True, "floor-orjson"),
        # Warm first piece (issue 12).
        t("first piece p50, SDK async (asyncio) vs aiohttp with a reused session", "latency",
          "sdk-async", "p50", 1.0, False, "aiohttp"),
        t("first piece p50, SDK async (asyncio) vs the original's way of calling", "latency",
          "sdk-async", "p50", 0.6, False, "original"),
        t("first piece p50, SDK async (trio) vs aiohttp with a reused session", "latency",
          "sdk-async-trio", "p50", 1.0, False, "aiohttp"),
        t("first piece p50, SDK sync vs the one-request raw-socket floor", "latency",
          "sdk-sync", "p50", 1.3, False, "floor-1req"),
        t("first piece p50, SDK sync vs the original's way of calling", "latency",
          "sdk-sync", "p50", 0.6, False, "original"),
        t("HTTP requests per warm chat, SDK sync", "latency",
          "sdk-sync", "requests_per_chat", 1.0, False, worst_run=True),
        t("HTTP requests per warm chat, SDK async (asyncio)", "latency",
          "sdk-async", "requests_per_chat", 1.0, False, worst_run=True),
        t("HTTP requests per warm chat, SDK async (trio)", "latency",
          "sdk-async-trio", "requests_per_chat", 1.0, False, worst_run=True),
    ]  # fmt: skip


def _concurrency_targets(level: int, quadratic: int, scale: int) -> list[Target]:
    t = Target
    out = []
    for loop in ("asyncio", "trio"):
        sdk = f"sdk-{loop}@{level}"
        out += [
            t(f"{level:,} streams, SDK ({loop}) wall vs aiohttp original", "concurrency",
              sdk, "seconds", 1.0, False, f"original@{level}"),
            t(f"{level:,} streams, SDK ({loop}) errors", "concurrency",
              sdk, "failed", 0, False, worst_run=True),
            t(f"{level:,} streams, SDK ({loop}) peak RSS vs aiohttp reused session", "concurrency",
              sdk, "peak_rss_mib", 1.0, False, f"aiohttp@{level}"),
        ]  # fmt: skip
    for loop in ("asyncio", "trio"):
        out.append(
            t(f"{quadratic:,} streams, SDK ({loop}) complete: streams not delivered",
              "concurrency", f"sdk-{loop}@{quadratic}", "failed", 0, False, worst_run=True)
        )  # fmt: skip
    for loop in ("asyncio", "trio"):
        sdk = f"sdk-{loop}@{scale}"
        out += [
            t(f"{scale:,} streams, SDK ({loop}) errors", "concurrency",
              sdk, "failed", 0, False, worst_run=True),
            t(f"{scale:,} streams, SDK ({loop}) wall vs its own at {level:,} streams",
              "concurrency", sdk, "seconds", scale / level * 1.1, False, f"sdk-{loop}@{level}",
              info="scale"),
        ]  # fmt: skip
    return out


def _gateway_targets(streams: int, pieces: int) -> list[Target]:
    t = Target
    return [
        t("gateway, 1 stream: CPU per piece it adds / the SDK direct's",
          "gateway", "gateway", "cpu_per_piece", 2.0, False, "sdk", excess=True),
        t(f"gateway, {streams:,} streams: CPU per piece it adds / the SDK direct's",
          "gateway", f"gateway@{streams}", "cpu_per_piece", 2.0, False, f"sdk@{streams}",
          excess=True),
        t(f"gateway, {streams:,} streaming clients x {pieces:,} pieces: errors", "gateway",
          f"gateway@{streams}", "failed", 0, False, worst_run=True, info="gateway"),
    ]  # fmt: skip


def targets(sizes: Sizes) -> list[Target]:
    """Every target of issues 11 and 12 (and the first round's that still apply)."""
    return [
        *_ratio_targets(),
        *_concurrency_targets(sizes.reference_level, sizes.quadratic_level, sizes.scale_level),
        *_gateway_targets(sizes.gateway_streams, sizes.stream_pieces),
        Target("import aichatonline vs import httpx", "import",
               "aichatonline", "seconds", 1.5, False, "httpx"),
        Target("from aichatonline import Client, AsyncClient vs import httpx", "import",
               "aichatonline-clients", "seconds", 1.5, False, "httpx"),
    ]  # fmt: skip


def _value(row: Row, metric: str, worst: bool) -> float | None:
    values = []
    for result in row.results:
        if metric == "failed":
            value = result["streams"] - result["completed"]
        elif metric == "peak_rss_mib":
            value = result["peak_rss"] / MIB
        elif metric == "cpu_per_piece" and result.get("error"):
            value = None  # a wrong answer's CPU time means nothing
        else:
            value = result.get(metric)
        if value is not None:
            values.append(value)
    if not values:
        return None
    if worst:
        return max(values)
    values.sort()
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


@dataclasses.dataclass
class Verdict:
    target: Target
    sdk: float | None
    reference: float | None
    ratio: float | None
    result: str  # PASS, MISS, n/a
    note: str = ""


def evaluate(target: Target, rows: dict[str, dict[str, Row]]) -> Verdict:
    """Judge one target from the rows of the run (``rows[scenario][key]``)."""
    scenario_rows = rows.get(target.scenario)
    if scenario_rows is None:
        return Verdict(target, None, None, None, "n/a", "scenario not run")
    sdk_row = scenario_rows.get(target.sdk)
    ref_row = scenario_rows.get(target.reference) if target.reference else None
    for row in (sdk_row, ref_row):
        if row is not None and (row.skip or (row.crashed and not row.results)):
            return Verdict(target, None, None, None, "n/a", _note(row))
    if sdk_row is None or (target.reference and ref_row is None):
        return Verdict(target, None, None, None, "n/a", "row not run")
    sdk = _value(sdk_row, target.metric, target.worst_run)
    note = _info(target, sdk_row)
    if target.reference is None:
        if sdk is None:
            return Verdict(target, None, None, None, "n/a", "no result")
        ok = sdk >= target.threshold if target.higher_is_better else sdk <= target.threshold
        return Verdict(target, sdk, None, None, "PASS" if ok else "MISS", note)
    assert ref_row is not None
    ref = _value(ref_row, target.metric, target.worst_run)
    if sdk_row.capped:
        return Verdict(target, sdk, ref, None, "MISS", "the SDK run hit the cap")
    if ref_row.capped:
        note = "the reference hit the cap: ratio is an upper bound"
    if sdk is None or ref is None or ref == 0:
        return Verdict(target, sdk, ref, None, "n/a", "no result")
    ratio = sdk / ref - 1 if target.excess else sdk / ref
    ok = ratio >= target.threshold if target.higher_is_better else ratio <= target.threshold
    if target.metric == "rate":
        cpu_sdk, cpu_ref = sdk_row.median("client_cpu"), ref_row.median("client_cpu")
        pieces_sdk, pieces_ref = sdk_row.spec["pieces"], ref_row.spec["pieces"]
        if cpu_sdk and cpu_ref:
            note = f"by client CPU time: {(pieces_sdk / cpu_sdk) / (pieces_ref / cpu_ref):.2f}"
    return Verdict(target, sdk, ref, ratio, "PASS" if ok else "MISS", note)


def _info(target: Target, row: Row) -> str:
    """The figures a target's note reports besides its own (issue 12 and 11 want them)."""
    if target.info == "scale":
        per_stream = _rss_per_stream(row)
        return (
            f"peak RSS {_mib(row.median('peak_rss'))} MiB, "
            f"{_num(None if per_stream is None else per_stream / 1024, ',.1f')} KiB per stream"
        )
    if target.info == "gateway":
        return (
            f"wall {_num(row.median('seconds'), '.2f')} s, first piece p99 "
            f"{_ms0(row.median('first_p99'))} ms, gateway peak RSS "
            f"{_mib(row.median('gateway_peak_rss'))} MiB"
        )
    return ""


def _format_value(metric: str, value: float | None) -> str:
    if value is None:
        return DASH
    if metric == "rate":
        return f"{value:,.0f}/s"
    if metric == "cpu_per_piece":
        return f"{value * 1e6:.2f} µs"
    if metric in ("p50", "seconds"):
        return f"{value * 1e3:.3f} ms" if value < 1 else f"{value:.2f} s"
    if metric == "peak_rss_mib":
        return f"{value:.1f}"
    return f"{value:g}"


def render_targets(verdicts: list[Verdict], markdown: bool) -> str:
    """The targets table."""
    headers = ["target", "SDK", "reference", "ratio", "target", "result", "note"]
    body = []
    for v in verdicts:
        t = v.target
        sign = "≥" if t.higher_is_better else "≤"
        wanted = f"{sign} {t.threshold:g}{'x' if t.reference else ''}"
        if t.excess:
            wanted = f"adds {wanted}"
        body.append([
            t.text,
            _format_value(t.metric, v.sdk),
            _format_value(t.metric, v.reference),
            DASH if v.ratio is None else f"{v.ratio:.2f}x",
            wanted,
            v.result,
            v.note,
        ])  # fmt: skip
    return table(headers, body, markdown)


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
