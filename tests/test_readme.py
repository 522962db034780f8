"""Every code block of README.md runs as written, offline, so the README cannot rot.

The blocks are of four kinds, and every block is one of them:

- the quick start (the first block): what CI runs, checked against ``.ci/run``;
- install blocks (only ``pip install`` lines): the extras they name exist;
- the offline set-up ("Running the examples offline"): run literally, in one shell with
  the first usage example after it;
- every other block: Python blocks run as scripts (``# test_NAME.py`` ones under pytest)
  and shell blocks under bash, with ``AICHATONLINE_BASE_URL`` at a bundled server, as the
  set-up leaves it; each must get an answer from that server (or from one of its own).

The page's structure is held too: the table of contents lists every section and links to
real headings, relative links name files that exist, every extra of pyproject.toml is in
the extras table, and the HTTP client's section carries its marker for the main developer.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

from aichatonline.testing import LocalServer
from tests.blocks import (
    ROOT,
    Block,
    blocks_of,
    free_port,
    install_targets,
    reader_env,
    run_python,
    run_shell,
)

README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = blocks_of(README)
#: The extras of the installed package (its metadata: the source tree's, or the wheel's).
EXTRAS = set(metadata.metadata("aichatonline").get_all("Provides-Extra") or ())


def _is_offline_setup(block: Block) -> bool:
    return block.lang == "sh" and block.code.startswith("aichatonline serve ")


QUICK_START = BLOCKS[0]
INSTALLS = [block for block in BLOCKS if block.is_install]
(SETUP,) = [block for block in BLOCKS if _is_offline_setup(block)]
RUN = [b for b in BLOCKS if b not in (QUICK_START, SETUP) and b not in INSTALLS]


def test_every_block_is_one_we_check() -> None:
    assert {block.lang for block in BLOCKS} == {"python", "sh"}
    assert len(RUN) >= 15
    assert len(INSTALLS) >= 2
    assert TEXT.index("## Running the examples offline") < TEXT.index("## Usage")


def test_the_quick_start_is_what_ci_runs() -> None:
    install, tests = QUICK_START.code.strip().splitlines()
    assert "pip install -e" in install
    assert install.endswith("aichatonline demo")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install --quiet -e" in ci
    assert "aichatonline demo" in ci
    assert tests.startswith("python -m pytest")
    assert re.search(rf"^echo .*; {re.escape(tests)}$", ci, flags=re.M)  # the very command


def test_install_lines_name_real_extras() -> None:
    for block in INSTALLS:
        for path, extras in install_targets(block):
            assert path == ".", block.code  # from the clone
            assert extras <= EXTRAS, extras - EXTRAS
    assert INSTALLS[0].code.strip() == "pip install ."  # the SDK alone comes first


def test_the_extras_table_lists_every_extra() -> None:
    table = TEXT.split("## Installation", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| (.+?) \|", table, flags=re.M)
    listed = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    assert listed >= EXTRAS, EXTRAS - listed


def _anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_the_table_of_contents_matches_the_sections() -> None:
    sections = re.findall(r"^## (.+)$", TEXT, flags=re.M)
    toc = TEXT.split("## Table of contents", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"^- \[(.+?)\]\(#(.+?)\)$", toc, flags=re.M)
    listed = [s for s in sections if s not in ("Quick start", "Table of contents")]
    assert [title for title, _ in links] == listed
    assert [anchor for _, anchor in links] == [_anchor(title) for title in listed]


def test_relative_links_name_files_that_exist() -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", TEXT):
        assert (ROOT / target).exists(), target


def test_the_http_client_section_says_how_to_choose() -> None:
    section = TEXT.split("## Configuring the HTTP client", 1)[1].split("\n## ", 1)[0]
    for name in ("DefaultHttpxClient", "DefaultAsyncHttpxClient", "DefaultAioHttpClient"):
        assert name in section, name
    assert "| pick it when |" in section


def test_the_offline_setup_runs_as_written(tmp_path: Path) -> None:
    """The set-up block, literally, then the first usage example in the same shell."""
    usage = next(block for block in RUN if block.lang == "python")
    port = free_port()
    (tmp_path / "usage.py").write_text(usage.code, encoding="utf-8")
    env = reader_env("unused")
    del env["AICHATONLINE_BASE_URL"]  # the block exports it
    ready = (  # a person types the next line after the server is up; a script waits
        f"for _ in $(seq 100); do (: > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; "
        "sleep 0.1; done"
    )
    script = f"{SETUP.code.strip()}\n{ready}\n{sys.executable} {tmp_path / 'usage.py'}\nkill %1\n"
    result = run_shell(script, env, port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "You said: Hello! Who are you?" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("block", [b for b in RUN if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_runs(block: Block, shared_server: LocalServer, tmp_path: Path) -> None:
    before = len(shared_server.chat_requests) + len(shared_server.token_requests)
    result = run_python(block.code, reader_env(shared_server.base_url), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if "LocalServer(" not in block.code and "aichatonline_server" not in block.code:
        after = len(shared_server.chat_requests) + len(shared_server.token_requests)
        assert after > before, "the block should have talked to the bundled server"


@pytest.mark.parametrize("block", [b for b in RUN if b.lang == "sh"], ids=lambda b: b.id)
def test_shell_block_runs(block: Block, shared_server: LocalServer) -> None:
    result = run_shell(block.code, reader_env(shared_server.base_url), free_port())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "You said" in result.stdout  # every shell example gets an answer
    assert "Traceback" not in result.stderr


def test_the_offline_setup_is_what_serve_says(tmp_path: Path) -> None:
    """``aichatonline serve`` tells the same variable and URL the set-up block exports."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "aichatonline", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=reader_env("unused"),
    )
    try:
        url = child.stdout.readline().strip() if child.stdout else ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/api/v1/user/getUniqueId", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
    finally:
        child.terminate()
        _, stderr = child.communicate(timeout=10)
    assert f"export AICHATONLINE_BASE_URL={url}" in stderr
    assert SETUP.code.replace("8765", str(port)).split("export ", 1)[1].strip() == (
        f"AICHATONLINE_BASE_URL={url}"
    )
