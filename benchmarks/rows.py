"""The rows of each scenario: which stacks run, with what settings, in table order.

A row is one stack in one setting (parser, event loop, streams, line shape); the
scenarios (``benchmarks/scenarios.py``) run each row's measurements, and the targets
(``benchmarks/targets.py``) find the rows by their keys. A row whose package is missing,
or that needs more open files than this process may have, is built skipped, with a note
saying why.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .answers import SHAPES, shape_example
from .scenarios import Row, Sizes
from .server import fd_limit
from .stacks import LABELS, missing_packages

__all__ = ["FD_MARGIN", "build_rows", "fd_need", "shape_key"]


def shape_key(key: str, shape: str) -> str:
    """The key of a throughput row on lines of ``shape`` (the usual shape's keys are bare)."""
    return key if shape == "usual" else f"{key}/{shape}"


def _sdk_parser_label(parser: str) -> str:
    if parser == "stdlib":
        return "json (orjson blocked)"
    return "orjson" if importlib.util.find_spec("orjson") else "json (orjson absent)"


#: Descriptors a process needs besides one per connection (interpreter, pipes, epoll, ...).
FD_MARGIN = 200


def fd_need(stack: str, streams: int) -> int:
    """Open files the busiest process of a measurement of ``streams`` streams needs.

    One per connection in the worker and in the bench server (which raises its own limit
    the same way); the gateway holds two per stream (its client's and its upstream).
    """
    return streams * (2 if stack == "gateway" else 1) + FD_MARGIN


def _row(key: str, stack: str, label: str, spec: dict[str, Any], **kwargs: Any) -> Row:
    parser = spec.get("parser", "stdlib")
    backend = spec.get("backend") or "asyncio"
    check_parser = "orjson" if (stack.startswith("floor") and parser == "orjson") else "stdlib"
    missing = missing_packages(stack, check_parser, backend)
    skip = f"skipped: {', '.join(missing)} not installed" if missing else None
    streams = spec.get("streams", 0)
    if skip is None and streams and fd_need(stack, streams) > fd_limit():
        skip = (
            f"skipped: {streams:,} streams need about {fd_need(stack, streams):,} open files, "
            f"the limit is {fd_limit():,} and this process may not raise it further (see the "
            "header; a higher hard limit, e.g. `ulimit -Hn` as root, lets it run)"
        )
    return Row(key, label, {"stack": stack, **spec}, skip=skip, **kwargs)


def _throughput_rows(sizes: Sizes) -> list[Row]:
    """The floors, the SDK (each parser, each loop), the SDK and the orjson floor on every
    other line shape, the SDK on aiohttp, and the references."""
    has_orjson = importlib.util.find_spec("orjson") is not None
    common = {"scenario": "throughput", "pieces": sizes.throughput_pieces, "warm_pieces": 100}
    rows = [
        _row("floor", "floor", LABELS["floor"], {**common, "parser": "stdlib"}),
        _row("floor-orjson", "floor", LABELS["floor-orjson"], {**common, "parser": "orjson"}),
    ]

    def sdk(stack: str, backend: str | None, parser: str, shape: str = "usual") -> Row:
        where = "" if backend is None else f" ({backend})"
        key = shape_key(f"{stack}{'-trio' if backend == 'trio' else ''}+{parser}", shape)
        label = f"{LABELS[stack]}{where}, {_sdk_parser_label(parser)}"
        if shape != "usual":
            label += f", lines {shape_example(shape)}"
        spec = {**common, "parser": parser, "backend": backend, "shape": shape}
        row = _row(key, stack, label, spec)
        if parser == "default" and not has_orjson and row.skip is None:
            row.skip = "skipped: orjson not installed (the stdlib row is the SDK)"
        return row

    for stack, backend in (("sdk-sync", None), ("sdk-async", "asyncio"), ("sdk-async", "trio")):
        parsers = ("stdlib", "default") if backend != "trio" else ("default",)
        rows += [sdk(stack, backend, parser) for parser in parsers]
    # The same answer in other line shapes: the default clients against the orjson floor,
    # which parses every line whatever its shape.
    for shape in SHAPES:
        if shape == "usual":
            continue
        label = f"{LABELS['floor-orjson']}, lines {shape_example(shape)}"
        spec = {**common, "parser": "orjson", "shape": shape}
        rows += [
            _row(shape_key("floor-orjson", shape), "floor", label, spec),
            sdk("sdk-sync", None, "default", shape),
            sdk("sdk-async", "asyncio", "default", shape),
        ]
    rows += [
        _row(
            "sdk-aiohttp",
            "sdk-aiohttp",
            f"{LABELS['sdk-aiohttp']} (asyncio), {_sdk_parser_label('default')}",
            {**common, "parser": "default", "backend": "asyncio"},
        ),
        _row("original", "original", LABELS["original"], {**common, "backend": "asyncio"}),
        _row("httpx-sync", "httpx-sync", LABELS["httpx-sync"], common),
        _row(
            "httpx-async",
            "httpx-async",
            LABELS["httpx-async"] + " (asyncio)",
            {**common, "backend": "asyncio"},
        ),
        _row(
            "aiohttp",
            "aiohttp",
            LABELS["aiohttp"] + ", lines + json.loads",
            {**common, "backend": "asyncio", "parser": "stdlib"},
        ),
        _row("openai", "openai", LABELS["openai"], {**common, "pieces": sizes.openai_pieces}),
    ]
    return rows


def _latency_rows(sizes: Sizes) -> list[Row]:
    """Each SDK client beside the bare httpx client it runs on (same loop), then the
    raw-socket floors, aiohttp with a reused session and the original's way of calling."""
    common = {
        "scenario": "latency",
        "calls": sizes.latency_calls,
        "warmup": sizes.latency_warmup,
        "parser": "default",
    }
    asyncio, trio = {**common, "backend": "asyncio"}, {**common, "backend": "trio"}
    bare_async = "bare httpx.AsyncClient POST, same headers"
    return [
        _row("sdk-sync", "sdk-sync", LABELS["sdk-sync"] + " (warm client)", common),
        _row(
            "httpx-sync",
            "httpx-sync",
            "bare httpx.Client POST, same headers (warm client)",
            common,
        ),
        _row("sdk-async", "sdk-async", LABELS["sdk-async"] + " (asyncio, warm client)", asyncio),
        _row("httpx-async", "httpx-async", f"{bare_async} (asyncio, warm client)", asyncio),
        _row("sdk-async-trio", "sdk-async", LABELS["sdk-async"] + " (trio, warm client)", trio),
        _row("httpx-async-trio", "httpx-async", f"{bare_async} (trio, warm client)", trio),
        _row(
            "sdk-aiohttp",
            "sdk-aiohttp",
            LABELS["sdk-aiohttp"] + " (asyncio, warm client)",
            asyncio,
        ),
        _row("floor-1req", "floor-1req", LABELS["floor-1req"], {**common, "parser": "stdlib"}),
        _row(
            "aiohttp",
            "aiohttp",
            LABELS["aiohttp"],
            {**asyncio, "parser": "stdlib"},
        ),
        _row(
            "original",
            "original",
            "original provider's way (aiohttp: new session + token per call)",
            {**asyncio, "parser": "stdlib"},
        ),
        _row(
            "floor",
            "floor",
            "raw socket, token + chat per call, one kept-alive socket",
            {**common, "parser": "stdlib"},
        ),
    ]


def _concurrency_rows(sizes: Sizes) -> list[Row]:
    """The SDK's default AsyncClient at every level (asyncio, trio), then at the reference
    level the SDK on DefaultAioHttpClient and the references."""
    common = {
        "scenario": "concurrency",
        "pieces": sizes.stream_pieces,
        "warm_pieces": 10,
        "parser": "default",
    }
    rows = []
    for level in sizes.levels:
        for backend in ("asyncio", "trio"):
            spec = {**common, "streams": level, "backend": backend, "cap": sizes.sdk_cap}
            label = f"SDK, one AsyncClient ({backend})"
            rows.append(_row(f"sdk-{backend}@{level}", "sdk-async", label, spec, cap=sizes.sdk_cap))
    level, cap = sizes.reference_level, sizes.reference_cap
    spec = {**common, "streams": level, "backend": "asyncio", "cap": cap, "parser": "stdlib"}
    aio = {**spec, "parser": "default", "cap": sizes.sdk_cap}
    return [
        *rows,
        _row(
            f"sdk-aiohttp@{level}",
            "sdk-aiohttp",
            "SDK, one AsyncClient on DefaultAioHttpClient (asyncio)",
            aio,
            cap=sizes.sdk_cap,
        ),
        _row(f"original@{level}", "original", LABELS["original"], spec, cap=cap),
        _row(f"aiohttp@{level}", "aiohttp", LABELS["aiohttp"], spec, cap=cap),
        # ~25-40 s a run and no target depends on it: one run keeps the full bench short.
        _row(
            f"httpx-naive@{level}",
            "httpx-naive",
            LABELS["httpx-naive"],
            spec,
            cap=cap,
            max_runs=1,
        ),
    ]


def build_rows(scenario: str, sizes: Sizes) -> list[Row]:
    """The rows of ``scenario``: the SDK's and the references', in table order."""
    rows: list[Row] = []
    if scenario == "throughput":
        rows += _throughput_rows(sizes)
    elif scenario == "latency":
        rows += _latency_rows(sizes)
    elif scenario == "concurrency":
        rows += _concurrency_rows(sizes)
    elif scenario == "long":
        common = {
            "scenario": "long",
            "pieces": sizes.long_pieces,
            "warm_pieces": 100,
            "sample_every": sizes.sample_every,
            "parser": "default",
        }
        rows += [
            _row("sdk-sync", "sdk-sync", LABELS["sdk-sync"], common),
            _row(
                "sdk-async",
                "sdk-async",
                LABELS["sdk-async"] + " (asyncio)",
                {**common, "backend": "asyncio"},
            ),
            _row(
                "floor",
                "floor",
                LABELS["floor"] + " (keeps no text)",
                {**common, "parser": "stdlib"},
            ),
        ]
    elif scenario == "gateway":
        rows += _gateway_rows(sizes)
    else:
        raise ValueError(f"no such scenario: {scenario}")
    for row in rows:
        row.spec.setdefault("backend", None)
    return rows


def _gateway_rows(sizes: Sizes) -> list[Row]:
    """The SDK direct and through the gateway: one stream, then many concurrent clients.

    The gateway rows run the worker's throughput and concurrency measurements on the
    ``gateway`` stack (a fresh gateway process per measurement); the SDK rows the same
    measurements on ``AsyncClient`` directly, so that the gateway's cost per piece can be
    set beside the SDK's own. Without Starlette or uvicorn the whole scenario is skipped.
    """
    # uvicorn runs the gateway on uvloop when it is installed: the SDK direct runs on the
    # same event loop, so that the comparison is of the gateway's work, not of the loops.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    one = {
        "scenario": "throughput",
        "pieces": sizes.gateway_pieces,
        "warm_pieces": 100,
        "parser": "default",
        "backend": "asyncio",
        "loop": loop,
    }
    streams = sizes.gateway_streams
    many = {
        "scenario": "concurrency",
        "pieces": sizes.stream_pieces,
        "warm_pieces": 10,
        "parser": "default",
        "backend": "asyncio",
        "streams": streams,
        "cap": sizes.sdk_cap,
        "loop": loop,
    }
    on = "asyncio on uvloop, as the gateway" if loop == "uvloop" else "asyncio, as the gateway"
    direct = f"{LABELS['sdk-async']} direct ({on})"
    rows = [
        _row("sdk", "sdk-async", direct, one),
        _row("gateway", "gateway", LABELS["gateway"], one),
        _row(f"sdk@{streams}", "sdk-async", direct, many, cap=sizes.sdk_cap),
        _row(f"gateway@{streams}", "gateway", LABELS["gateway"], many, cap=sizes.sdk_cap),
    ]
    missing = next((row.skip for row in rows if row.spec["stack"] == "gateway" and row.skip), None)
    if missing and "not installed" in missing:
        for row in rows:  # the SDK rows too: they only exist to be set beside the gateway
            row.skip = missing + " (the gateway extra: pip install -e '.[bench]')"
    return rows
