"""The protocol core stays pure: no I/O library is imported, and every module says what it is.

Checked statically with ``ast`` (importing ``aichatonline`` would pull in httpx
through the package ``__init__``), following the core's relative imports into
the rest of the package so that no I/O module sneaks in second-hand.

tenacity is pure (the retry decisions are its strategies), so the core may use it, but
only imported inside the functions that need it: ``import aichatonline`` does not pay
for it, and most calls never fail.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import aichatonline

# The package under test, wherever it is installed (the source tree, or a wheel in CI).
PACKAGE = Path(aichatonline.__file__).resolve().parent
CORE = PACKAGE / "_core"
CORE_MODULES = sorted(CORE.glob("*.py"))

FORBIDDEN = {
    "httpx",
    "httpcore",
    "anyio",
    "trio",
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "threading",
    "multiprocessing",
    "concurrent",
    "subprocess",
    "aiohttp",
    "requests",
    "urllib3",
    "urllib.request",
    "http.client",
}

#: Pure, but imported only inside functions (never when the module is imported).
LAZY_ONLY = {"tenacity"}


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Absolute module names imported by ``path`` (relative ones resolved), with levels."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((module, node.level))
            found += [(f"{module}.{alias.name}", node.level) for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            if name in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((arg.value, 0))
    return found


def _matches(module: str, names: set[str]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in names)


def is_forbidden(module: str) -> bool:
    return _matches(module, FORBIDDEN)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def eager_imports(path: Path) -> list[tuple[str, int]]:
    """Modules imported when ``path`` is imported: outside functions and ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.module or "", node.lineno))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((arg.value, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def module_path(module: str) -> Path | None:
    """The file of an ``aichatonline`` module, or None for anything else."""
    parts = module.split(".")
    if parts[0] != "aichatonline":
        return None
    target = PACKAGE.parent.joinpath(*parts)
    if target.with_suffix(".py").is_file():
        return target.with_suffix(".py")
    if (target / "__init__.py").is_file():
        return target / "__init__.py"
    return None


def test_the_core_modules_are_all_there() -> None:
    names = {path.name for path in CORE_MODULES}
    assert names >= {
        "__init__.py",
        "prompt.py",
        "models.py",
        "urls.py",
        "headers.py",
        "request.py",
        "statuses.py",
        "codings.py",
        "decoder.py",
        "decoder_lines.py",
        "decoder_shapes.py",
        "transcript.py",
        "redact.py",
        "timeouts.py",
        "retries.py",
        "token_cache.py",
        "token_fetch.py",
        "call.py",
    }
    # Split by concern: wire.py into urls, headers, request, statuses, codings, models and
    # token_fetch; policy.py into timeouts and retries.
    assert not names & {"policy.py", "wire.py", "session.py", "resume.py", "blocks.py"}


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda path: path.name)
def test_core_imports_no_io_library(path: Path) -> None:
    seen: set[Path] = set()
    pending = [path]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for module, _ in imported_modules(current):
            assert not is_forbidden(module), f"{current.name} imports {module}"
            target = module_path(module)
            if target is not None and target != PACKAGE / "__init__.py":
                pending.append(target)


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda path: path.name)
def test_tenacity_is_imported_only_inside_functions(path: Path) -> None:
    for module, lineno in eager_imports(path):
        assert not _matches(module, LAZY_ONLY), (
            f"{path.name}:{lineno} imports {module} at import time"
        )


def test_the_lazy_import_checker_sees_both_kinds() -> None:
    # The check above would pass vacuously if it never saw tenacity at all.
    retries = CORE / "retries.py"
    everywhere = {module for module, _ in imported_modules(retries)}
    assert "tenacity" in everywhere
    assert "tenacity" not in {module for module, _ in eager_imports(retries)}
    assert "aichatonline._core.timeouts" in everywhere


def test_importing_the_package_does_not_import_tenacity() -> None:
    code = (
        "import sys, aichatonline, aichatonline._core;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tenacity'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda path: path.name)
def test_core_reaches_only_pure_parts_of_the_package(path: Path) -> None:
    # The public __init__, the transports and the clients import httpx: the core
    # may lean on the error tree and the type aliases, nothing else outside itself.
    allowed = {"aichatonline._exceptions", "aichatonline._messages"}
    for module, _ in imported_modules(path):
        if module.startswith("aichatonline.") and not module.startswith("aichatonline._core"):
            top = ".".join(module.split(".")[:2])
            assert top in allowed, f"{path.name} imports {module}"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda path: path.name)
def test_core_module_has_a_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring is not None, f"{path.name} has no module docstring"
    assert len(docstring.split()) >= 5


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda path: path.name)
def test_core_does_no_io_calls(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("open", "print", "input"), (
                f"{path.name} calls {node.func.id}"
            )
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) != ("time", "sleep"), f"{path.name} sleeps"


def test_the_checker_sees_imports() -> None:
    # The checks above would pass vacuously if imported_modules found nothing.
    modules = {module for path in CORE_MODULES for module, _ in imported_modules(path)}
    assert "json" in modules
    assert "aichatonline._exceptions" in modules
    assert "aichatonline._core.prompt" in modules
    assert is_forbidden("httpx")
    assert is_forbidden("http.client")
    assert not is_forbidden("http")
    assert not is_forbidden("tenacity")  # allowed, lazily (checked above)
