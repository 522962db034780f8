"""The targets: each goal of the issues as a same-run ratio, SDK / reference, and PASS/MISS.

Ratios are oriented so that the target reads as written in the issue: a throughput
ratio above 1 means the SDK is faster, a time ratio below 1 means the SDK is faster.

Where they come from: issue 17 (the SDK on httpx: one stream's pieces per second on the
default clients against the orjson floor for every line shape; the warm first piece
against a bare httpx client; 1,000 and 10,000 streams; ``DefaultAioHttpClient`` against
the original provider's aiohttp way), issue 12 (the stdlib rows, the original's way, one
request per warm chat, the quadratic-pool and scaling checks), issue 11 (the gateway) and
the first round (import time). The first-piece targets that held the SDK's own HTTP stack
(which issue 17 removed) to references an httpx request cannot reach are gone: the sync
client against the raw-socket one-request floor, the async clients against aiohttp with a
reused session, and the default clients at 0.6x the original's way of calling (a bare
httpx request alone takes about as long as the original's two aiohttp requests). The
rows stay in the table.
"""

from __future__ import annotations

import dataclasses

from .answers import SHAPES, shape_example
from .report import (
    DASH,
    MIB,
    fmt_mib,
    fmt_ms0,
    fmt_num,
    row_note,
    rss_per_stream,
    table,
)
from .rows import shape_key
from .scenarios import Row, Sizes

__all__ = ["Target", "Verdict", "evaluate", "render_targets", "targets"]


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


def _throughput_targets() -> list[Target]:
    t = Target
    out = [
        # No regression (issue 12): the SDK without orjson, against the stdlib floor and
        # the original provider's way.
        t("1 stream, SDK sync (stdlib json) vs the stdlib floor", "throughput",
          "sdk-sync+stdlib", "rate", 0.9, True, "floor"),
        t("1 stream, SDK async (stdlib json) vs the stdlib floor", "throughput",
          "sdk-async+stdlib", "rate", 0.85, True, "floor"),
        t("1 stream, SDK sync (stdlib json) vs the original's way", "throughput",
          "sdk-sync+stdlib", "rate", 2.5, True, "original"),
        t("1 stream, SDK async (stdlib json) vs the original's way", "throughput",
          "sdk-async+stdlib", "rate", 2.5, True, "original"),
    ]  # fmt: skip
    # Issue 17: the default clients against the per-line orjson floor on the same lines,
    # for every line shape.
    for shape in SHAPES:
        lines = f", lines {shape_example(shape)}"
        out += [
            t(f"1 stream, SDK sync vs the orjson floor{lines}", "throughput",
              shape_key("sdk-sync+default", shape), "rate", 0.85, True,
              shape_key("floor-orjson", shape)),
            t(f"1 stream, SDK async (asyncio) vs the orjson floor{lines}", "throughput",
              shape_key("sdk-async+default", shape), "rate", 0.8, True,
              shape_key("floor-orjson", shape)),
        ]  # fmt: skip
    out.append(
        t(f"1 stream, SDK async (trio) vs the orjson floor, lines {shape_example('usual')}",
          "throughput", "sdk-async-trio+default", "rate", 0.8, True, "floor-orjson")
    )  # fmt: skip
    return out


def _latency_targets() -> list[Target]:
    t = Target
    return [
        # Issue 17: no slower than a bare httpx request on a warm client, same loop.
        t("first piece p50, SDK sync vs a bare httpx.Client POST", "latency",
          "sdk-sync", "p50", 1.0, False, "httpx-sync"),
        t("first piece p50, SDK async (asyncio) vs a bare httpx.AsyncClient POST", "latency",
          "sdk-async", "p50", 1.0, False, "httpx-async"),
        t("first piece p50, SDK async (trio) vs a bare httpx.AsyncClient POST (trio)",
          "latency", "sdk-async-trio", "p50", 1.0, False, "httpx-async-trio"),
        t("first piece p50, SDK on DefaultAioHttpClient vs the original's way of calling",
          "latency", "sdk-aiohttp", "p50", 0.6, False, "original"),
        t("HTTP requests per warm chat, SDK sync", "latency",
          "sdk-sync", "requests_per_chat", 1.0, False, worst_run=True),
        t("HTTP requests per warm chat, SDK async (asyncio)", "latency",
          "sdk-async", "requests_per_chat", 1.0, False, worst_run=True),
        t("HTTP requests per warm chat, SDK async (trio)", "latency",
          "sdk-async-trio", "requests_per_chat", 1.0, False, worst_run=True),
        t("HTTP requests per warm chat, SDK on DefaultAioHttpClient", "latency",
          "sdk-aiohttp", "requests_per_chat", 1.0, False, worst_run=True),
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
            t(f"{level:,} streams, SDK ({loop}) peak RSS vs aiohttp original", "concurrency",
              sdk, "peak_rss_mib", 1.0, False, f"original@{level}"),
            t(f"{level:,} streams, SDK ({loop}) peak RSS vs aiohttp reused session", "concurrency",
              sdk, "peak_rss_mib", 1.0, False, f"aiohttp@{level}"),
        ]  # fmt: skip
    aio = f"sdk-aiohttp@{level}"
    out += [
        t(f"{level:,} streams, SDK on DefaultAioHttpClient wall vs aiohttp original",
          "concurrency", aio, "seconds", 0.5, False, f"original@{level}"),
        t(f"{level:,} streams, SDK on DefaultAioHttpClient errors", "concurrency",
          aio, "failed", 0, False, worst_run=True),
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
    """Every target of issues 17, 12 and 11 (and the first round's that still apply)."""
    return [
        *_throughput_targets(),
        *_latency_targets(),
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
            return Verdict(target, None, None, None, "n/a", row_note(row))
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
        per_stream = rss_per_stream(row)
        return (
            f"peak RSS {fmt_mib(row.median('peak_rss'))} MiB, "
            f"{fmt_num(None if per_stream is None else per_stream / 1024, ',.1f')} KiB per stream"
        )
    if target.info == "gateway":
        return (
            f"wall {fmt_num(row.median('seconds'), '.2f')} s, first piece p99 "
            f"{fmt_ms0(row.median('first_p99'))} ms, gateway peak RSS "
            f"{fmt_mib(row.median('gateway_peak_rss'))} MiB"
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
