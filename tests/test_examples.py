"""Every script in examples/ runs, offline, in bounded time, and says what it should.

Each runs as a reader runs it (``python examples/NAME.py``) in a child process with no
proxy or base URL from the machine, so it starts the bundled server itself; the scripts
that honour ``AICHATONLINE_BASE_URL`` run once more against a server of the test's, which
must see their requests. The pytest example runs under pytest, with the package's plugin.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aichatonline.testing import LocalServer, reply_for
from tests.blocks import ROOT, reader_env, run_python

EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("test_"))
#: What each script must print (beyond exiting 0 with no traceback).
EXPECTED = {
    "sync_client.py": [reply_for("Hello! Who are you?"), "refused: the prompt is empty"],
    "asyncio_client.py": [f"What is TLS? -> {reply_for('What is TLS?')}"],
    "trio_client.py": [f"What is trio? -> {reply_for('What is trio?')}", "deadline: True"],
    "openai_shape.py": [reply_for("Say hello"), "ModelNotFoundError (model)", "(n): n=2"],
    "conversation.py": ["took back 2 messages; 2 left", "messages=0>"],
    "gateway_openai.py": ["['gpt-4o-mini', ", reply_for("Hello"), "404: "],
}
#: What a script needs beyond the SDK itself.
NEEDS = {"trio_client.py": ["trio"], "gateway_openai.py": ["openai", "starlette", "uvicorn"]}


def _offline_env() -> dict[str, str]:
    env = reader_env("unused")
    del env["AICHATONLINE_BASE_URL"]
    return env


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for module in NEEDS.get(script, []):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script} needs {module}")
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


def test_every_script_is_listed() -> None:
    assert set(SCRIPTS) == set(EXPECTED)
    listing = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(\w+\.py)` \|", listing, flags=re.M))
    assert listed == {*SCRIPTS, "test_with_fixture.py"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_runs_offline(script: str) -> None:
    result = _run(script, _offline_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for text in EXPECTED[script]:
        assert text in result.stdout, (text, result.stdout)


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "gateway_openai.py"])
def test_script_uses_the_base_url_it_is_given(script: str, shared_server: LocalServer) -> None:
    before = len(shared_server.chat_requests)
    result = _run(script, reader_env(shared_server.base_url))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(shared_server.chat_requests) > before


def test_the_pytest_example_passes(tmp_path: Path) -> None:
    code = (EXAMPLES / "test_with_fixture.py").read_text(encoding="utf-8")
    result = run_python(f"# test_with_fixture.py\n{code}", _offline_env(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # 5 tests; the async one runs on trio too where anyio's plugin picks every backend.
    assert re.search(r"^[56] passed in", result.stdout, flags=re.M), result.stdout
