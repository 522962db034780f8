"""Issue 8, item 7 (and the command-line side of items 1 and 6): errors that say what to do.

- A connection failure through a proxy names the proxy, credentials masked (sync client,
  async client on asyncio and trio).
- ``aichatonline chat "hi"`` with the service unreachable suggests ``--local``.
- ``aichatonline chat --json`` interrupted by Ctrl-C (SIGINT) ends its output with a
  ``{"type": "error", ...}`` record, then exits 130.
- ``aichatonline chat --base-url 'http://[::1'`` prints one line and exits 2 (item 6).
- ``--timeout`` is a per-operation limit: a long, healthy answer is not cut (item 1).

The command line runs as a real subprocess (``python -m aichatonline``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aichatonline import APIConnectionError, AsyncClient, Client, StreamInterrupted
from tests import hostile
from tests.helpers import closed_port, fast

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "aichatonline"]
PASSWORD = "pr0xy-Pa55word"


pytestmark = pytest.mark.usefixtures("isolated")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI child: no proxies or base URL from outside, UTF-8 output."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().endswith("_PROXY") and not name.startswith("AICHATONLINE_")
    }
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        input="",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(**env),
        timeout=30,
    )


def assert_one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --------------------------------------------------------------------------- a proxy that fails


def _proxy() -> tuple[str, int]:
    port = closed_port()
    return f"http://someone:{PASSWORD}@127.0.0.1:{port}", port


def _check_names_the_proxy(error: BaseException | None, port: int) -> None:
    assert isinstance(error, APIConnectionError), repr(error)
    assert not isinstance(error, StreamInterrupted)
    message = str(error)
    assert "proxy" in message.lower(), message
    assert f"127.0.0.1:{port}" in message, message
    for text in (message, repr(error), str(error.__cause__), repr(error.__cause__)):
        assert PASSWORD not in text, text


def test_connection_failure_through_a_proxy_names_the_proxy_sync() -> None:
    proxy, port = _proxy()
    server = hostile.HostileServer(hostile.route())
    with server, Client(base_url=server.base_url, proxy=proxy, retry_policy=fast(0)) as client:
        outcome = hostile.drain(client.stream("hi"))
    _check_names_the_proxy(outcome.error, port)
    assert server.connections == 0


@pytest.mark.anyio
async def test_connection_failure_through_a_proxy_names_the_proxy_async(
    anyio_backend: str,
) -> None:
    proxy, port = _proxy()
    with hostile.HostileServer(hostile.route()) as server:
        async with AsyncClient(
            base_url=server.base_url, proxy=proxy, retry_policy=fast(0)
        ) as client:
            outcome = await hostile.adrain(client.stream("hi"))
    _check_names_the_proxy(outcome.error, port)
    assert server.connections == 0


def test_cli_proxy_failure_names_the_proxy_without_its_password() -> None:
    proxy, port = _proxy()
    with hostile.HostileServer(hostile.route()) as server:
        result = run(
            "chat", "--max-retries", "0", "--base-url", server.base_url, "--proxy", proxy, "hi"
        )
    assert result.returncode == 3, result.stderr
    line = assert_one_line(result.stderr)
    assert f"127.0.0.1:{port}" in line, line
    assert PASSWORD not in result.stderr + result.stdout
    assert server.connections == 0


# --------------------------------------------------------------------------- the CLI


def test_cli_unreachable_service_suggests_local() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run("chat", "--max-retries", "0", "hi", AICHATONLINE_BASE_URL=url)
    assert result.returncode == 3, result.stderr
    line = assert_one_line(result.stderr)
    assert line.startswith("aichatonline: APIConnectionError: "), line
    assert "--local" in line, line


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:1/a\r\nX-Injected: 1"]
)
def test_cli_unusable_base_url_is_one_line_and_exit_2(url: str) -> None:
    result = run("chat", "--max-retries", "0", "--base-url", url, "hi")
    assert result.returncode == 2, result.stderr
    line = assert_one_line(result.stderr)
    assert line.startswith("aichatonline: InvalidRequestError: "), line
    assert result.stdout == ""


def test_cli_ctrl_c_ends_json_output_with_an_error_record() -> None:
    pieces = [f"piece {i}; " for i in range(60)]  # one every 0.1 s: 6 s if not interrupted
    with hostile.HostileServer(hostile.route(chat=hostile.stream(pieces, every=0.1))) as server:
        child = subprocess.Popen(
            [*CLI, "chat", "--json", "--base-url", server.base_url, "hi"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=cli_env(),
        )
        try:
            assert child.stdout is not None
            first = child.stdout.readline()  # the child is streaming: Ctrl-C now
            assert json.loads(first)["type"] == "piece", first
            child.send_signal(signal.SIGINT)
            rest, stderr = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert child.returncode == 130, stderr
    records = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert all(record["type"] == "piece" for record in records[:-1])
    assert records[-1]["type"] == "error", records[-1]
    assert len(records) < len(pieces)
    assert "Traceback" not in stderr, stderr


def test_cli_timeout_is_per_operation_a_long_answer_completes() -> None:
    pieces = [f"piece {i}; " for i in range(7)]  # one every 0.2 s: 1.2 s in all
    with hostile.HostileServer(hostile.route(chat=hostile.stream(pieces, every=0.2))) as server:
        started = time.monotonic()
        result = run("chat", "--timeout", "0.5", "--base-url", server.base_url, "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(pieces) + "\n"
    assert time.monotonic() - started > 1.0


def test_cli_timeout_help_no_longer_promises_a_whole_call_bound() -> None:
    result = run("chat", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("--timeout"))
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("-")), len(lines)
    )
    text = " ".join(" ".join(lines[start:end]).split()).lower()
    assert "whole call" not in text, text  # a number is a per-operation limit now
    assert "600" not in text, text
