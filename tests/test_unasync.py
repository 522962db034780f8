"""``scripts/unasync.py``: the generated sync twin is current, every rule still applies, and
only the pinned ruff formats it."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unasync", ROOT / "scripts" / "unasync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["unasync"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


unasync = _load()


def test_the_generated_twin_is_current() -> None:
    assert unasync.main(["--check"]) == 0


def test_every_rule_rewrites_something_in_the_sources() -> None:
    counts: Counter[object] = Counter()
    for source in sorted(unasync.SOURCE.glob("*.py")):
        unasync.unasync_text(source.read_text(), source.name, counts=counts)
    assert unasync.unused_rules(counts) == []


def test_a_rule_that_rewrites_nothing_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = unasync.Rule(r"\bno_such_name_in_the_sources\b", "gone")
    monkeypatch.setattr(unasync, "RULES", (*unasync.RULES, stale))
    assert unasync.main(["--check"]) == 1
    assert "no_such_name_in_the_sources" in capsys.readouterr().err


def test_counts_are_per_rule() -> None:
    rules = (unasync.Rule(r"\bawait ", ""), unasync.Rule("asyncio", "threads", regex=False))
    counts: Counter[object] = Counter()
    text = unasync.unasync_text("await a\nawait b\n", "x.py", rules, counts)
    assert text.endswith("a\nb\n")
    assert counts[rules[0]] == 2
    assert unasync.unused_rules(counts, rules) == [rules[1]]


def test_another_ruff_version_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('dev = ["ruff==0.0.1"]\n')
    monkeypatch.setattr(unasync, "PYPROJECT", pyproject)
    with pytest.raises(SystemExit, match=r"ruff 0\.0\.1 \(pinned in pyproject.toml\)"):
        unasync.main(["--check"])


def test_ruff_is_pinned_in_the_dev_extra() -> None:
    pinned = unasync.pinned_ruff((ROOT / "pyproject.toml").read_text())
    assert pinned.count(".") == 2, pinned  # an exact release, not a range
    with pytest.raises(SystemExit, match="pins no ruff"):
        unasync.pinned_ruff('dev = ["ruff>=0.6"]')
