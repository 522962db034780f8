"""``AICHATONLINE_LOG`` and the command line's ``-v`` / ``--debug``, in real subprocesses.

``AICHATONLINE_LOG=info`` shows the retries on stderr in a readable format, ``debug`` the
skipped stream lines too, another value is named in a warning; the token never shows. The
command line's ``-v`` logs retries without tracebacks (only ``--debug`` shows those), and
with ``AICHATONLINE_LOG`` set as well each line shows once.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

from aichatonline._cli import ExitCode
from aichatonline._config import log_to_stderr
from aichatonline.testing import Fault, LocalServer
from tests.test_cli import cli_env, run

#: A client that meets one 503 (retried at once) and reads one unreadable line.
SCRIPT = """
from aichatonline import Client
from aichatonline.testing import Fault, LocalServer

with LocalServer() as server, Client(base_url=server.base_url) as client:
    server.inject(Fault(status=503, retry_after="0"))
    print(client.complete("Hi"))
    server.inject(Fault(malformed=True))
    client.complete("Hi")
    print("TOKEN", client.token)
"""
LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|DEBUG) aichatonline\] (.*)$")


def python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(**env),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


def sdk_lines(stderr: str) -> list[tuple[str, str]]:
    """(level, message) of the SDK's own lines (the bundled server logs as a child logger)."""
    return [match.groups() for line in stderr.splitlines() if (match := LINE.match(line))]


@pytest.mark.parametrize("value", ["info", "INFO", " info "])
def test_info_shows_the_retries_in_a_readable_format(value: str) -> None:
    result = python(SCRIPT, AICHATONLINE_LOG=value)
    assert result.returncode == 0, result.stderr
    lines = sdk_lines(result.stderr)
    assert [level for level, _ in lines] == ["INFO"]
    assert lines[0][1].startswith("retrying the chat request in 0.00s after ServerError: HTTP 503")
    token = result.stdout.split("TOKEN ")[1].strip()
    assert token not in result.stderr


def test_debug_shows_the_skipped_lines_too() -> None:
    result = python(SCRIPT, AICHATONLINE_LOG="debug")
    assert result.returncode == 0, result.stderr
    levels = [level for level, _ in sdk_lines(result.stderr)]
    assert levels[0] == "INFO"
    assert "DEBUG" in levels
    assert any(
        message.startswith("skipping a stream line") for _, message in sdk_lines(result.stderr)
    )


def test_unset_or_empty_logs_nothing() -> None:
    for env in ({}, {"AICHATONLINE_LOG": ""}):
        result = python(SCRIPT, **env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""


def test_another_value_is_named_and_ignored() -> None:
    result = python(SCRIPT, AICHATONLINE_LOG="verbose")
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning: AICHATONLINE_LOG='verbose' is ignored: use info or debug" in (
        result.stderr
    )
    assert sdk_lines(result.stderr) == []


def test_one_handler_however_often_it_is_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("aichatonline")
    before = (logger.level, list(logger.handlers))
    undo_info = log_to_stderr(logging.INFO)
    undo_debug = log_to_stderr(logging.DEBUG, "%(message)s")
    try:
        assert len(logger.handlers) == len(before[1]) + 1
        assert logger.level == logging.DEBUG  # the lower level wins
        logger.debug("seen once, at http://user:secret@example.com/")
    finally:
        undo_debug()
        undo_info()
    assert (logger.level, logger.handlers) == before
    err = capsys.readouterr().err
    assert err.count("seen once") == 1
    assert "secret" not in err  # redacted, a second guard


# --------------------------------------------------------------------------- command line


@pytest.fixture
def server(shared_server: LocalServer) -> LocalServer:
    shared_server.reset()
    return shared_server


def test_verbose_shows_retries_but_no_traceback(server: LocalServer) -> None:
    server.inject(Fault(status=503, retry_after="0"), Fault(status=404))
    result = run("-v", "chat", "hi", server=server)
    assert result.returncode == ExitCode.ERROR
    assert "aichatonline: retrying the chat request" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("aichatonline: APIStatusError: HTTP 404")


def test_cli_verbose_and_the_environment_show_each_line_once(server: LocalServer) -> None:
    server.inject(Fault(status=503, retry_after="0"))
    result = subprocess.run(
        [sys.executable, "-m", "aichatonline", "-v", "chat", "hi"],
        env=cli_env(server, AICHATONLINE_LOG="info"),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("retrying the chat request") == 1
