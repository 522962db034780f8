"""``python -m benchmarks``: measure the SDK against the reference stacks, in one run.

``python -m benchmarks soak ...`` runs the reliability soak instead (``benchmarks/soak``:
streams under faults, every outcome checked; ``python -m benchmarks soak --help``).

Options: ``--quick`` (the CI smoke test: tiny sizes, one run, every scenario
and stack touched, speed not judged), ``--only SCENARIO`` (repeatable or
comma-separated), ``--runs N``, ``--markdown``, ``--profile DIR`` (one extra
profiled run of every SDK row), ``--json PATH`` (every raw result).

The exit code is 0 when every measurement ran and every stream delivered the
right text, 1 when a measurement crashed (whatever the figures were): the
targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pstats
import re
import sys
import time
from pathlib import Path

from .report import environment, render_scenario, server_line
from .rows import build_rows
from .scenarios import FULL, QUICK, SCENARIOS, Row, Sizes, run_import, run_rows
from .server import raise_fd_limit
from .targets import evaluate, render_targets, targets

TITLES = {
    "throughput": "1. One stream: pieces per second ({s.throughput_pieces:,} pieces of 30 bytes; "
    "openai {s.openai_pieces:,})",
    "latency": "2. Warm first-piece latency: {s.latency_calls} sequential one-piece chats per run "
    "(after {s.latency_warmup} unmeasured)",
    "concurrency": "3. Concurrent streams of {s.stream_pieces:,} pieces: SDK on one AsyncClient; "
    "answers held until every stream is open",
    "long": "4. One long answer of {s.long_pieces:,} pieces: memory while streaming "
    "(RSS sampled every {s.sample_every:,} pieces)",
    "gateway": "5. The OpenAI-compatible gateway, one uvicorn worker: one stream of "
    "{s.gateway_pieces:,} pieces, then {s.gateway_streams:,} concurrent streaming clients x "
    "{s.stream_pieces:,} pieces; the SDK direct beside it",
    "import": "6. Import time in a fresh interpreter (bytecode cached)",
}


def _scenarios(values: list[str]) -> list[str]:
    chosen: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name not in SCENARIOS:
                raise argparse.ArgumentTypeError(
                    f"no scenario {name!r}; choose from {', '.join(SCENARIOS)}"
                )
            if name not in chosen:
                chosen.append(name)
    return [name for name in SCENARIOS if name in chosen]


def _top_costs(path: str, count: int) -> list[str]:
    """The ``count`` functions with the most own time in a cProfile dump, as file:line."""
    stats = pstats.Stats(path)
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    lines = []
    for (filename, lineno, function), (_, calls, own, cumulative, _) in entries[:count]:
        # Paths as a reader would look them up: package-relative, or repo-relative.
        where = re.sub(r"^.*/lib/python3\.\d+/(site-packages/)?", "", filename)
        where = where.replace(str(Path(__file__).resolve().parents[1]) + "/", "")
        lines.append(
            f"    {own:7.3f} s own {cumulative:7.3f} s cum {calls:>9,} calls  "
            f"{where}:{lineno}({function})"
        )
    return lines


def _print_profiles(all_rows: dict[str, dict[str, Row]]) -> None:
    print("\nProfiles (one extra run per SDK row; profiler overhead inflates every cost):")
    for scenario, rows in all_rows.items():
        for row in rows.values():
            if not row.profile or scenario == "import":
                continue
            print(f"\n  {scenario} / {row.label}: {row.profile}")
            if row.profile.endswith(".prof") and Path(row.profile).exists():
                print("\n".join(_top_costs(row.profile, 12)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        from .soak import main as soak_main

        return soak_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The aichatonline SDK against the reference stacks, on a loopback server.",
        epilog="python -m benchmarks soak --help: the reliability soak (streams under faults).",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these scenarios ({', '.join(SCENARIOS)}); repeat or comma-separate",
    )
    parser.add_argument("--runs", type=int, help="runs per row (default: 5, 3 for the big ones)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile the SDK rows into DIR")
    parser.add_argument(
        "--profiler",
        choices=("cprofile", "pyinstrument", "tracemalloc"),
        default="cprofile",
        help="for --profile (tracemalloc: who holds memory; for concurrency and long)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every raw result here")
    args = parser.parse_args(argv)
    try:
        selected = _scenarios(args.only) if args.only else list(SCENARIOS)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    sizes: Sizes = QUICK if args.quick else FULL
    # The workers (and the gateway they start) inherit it: 10,000 streams need 10,000+
    # descriptors. Where it cannot go high enough, the rows that need more are skipped.
    fd_note = raise_fd_limit()

    started = time.perf_counter()
    print(environment(fd_note))
    if args.quick:
        print("QUICK MODE: tiny sizes, one run each. A smoke test: the figures mean nothing.")
    all_rows: dict[str, dict[str, Row]] = {}
    crashed = False
    for scenario in selected:
        runs = args.runs or sizes.runs[scenario]
        if scenario == "import":
            rows = run_import(runs, args.profile)
        else:
            rows = build_rows(scenario, sizes)
            run_rows(scenario, rows, runs, sizes, args.profile, args.profiler)
        all_rows[scenario] = {row.key: row for row in rows}
        crashed = crashed or any(row.crashed for row in rows)
        heading = TITLES[scenario].format(s=sizes) + f"; median of {runs} run(s)"
        print(f"\n{'### ' if args.markdown else ''}{heading}\n")
        print(render_scenario(scenario, rows, args.markdown))
        if scenario != "import":
            print(f"\n{server_line(rows)}")
        sys.stdout.flush()

    verdicts = [
        evaluate(target, all_rows) for target in targets(sizes) if target.scenario in selected
    ]
    if verdicts:
        print(f"\n{'### ' if args.markdown else ''}Targets (SDK / reference, same run)\n")
        print(render_targets(verdicts, args.markdown))
        passed = sum(v.result == "PASS" for v in verdicts)
        missed = sum(v.result == "MISS" for v in verdicts)
        print(f"\n{passed} PASS, {missed} MISS, {len(verdicts) - passed - missed} n/a")
    if args.profile:
        _print_profiles(all_rows)
    if args.json:
        raw = {
            scenario: {key: dataclasses.asdict(row) for key, row in rows.items()}
            for scenario, rows in all_rows.items()
        }
        args.json.write_text(json.dumps(raw, indent=1))
    took = time.perf_counter() - started
    print(f"\nTook {took:.0f} s.{' Some measurements CRASHED: see the notes.' if crashed else ''}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
