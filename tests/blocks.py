"""The code blocks of a Markdown page, and how the tests run them (README.md and docs/).

A page's fenced blocks are read with their language and line. Python blocks run as scripts
in a fresh interpreter; one that starts with ``# test_NAME.py`` is a pytest file and runs
under pytest, with the package's plugin and anyio's (those a user's test suite has). Shell
blocks run under bash, except ``pip install`` ones (checked, not run). Every block runs
with ``AICHATONLINE_BASE_URL``
at a bundled server, as a reader who followed "Running the examples offline" has it, and
no proxy variable from the machine; ``8765`` (the port that section uses) becomes a free
port, so that blocks which start a server of their own do not collide.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Block",
    "blocks_of",
    "free_port",
    "install_targets",
    "reader_env",
    "run_python",
    "run_shell",
]

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", flags=re.S | re.M)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its text, and where it is (for test ids)."""

    page: str
    line: int
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_pytest_file(self) -> bool:
        return self.code.startswith("# test_")

    @property
    def is_install(self) -> bool:
        """A shell block of ``pip install`` lines only: checked (``install_targets``), not
        run, as it would change the environment the tests run in."""
        lines = [line for line in self.code.splitlines() if line.strip()]
        return self.lang == "sh" and all(line.startswith("pip install ") for line in lines)


def install_targets(block: Block) -> list[tuple[str, set[str]]]:
    """What each ``pip install`` line of ``block`` installs: (the path, the extras named)."""
    targets = []
    for line in block.code.strip().splitlines():
        target = line.removeprefix("pip install ").strip().strip("\"'")
        path, _, extras = target.partition("[")
        targets.append((path, set(filter(None, extras.rstrip("]").split(",")))))
    return targets


def blocks_of(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    name = str(page.relative_to(ROOT))
    return [
        Block(name, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))
        for match in _FENCE.finditer(text)
    ]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reader_env(base_url: str) -> dict[str, str]:
    """The environment of a reader running the examples offline."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().endswith("_PROXY") and not name.startswith("AICHATONLINE_")
    }
    env["AICHATONLINE_BASE_URL"] = base_url
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_python(
    code: str, env: dict[str, str], workdir: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a Python block (or, for ``# test_NAME.py``, that pytest file) in ``workdir``."""
    if code.startswith("# test_"):
        path = workdir / code.split()[1]
        # The two plugins such a file uses, named: the others installed here (langsmith's,
        # hypothesis') cost seconds of start-up each and have nothing to do with it.
        plugins = ["-p", "aichatonline.testing.pytest_plugin", "-p", "anyio.pytest_plugin"]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins]
        command.append(str(path))
        env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    else:
        path = workdir / "block.py"
        command = [sys.executable, str(path)]
    path.write_text(code, encoding="utf-8")
    return subprocess.run(
        command, env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout
    )


def run_shell(
    code: str, env: dict[str, str], port: int, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a shell block under bash (``set -euo pipefail``) from the repository's root.

    In a session of its own, whose processes are all killed at the end: a block that fails
    before its ``kill %1`` must not leave its server running (holding the output open).
    """
    command = ["bash", "-euo", "pipefail", "-c", code.replace("8765", str(port))]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=err, start_new_session=True
        )
        try:
            returncode = child.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = (f.read().decode("utf-8", "replace") for f in (out, err))
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)
