"""``python -m benchmarks soak``: a published reliability figure, from a command anyone can rerun.

The SDK promises that a stream never loses or repeats text and that every failure is a
typed error. The soak holds it to that at scale, under faults, with memory flat:

- default: 100,000 streamed chats through ONE ``AsyncClient`` (asyncio, 1,000 at a time)
  against the bundled server in a child process, with issue 19's fault mix (``check.SOAK_MIX``:
  1 % dropped mid-stream, 0.5 % 429 with ``Retry-After: 0``, 0.5 % 503, 0.2 % token expiry,
  0.1 % a malformed line, 0.1 % a stall longer than the client's read timeout), each dealt on
  a stream's first attempt only (``aichatonline.testing.FaultMix``);
- ``--backend trio``: the same on trio; ``--sync``: one blocking ``Client`` from 32 threads;
- ``--gateway``: the OpenAI-compatible gateway under churn (``gateway.py``).

Every stream is judged (``check.py``); the summary (``--json``) and the table are built in
``report.py``; the clients are driven in ``clients.py``. The exit code is 1 when any promise
broke (a wrong outcome, a character lost or repeated, a fault that left no trace, memory that
grew after the warm-up, a descriptor or connection left open), 0 otherwise. Only the SDK's
public API is used, so the same command measures whatever carries the bytes underneath.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULTS", "main"]

#: (streams, concurrency) by mode: sized so that the three client soaks together, run one
#: after the other on a 2-core machine, finish well within 15 minutes.
DEFAULTS = {
    "asyncio": (100_000, 1_000),
    "trio": (50_000, 1_000),
    "sync": (10_000, 32),
    "gateway": (10_000, 500),
}


def _positive(kind: type, low: float = 0, strict: bool = True) -> Any:
    """An argparse type: a number of ``kind`` above ``low`` (or at least ``low``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low or (strict and value == low) or value != value:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'>' if strict else '>='} {low}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks soak",
        description="Streams under faults through one client (or the gateway): every outcome "
        "checked, memory, descriptors and connections watched. Exit code 1 if any promise broke.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sync", action="store_true", help="the blocking Client from threads")
    mode.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="for AsyncClient"
    )
    mode.add_argument("--gateway", action="store_true", help="the gateway under churn")
    sizes = ", ".join(f"{mode} {n:,}/{c:,}" for mode, (n, c) in DEFAULTS.items())
    parser.add_argument(
        "--streams", type=_positive(int), help=f"streams in all (default by mode: {sizes})"
    )
    parser.add_argument(
        "--concurrency", type=_positive(int), help="streams at once (threads with --sync)"
    )
    parser.add_argument("--seed", type=int, default=1, help="deals the faults (%(default)s)")
    parser.add_argument(
        "--words", type=_positive(int), default=12, help="average words per prompt (%(default)s)"
    )
    parser.add_argument(
        "--piece-size", type=_positive(int), default=8, help="characters per piece (%(default)s)"
    )
    parser.add_argument(
        "--read-timeout", type=_positive(float), default=5.0, help="client's (%(default)s s)"
    )
    parser.add_argument(
        "--stall", type=_positive(float), default=8.0, help="a stall's length (%(default)s s)"
    )
    parser.add_argument(
        "--max-retries",
        type=_positive(int, strict=False),
        default=3,
        help="the client's retries (%(default)s)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the summary here ('-': stdout)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")
    parser.add_argument(
        "--report",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="print the table of saved summaries side by side, run nothing",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one soak (or render saved ones) and return the exit code."""
    args = _parser().parse_args(argv)
    from .report import render

    if args.report:
        summaries = [json.loads(path.read_text()) for path in args.report]
        print(render(summaries, args.markdown))
        return 1 if any(summary["problems"] for summary in summaries) else 0
    if args.stall <= args.read_timeout:
        _parser().error("--stall must be longer than --read-timeout")
    from ..server import raise_fd_limit

    raise_fd_limit()  # a child server inherits it: 1,000 streams need 1,000+ descriptors
    mode = "sync" if args.sync else "gateway" if args.gateway else args.backend
    streams, concurrency = DEFAULTS[mode]
    streams, concurrency = args.streams or streams, args.concurrency or concurrency
    progress = sys.stderr.isatty() and not args.no_progress
    out = sys.stderr if args.json == "-" else sys.stdout
    summary = _run(mode, args, streams, concurrency, progress, out)
    print(render([summary], args.markdown), file=out)
    for problem in summary["problems"]:
        print(f"PROBLEM: {problem}", file=out)
    for example in summary.get("examples", []):
        print(f"  e.g. {example}", file=out)
    for example in summary.get("error_examples", []):
        print(f"  error: {example}", file=out)
    for note in summary.get("notes", []):
        print(f"note: {note}", file=out)
    if args.json == "-":
        print(json.dumps(summary, indent=1))
    elif args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if summary["problems"] else 0


def _run(
    mode: str,
    args: argparse.Namespace,
    streams: int,
    concurrency: int,
    progress: bool,
    out: Any,
) -> dict[str, Any]:
    from .check import SOAK_MIX

    mix = dataclasses.replace(SOAK_MIX, stall_seconds=args.stall, seed=args.seed)
    if mode == "gateway":
        from .gateway import DISCONNECT_SHARE, UPSTREAM_DROPS, GatewayConfig, run_gateway_soak

        print(
            f"soak gateway: {streams:,} streamed requests, {concurrency:,} at once, seed "
            f"{args.seed}, {DISCONNECT_SHARE:.0%} of clients leaving early, "
            f"{UPSTREAM_DROPS:.0%} upstream drops; gateway max_retries {args.max_retries}",
            file=out,
            flush=True,
        )

        return run_gateway_soak(
            GatewayConfig(
                streams=streams,
                concurrency=concurrency,
                seed=args.seed,
                words=args.words,
                piece_size=args.piece_size,
                max_retries=args.max_retries,
                progress=progress,
            )
        )
    print(
        f"soak {mode}: {streams:,} streams, {concurrency:,} at once, seed {args.seed}, "
        f"faults {mix}; read timeout {args.read_timeout} s, max_retries {args.max_retries}",
        file=out,
        flush=True,
    )
    from .clients import ClientConfig, run_client_soak
    from .report import client_summary

    config = ClientConfig(
        flavor=mode,
        streams=streams,
        concurrency=concurrency,
        seed=args.seed,
        mix=mix,
        words=args.words,
        piece_size=args.piece_size,
        read_timeout=args.read_timeout,
        max_retries=args.max_retries,
        progress=progress,
    )
    return client_summary(config, run_client_soak(config))
