"""The reliability soak (``python -m benchmarks soak``): its judge, and a smoke run of each kind.

The judge (``benchmarks/soak/check.py``) is tested on outcomes made up to break each rule:
text lost, repeated, a ``.partial`` that is not what was delivered, a foreign error, a fault
that left no trace. Then the real command runs small: 2,000 streams through one
``AsyncClient`` on asyncio under the full fault mix (the CI smoke version of the default
soak), a few hundred on trio and from threads, and the gateway soak with a few hundred
requests; each must exit 0 with every promise kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aichatonline import APIConnectionError, AuthenticationError, StreamInterrupted
from aichatonline.testing import FaultMix, reply_for
from benchmarks.soak.check import SOAK_MIX, Plan, Tally, char_damage

ROOT = Path(__file__).resolve().parents[1]


def stream(text: str, retries: int = 0, anomalies: int = 0) -> Any:
    """What the judge reads of a finished stream (``.text``, ``.retries``, ``.anomalies``)."""
    return SimpleNamespace(text=text, retries=retries, anomalies=anomalies)


# --------------------------------------------------------------------------- the judge


def test_char_damage() -> None:
    assert char_damage("abcdef", "abcdef", complete=True) == (0, 0)
    assert char_damage("abcdef", "abc", complete=False) == (0, 0)  # a start: nothing lost yet
    assert char_damage("abcdef", "abc", complete=True) == (3, 0)  # claimed whole: 3 lost
    assert char_damage("abcdef", "abcdcdef", complete=True) == (0, 2)  # "cd" twice
    assert char_damage("abcdef", "abdef", complete=True) == (1, 0)
    assert char_damage("abcdef", "abd", complete=False) == (1, 0)  # "c" skipped
    assert char_damage("abcdef", "abcabc", complete=False) == (0, 3)


def test_the_judge() -> None:
    expected = "Hello, world"
    tally = Tally()
    tally.record(expected, ["Hello", ", world"], stream(expected, retries=1), None, "drop")
    tally.record(expected, [], stream(""), AuthenticationError("no", status_code=401), "drop")
    partial = StreamInterrupted("cut", partial="Hello")
    tally.record(expected, ["Hello"], stream("Hello"), partial, None)
    assert (tally.streams, tally.exact, tally.wrong, tally.retries) == (3, 1, 0, 1)
    assert tally.typed_errors == {"AuthenticationError": 1, "StreamInterrupted": 1}
    assert not tally.failed

    wrong = [
        (["Hello", "Hello"], stream("HelloHello"), None),  # repeated, and not the text
        (["Hello"], stream("Hello"), None),  # lost: "completed" early
        (["Hel"], stream("Hel"), StreamInterrupted("cut", partial="Hello")),  # bad .partial
        (["Hel"], stream("Hel"), APIConnectionError("gone")),  # text, then not interrupted
        ([], stream(""), KeyError("data")),  # not the SDK's error
        (["Hello"], stream("Hell"), None),  # .text is not what was delivered
    ]
    for pieces, finished, error in wrong:
        tally = Tally()
        tally.record(expected, pieces, finished, error, None)
        assert tally.wrong == 1, (pieces, error)
        assert tally.failed
        assert tally.examples
    tally = Tally()
    tally.record(expected, ["Hello", "Hello"], stream("HelloHello"), None, None)
    assert (tally.chars_lost, tally.chars_repeated) == (6, 4)  # "Hello" and an "l" matched


def test_a_fault_without_a_trace_is_counted() -> None:
    tally = Tally()
    for kind in ("drop", "rate_limit", "unavailable", "stall", "malformed", "expire_token"):
        tally.record("ab", ["ab"], stream("ab"), None, kind)
    # A token refresh is not a retry: an expiry leaves nothing to check.
    assert tally.faults_without_trace == dict.fromkeys(
        ["drop", "rate_limit", "unavailable", "stall", "malformed"], 1
    )
    merged = Tally()
    merged.merge(tally)
    merged.merge(tally)
    assert merged.faults_without_trace["drop"] == 2
    assert merged.streams == 12


def test_the_plan_is_seeded() -> None:
    plan = Plan(7, FaultMix(drop=0.5, seed=7), words=6)
    again = Plan(7, FaultMix(drop=0.5, seed=7), words=6)
    assert [plan.prompt(i) for i in range(50)] == [again.prompt(i) for i in range(50)]
    assert plan.expected(3) == reply_for(plan.prompt(3))
    assert plan.mix.kind_for(plan.warmup_id()) is None
    assert Plan(8, plan.mix, 6).prompt(3) != plan.prompt(3)
    assert abs(sum(SOAK_MIX.__dict__[k] for k in ("drop", "stall")) - 0.011) < 1e-12


# --------------------------------------------------------------------------- smoke runs


def soak(*args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks soak ARGS --json -``; return its summary (exit code 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHATONLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "soak", *args, "--json", "-", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    assert summary["problems"] == []
    assert (summary["wrong"], summary["chars_lost"], summary["chars_repeated"]) == (0, 0, 0)
    return summary


def test_the_ci_smoke_soak() -> None:
    """The default soak, small: 2,000 streams on asyncio, 1,000 at once, the whole fault mix."""
    summary = soak("--streams", "2000", "--read-timeout", "3", "--stall", "4")
    assert summary["streams"] == 2000
    assert summary["exact"] + sum(summary["typed_errors"].values()) == 2000
    dealt = summary["server"]["mixed_faults"]
    assert dealt["drop"] > 0
    assert sum(dealt.values()) <= sum(summary["faults_planned"].values())
    assert summary["faults_without_trace"] == {}
    assert summary["fds_end"] <= summary["fds_start"]
    assert summary["connections"]["after close"] == 0
    assert set(summary["rss_mib"]) == {"10%", "50%", "100%"}


@pytest.mark.parametrize("mode", [["--backend", "trio"], ["--sync"]], ids=["trio", "sync"])
def test_the_other_clients_smoke_soak(mode: list[str]) -> None:
    summary = soak(*mode, "--streams", "300", "--seed", "3", "--read-timeout", "3", "--stall", "4")
    assert summary["streams"] == 300
    assert summary["connections"]["after close"] == 0


def test_the_gateway_smoke_soak() -> None:
    pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    summary = soak("--gateway", "--streams", "100", "--concurrency", "50")
    assert summary["streams"] == 100
    assert summary["tracebacks"] == 0
    assert summary["completed"] == summary["exact"]
    assert summary["disconnected"] > 0
