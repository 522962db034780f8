"""``pip install .`` gives a working SDK with only httpx, anyio and tenacity underneath.

The package's metadata must require exactly those three (extras aside). Then, in a fresh
interpreter that refuses to import any module outside the standard library and the
distributions those three pull in (their own requirements, followed down), the SDK does
its whole job: the blocking and the async client stream and complete against the bundled
server, with a retry, and the command line answers with ``chat --local``. Optional speed-ups
the SDK looks for (orjson, socksio, ...) are then simply missing, as on a fresh install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement

from tests.blocks import ROOT, reader_env

#: The only run-time dependencies (issue 21: "only httpx, anyio and tenacity underneath").
RUNTIME = {"httpx", "anyio", "tenacity"}


def _requirements(distribution: str) -> set[str]:
    """The distributions ``distribution`` requires on this interpreter, extras aside."""
    names = set()
    for text in metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(requirement.name.lower().replace("_", "-"))
    return names


def _closure(names: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_requirements(name))
    return seen


def _top_level_modules(distributions: set[str]) -> set[str]:
    """The modules these distributions install, read from their files (Python 3.10's
    ``packages_distributions`` reads only ``top_level.txt``, which hatchling-built
    distributions such as httpx do not have)."""
    modules = set()
    for dist in metadata.distributions():
        if dist.metadata["Name"].lower().replace("_", "-") not in distributions:
            continue
        modules.update((dist.read_text("top_level.txt") or "").split())
        for file in dist.files or ():
            if file.suffix not in {".py", ".so", ".pyd"} or file.parts[0] == "..":
                continue
            top = file.parts[0] if len(file.parts) > 1 else file.name.split(".", 1)[0]
            if not top.endswith((".dist-info", ".data")):
                modules.add(top)
    return modules


#: Runs in the child: a finder that refuses every module outside the allowed ones, then the
#: SDK's whole job.
SCRIPT = """
import importlib.abc, json, sys

ALLOWED = set(json.loads(sys.argv[1]))
refused = []


class OnlyTheDependencies(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ALLOWED or top in sys.stdlib_module_names or top == "aichatonline":
            return None
        refused.append(top)
        raise ModuleNotFoundError(f"No module named {name!r} (not a dependency)", name=name)


sys.meta_path.insert(0, OnlyTheDependencies())

import asyncio

import aichatonline
from aichatonline import AsyncClient, Client
from aichatonline._cli import main
from aichatonline.testing import Fault, LocalServer

with aichatonline.set_testing(True), LocalServer(pieces=4) as server:
    expected = "".join(server.pieces_for("Hi"))
    with Client(base_url=server.base_url) as client:
        server.inject(Fault(status=503))
        assert client.complete("Hi") == expected
        assert "".join(client.stream("Hi")) == expected

    async def run():
        async with AsyncClient(base_url=server.base_url) as client:
            async with client.stream("Hi") as stream:
                return "".join([piece async for piece in stream])

    assert asyncio.run(run()) == expected
assert main(["chat", "--local", "Hello"]) == 0
print(json.dumps(sorted(set(refused))))
"""


def test_the_package_requires_exactly_three_distributions() -> None:
    assert _requirements("aichatonline") == RUNTIME


def test_the_sdk_works_with_its_dependencies_alone() -> None:
    allowed = _top_level_modules(_closure(RUNTIME))
    assert {"httpx", "anyio", "tenacity"} <= allowed
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(sorted(allowed))],
        env=reader_env("unused"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    *answer, refused_line = result.stdout.strip().splitlines()
    assert "You said: Hello" in "\n".join(answer)
    # What was looked for and done without: optional speed-ups of the SDK and of httpx
    # (orjson, brotli, zstandard, ...), never one of the three.
    assert not set(json.loads(refused_line)) & allowed
