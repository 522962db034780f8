"""The documentation site (docs/, mkdocs.yml): its examples run, its structure holds, it builds.

Every Python and shell block of the guides runs as the README's do (``tests/blocks.py``):
offline, with ``AICHATONLINE_BASE_URL`` at a bundled server. The original provider's
examples name a proxy of the reader's (``http://proxy.example.com``): the bundled
``ForwardProxy`` stands in for it. The architecture diagram names only files that exist,
the navigation lists every page, the HTTP client's page keeps its marker, the griffe
extension turns reST roles into Markdown, and ``mkdocs build --strict`` passes when the
``docs`` extra is installed (CI builds the site in any case).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aichatonline
from aichatonline.testing import ForwardProxy, LocalServer
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

DOCS = ROOT / "docs"
#: The pages written for the site; gateway.md and protocol.md have writers of their own.
GUIDES = [
    "index.md",
    "streaming.md",
    "errors.md",
    "timeouts.md",
    "proxies.md",
    "testing.md",
    "http-client.md",
    "provider.md",
    "architecture.md",
]
BLOCKS = [block for page in GUIDES for block in blocks_of(DOCS / page)]
README_SETUP = next(
    b for b in blocks_of(ROOT / "README.md") if b.code.startswith("aichatonline serve ")
)


def _is_setup(block: Block) -> bool:
    return block.code == README_SETUP.code


PYTHON = [block for block in BLOCKS if block.lang == "python"]
INSTALLS = [block for block in BLOCKS if block.is_install]
SHELL = [b for b in BLOCKS if b.lang == "sh" and not _is_setup(b) and b not in INSTALLS]


@pytest.fixture(scope="module")
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


def test_every_block_is_one_we_check() -> None:
    assert {block.lang for block in BLOCKS} == {"python", "sh", "text"}
    assert len(PYTHON) >= 12
    # The offline set-up is the README's, word for word (the README's test runs it).
    assert [block.page for block in BLOCKS if _is_setup(block)] == ["docs/index.md"]


@pytest.mark.parametrize("block", PYTHON, ids=lambda block: block.id)
def test_python_block_runs(
    block: Block, shared_server: LocalServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    if "import g4f" in block.code and importlib.util.find_spec("g4f") is None:
        pytest.skip("g4f is not installed (the compat extra)")
    code = block.code.replace("http://proxy.example.com", proxy.url)
    before = len(shared_server.chat_requests) + len(shared_server.token_requests)
    proxied = len(proxy.requests)
    result = run_python(code, reader_env(shared_server.base_url), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if not re.search(r"LocalServer\(|aichatonline_server|aichatonline_env|ForwardProxy\(", code):
        after = len(shared_server.chat_requests) + len(shared_server.token_requests)
        assert after > before, "the block should have talked to the bundled server"
    if "http://proxy.example.com" in block.code and "ForwardProxy(" not in block.code:
        assert len(proxy.requests) > proxied  # it went through the proxy named


def test_install_lines_install_the_package() -> None:
    assert INSTALLS
    for block in INSTALLS:
        assert install_targets(block) == [(".", set())], block.code


@pytest.mark.parametrize("block", SHELL, ids=lambda block: block.id)
def test_shell_block_runs(block: Block, shared_server: LocalServer) -> None:
    result = run_shell(block.code, reader_env(shared_server.base_url), free_port())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "You said" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_architecture_names_real_files() -> None:
    (diagram,) = [block.code for block in blocks_of(DOCS / "architecture.md")]
    names = set(re.findall(r"(?<![\w./])(\w+\.py|_\w+/)", diagram))
    assert {"call.py", "decoder_lines.py", "_core/", "_async/"} <= names, names
    package = Path(aichatonline.__file__).resolve().parent  # the source tree, or the wheel
    files = {path.name for path in package.rglob("*.py")} | {"unasync.py"}  # scripts/
    folders = {path.name + "/" for path in package.rglob("*") if path.is_dir()}
    assert not names - files - folders, "the diagram names files that do not exist"


def test_the_navigation_lists_every_page() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s+([\w/-]+\.md)$", config, flags=re.M))
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert listed == pages
    assert set(GUIDES) <= pages


def test_the_http_client_page_names_every_client_to_choose_from() -> None:
    text = (DOCS / "http-client.md").read_text(encoding="utf-8")
    for name in ("DefaultHttpxClient", "DefaultAsyncHttpxClient", "DefaultAioHttpClient"):
        assert name in text, name
    assert "httpx2" in text


def test_the_reference_turns_rest_roles_into_markdown() -> None:
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("sphinx_roles", DOCS / "_ext/sphinx_roles.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (
        "A :class:`~aichatonline.Timeout` or :meth:`aichatonline.Client.stream`,\n"
        "see :py:func:`set_testing`. For example::\n\n    x = 1\n"
    )
    assert module.markdown(text) == (
        "A `Timeout` or `aichatonline.Client.stream`,\nsee `set_testing`. For example:\n\n"
        "    x = 1\n"
    )


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="the docs extra")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**reader_env("unused"), "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reference = (tmp_path / "reference" / "errors" / "index.html").read_text(encoding="utf-8")
    assert "ModelNotFoundError" in reference
    assert ":class:" not in (tmp_path / "reference" / "clients" / "index.html").read_text(
        encoding="utf-8"
    )
