"""Every code block of README.md runs, against the bundled local server, so the README cannot rot.

Python blocks run as scripts in a fresh interpreter with ``AICHATONLINE_BASE_URL``
pointing at a ``LocalServer``; the placeholder proxy URLs are replaced by a real
forward proxy on loopback. A block that starts with ``# test_`` is a pytest file
and runs under pytest. Shell blocks run under bash. The quick-start block is
what CI runs (checked against ``.ci/run``), and the architecture diagram must
name only files that exist.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aichatonline
from aichatonline.testing import ForwardProxy, LocalServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.S | re.M)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
SHELL = [code for lang, code in BLOCKS if lang == "sh"]
TEXT = [code for lang, code in BLOCKS if lang == "text"]


def _id(code: str) -> str:
    return code.strip().splitlines()[0][:40]


@pytest.fixture(scope="module")
def proxies() -> Iterator[tuple[ForwardProxy, ForwardProxy]]:
    with ForwardProxy() as open_proxy, ForwardProxy(username="user", password="secret") as auth:
        yield open_proxy, auth


def _env(server: LocalServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["AICHATONLINE_BASE_URL"] = server.base_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_readme_has_only_blocks_we_can_run() -> None:
    assert {lang for lang, _ in BLOCKS} <= {"python", "sh", "text"}
    assert len(PYTHON) >= 7
    assert len(SHELL) >= 3
    assert len(TEXT) == 1


def test_the_quick_start_is_what_ci_runs() -> None:
    install, tests = SHELL[0].strip().splitlines()
    assert "pip install -e" in install
    assert install.endswith("aichatonline demo")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install --quiet -e" in ci
    assert "aichatonline demo" in ci
    assert tests == "python -m pytest"
    assert re.search(r"^echo .*; python -m pytest$", ci, flags=re.M)


def test_the_architecture_names_real_files() -> None:
    names = set(re.findall(r"(_\w+(?:\.py|/))", TEXT[0]))
    assert names, "the diagram should name the files"
    package = Path(aichatonline.__file__).resolve().parent  # the source tree, or the wheel
    for name in names:
        assert (package / name).exists() or (package / "_core" / name).exists(), name


@pytest.mark.parametrize("code", PYTHON, ids=_id)
def test_python_block_runs(
    code: str,
    shared_server: LocalServer,
    proxies: tuple[ForwardProxy, ForwardProxy],
    tmp_path: Path,
) -> None:
    open_proxy, auth_proxy = proxies
    code = code.replace(
        "http://user:secret@proxy.example.com:3128", auth_proxy.url_with_credentials
    )
    code = code.replace("http://proxy.example.com", open_proxy.url)
    server = shared_server
    env = _env(server)
    if code.startswith("# test_"):
        path = tmp_path / code.split()[1]
        path.write_text(code, encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    else:
        path = tmp_path / "block.py"
        path.write_text(code, encoding="utf-8")
        command = [sys.executable, str(path)]
    before = len(server.chat_requests) + len(server.token_requests)
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if "LocalServer(" not in code and "aichatonline_server" not in code:  # else their own
        assert len(server.chat_requests) + len(server.token_requests) > before
    if "proxy.example.com" in code:
        assert open_proxy.requests or auth_proxy.requests


@pytest.mark.parametrize("code", SHELL[1:], ids=_id)
def test_shell_block_runs(code: str, shared_server: LocalServer) -> None:
    with socket.socket() as probe:  # a free port for the serve example
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    code = code.replace("8765", port)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        env=_env(shared_server),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "You said" in result.stdout  # every shell example gets an answer
