"""Tests of the command line, run as a real subprocess against the bundled local server.

Each test starts ``python -m aichatonline ...`` (about 0.3 s), so the cases are chosen to
cover one behaviour each: output, input, exit codes, logging, ``serve``, ``--local``,
``demo`` and the interactive session (under a pseudo-terminal, with pexpect).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import pexpect
import pytest

from aichatonline import __version__
from aichatonline._cli import DEMO_PROMPT, PROBE_SECONDS, ExitCode, exit_code_for, main
from aichatonline.testing import CHAT_PATH, TOKEN_PATH, Fault, LocalServer, pieces_for, reply_for
from tests.helpers import closed_port

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "aichatonline"]


@pytest.fixture
def server(shared_server: LocalServer) -> LocalServer:
    """The module's shared server (``conftest.py``), reset: no recorded requests, no faults,
    the default answer. One server for the module: each test already starts a subprocess."""
    shared_server.reset()
    shared_server.pieces = None
    shared_server.delay = 0.0
    return shared_server


def cli_env(server: LocalServer | None = None, **extra: str) -> dict[str, str]:
    """The environment for a CLI child: no proxies or base URL from outside, UTF-8 output."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().endswith("_PROXY") and not name.startswith("AICHATONLINE_")
    }
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if server is not None:
        env["AICHATONLINE_BASE_URL"] = server.base_url
    env.update(extra)
    return env


def run(
    *args: str,
    server: LocalServer | None = None,
    stdin: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion with a piped (non-TTY) stdin."""
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env if env is not None else cli_env(server),
        timeout=30,
    )


def assert_one_error_line(stderr: str, error: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"aichatonline: {error}: "), stderr


# --------------------------------------------------------------------------- chat PROMPT


def test_chat_streams_the_reply_and_sends_no_model(server: LocalServer) -> None:
    result = run("chat", "hello there", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply_for("hello there") + "\n"
    assert result.stderr == ""
    body = server.chat_requests[-1].json()
    assert body["prompt"] == "hello there"
    assert set(body) == {"conversationId", "prompt"}


def test_system_message_goes_into_the_prompt(server: LocalServer) -> None:
    result = run("chat", "--system", "Be brief.", "--model", "gpt-4o-mini", "hi", server=server)
    assert result.returncode == 0, result.stderr
    prompt = "System: Be brief.\nUser: hi\nAssistant:"
    assert server.chat_requests[-1].json()["prompt"] == prompt
    assert result.stdout == reply_for(prompt) + "\n"


def test_json_lines_and_summary(server: LocalServer) -> None:
    result = run("chat", "--json", "json please", server=server)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    *pieces, done = records
    assert [r["type"] for r in pieces] == ["piece"] * len(pieces)
    assert [r["text"] for r in pieces] == pieces_for("json please")
    reply = reply_for("json please")
    assert done["type"] == "done"
    assert done["text"] == reply
    assert done["chars"] == len(reply)
    assert done["pieces"] == len(pieces)
    assert done["conversation_id"] == server.chat_requests[-1].json()["conversationId"]
    assert done["seconds"] >= 0


def test_no_stream_prints_the_whole_answer_once(server: LocalServer) -> None:
    result = run("chat", "--no-stream", "all at once", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply_for("all at once") + "\n"


def test_no_stream_json_prints_one_piece_and_the_summary(server: LocalServer) -> None:
    result = run("chat", "--no-stream", "--json", "one", server=server)
    piece, done = (json.loads(line) for line in result.stdout.splitlines())
    assert piece == {"type": "piece", "text": reply_for("one")}
    assert done["text"] == reply_for("one")
    assert done["pieces"] is None
    assert done["conversation_id"] == server.chat_requests[-1].json()["conversationId"]


@pytest.mark.parametrize("args", [["chat", "-"], ["chat"]], ids=["dash", "piped"])
def test_prompt_from_stdin(server: LocalServer, args: list[str]) -> None:
    result = run(*args, server=server, stdin="from stdin\nsecond line\n")
    assert result.returncode == 0, result.stderr
    prompt = "from stdin\nsecond line"  # the trailing newline is dropped
    assert server.chat_requests[-1].json()["prompt"] == prompt
    assert result.stdout == reply_for(prompt) + "\n"


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("faults", "args", "code", "error"),
    [
        ([Fault(status=401), Fault(status=401)], [], ExitCode.AUTH, "AuthenticationError"),
        (
            [Fault(expire_token=True), Fault(expire_token=True)],
            [],
            ExitCode.AUTH,
            "AuthenticationError",
        ),
        ([Fault(cloudflare=True)], [], ExitCode.AUTH, "BlockedError"),
        ([Fault(status=429)], ["--max-retries", "0"], ExitCode.RATE_LIMIT, "RateLimitError"),
        ([Fault(status=404)], ["--max-retries", "0"], ExitCode.ERROR, "APIStatusError"),
        ([Fault(status=500)], ["--max-retries", "0"], ExitCode.ERROR, "ServerError"),
        ([Fault(error_after=0)], [], ExitCode.ERROR, "ServiceError"),
        # --timeout limits each read (a number, as in httpx): a 5 s silence is a read timeout.
        (
            [Fault(stall=5)],
            ["--timeout", "0.5", "--max-retries", "0"],
            ExitCode.CONNECTION,
            "APITimeoutError",
        ),
    ],
    ids=["401-twice", "expired-twice", "cloudflare", "429", "404", "500", "in-band", "timeout"],
)
def test_api_errors_have_their_exit_code_and_one_line(
    server: LocalServer, faults: list[Fault], args: list[str], code: ExitCode, error: str
) -> None:
    server.inject(*faults)
    result = run("chat", *args, "hi", server=server)
    assert result.returncode == code
    assert result.stdout == ""
    assert_one_error_line(result.stderr, error)
    if error == "APITimeoutError":  # it names the limit that fired, and never a closed peer
        assert "Timeout.read=0.5" in result.stderr
        assert "peer closed" not in result.stderr
    if code == ExitCode.AUTH and error == "AuthenticationError":
        assert server.tokens_issued == 2  # the token was refreshed once before giving up


def test_interrupted_stream_keeps_the_partial_text_on_stdout(server: LocalServer) -> None:
    # The stream drops after 3 pieces; the retry answers differently, so it cannot resume.
    server.inject(Fault(drop_after=3), Fault(variant=True))
    result = run("chat", "cut short", server=server)
    assert result.returncode == ExitCode.STREAM_INTERRUPTED
    assert result.stdout == "".join(pieces_for("cut short")[:3]) + "\n"
    assert_one_error_line(result.stderr, "StreamInterrupted")


def test_interrupted_no_stream_prints_the_partial_text(server: LocalServer) -> None:
    server.inject(Fault(drop_after=2))
    result = run("chat", "--no-stream", "--max-retries", "0", "cut", server=server)
    assert result.returncode == ExitCode.STREAM_INTERRUPTED
    assert result.stdout == "".join(pieces_for("cut")[:2]) + "\n"
    assert_one_error_line(result.stderr, "StreamInterrupted")


def test_json_failure_ends_with_an_error_object(server: LocalServer) -> None:
    server.inject(Fault(drop_after=2))
    result = run("chat", "--json", "--max-retries", "0", "cut", server=server)
    assert result.returncode == ExitCode.STREAM_INTERRUPTED
    *pieces, error = (json.loads(line) for line in result.stdout.splitlines())
    partial = "".join(pieces_for("cut")[:2])
    assert "".join(p["text"] for p in pieces) == partial
    assert error["type"] == "error"
    assert error["error"] == "StreamInterrupted"
    assert error["exit_code"] == ExitCode.STREAM_INTERRUPTED
    assert error["partial"] == partial


def test_closed_port_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run("chat", "--base-url", url, "--max-retries", "0", "hi", env=cli_env())
    assert result.returncode == ExitCode.CONNECTION
    assert_one_error_line(result.stderr, "APIConnectionError")


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["chat", "--model", "gpt-5", "hi"], ""),
        (["chat", "--base-url", "ftp://example.com", "hi"], ""),
        (["chat", "--proxy", "gopher://proxy:1", "hi"], ""),
        (["chat"], "  \n"),
        (["chat", "--timeout", "-1", "hi"], ""),
        (["chat", "--max-retries", "many", "hi"], ""),
        (["chat", "--local", "--base-url", "http://x", "hi"], ""),
        (["serve", "--port", "70000"], ""),
        (["fly"], ""),
        ([], ""),
    ],
    ids=[
        "model",
        "base-url",
        "proxy",
        "empty-stdin",
        "timeout",
        "retries",
        "local-and-url",
        "port",
        "command",
        "none",
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    server: LocalServer, args: list[str], stdin: str
) -> None:
    result = run(*args, server=server, stdin=stdin)
    assert result.returncode == ExitCode.USAGE
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()
    assert server.requests == []


def test_debug_shows_the_traceback_then_the_error_line(server: LocalServer) -> None:
    server.inject(Fault(status=404))
    result = run("chat", "--debug", "hi", server=server)
    assert result.returncode == ExitCode.ERROR
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("aichatonline: APIStatusError: HTTP 404")


def test_verbose_logs_the_retry_but_not_the_token(server: LocalServer) -> None:
    server.inject(Fault(status=429, retry_after="0"))
    result = run("-v", "chat", "hi", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply_for("hi") + "\n"
    assert "retrying the chat request" in result.stderr
    token = server.chat_requests[-1].headers["uniqueid"]
    assert token not in result.stderr


def test_proxy_credentials_are_never_printed() -> None:
    proxy = f"http://user:s3cret-pw@127.0.0.1:{closed_port()}"
    result = run("-vv", "chat", "--proxy", proxy, "--max-retries", "0", "hi", env=cli_env())
    assert result.returncode == ExitCode.CONNECTION
    assert "proxy http://***@127.0.0.1:" in result.stderr  # -v says which proxy, redacted
    assert "s3cret-pw" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("aichatonline: APIConnectionError: ")


def test_version_help_and_exit_code_table(capsys: pytest.CaptureFixture[str]) -> None:
    # In-process: argparse only, no subprocess needed.
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"aichatonline {__version__}\n"
    assert main(["chat", "--help"]) == 0
    help_text = capsys.readouterr().out
    for code in ExitCode:
        assert f"{int(code):>5}  " in help_text
    for command in ("/history", "/reset", "/exit"):
        assert command in help_text


def test_exit_code_for_every_error_class() -> None:
    import aichatonline as sdk

    status = {"status_code": 400}
    assert exit_code_for(sdk.InvalidRequestError("x")) == ExitCode.USAGE
    assert exit_code_for(sdk.APIConnectionError("x")) == ExitCode.CONNECTION
    assert exit_code_for(sdk.APITimeoutError("x")) == ExitCode.CONNECTION
    assert exit_code_for(sdk.AuthenticationError("x", **status)) == ExitCode.AUTH
    assert exit_code_for(sdk.BlockedError("x", **status)) == ExitCode.AUTH
    assert exit_code_for(sdk.RateLimitError("x", **status)) == ExitCode.RATE_LIMIT
    assert exit_code_for(sdk.StreamInterrupted("x", partial="")) == ExitCode.STREAM_INTERRUPTED
    assert exit_code_for(sdk.ServerError("x", **status)) == ExitCode.ERROR
    assert exit_code_for(sdk.ServiceError("x", code=500)) == ExitCode.ERROR
    assert exit_code_for(sdk.ProtocolError("x")) == ExitCode.ERROR
    assert exit_code_for(KeyboardInterrupt()) == ExitCode.INTERRUPTED


# --------------------------------------------------------------------------- serve


def read_line(stream: IO[str] | None, timeout: float = 10.0) -> str:
    """One line from a child's pipe, failing instead of hanging."""
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output from the child in time"
    return stream.readline()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_answers_plain_http_and_stops_cleanly(stop: signal.Signals) -> None:
    child = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--pieces", "3", "--piece-size", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=cli_env(),
    )
    try:
        url = read_line(child.stdout).strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}{TOKEN_PATH}?canvas=-abc", timeout=5) as response:
            token = json.load(response)["data"]
        request = urllib.request.Request(
            f"{url}{CHAT_PATH}",
            data=json.dumps({"conversationId": "c1", "prompt": "curl"}).encode(),
            headers={"UniqueId": token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            lines = response.read().decode().splitlines()
        assert [json.loads(line)["data"]["message"] for line in lines] == pieces_for("curl", 3, 4)
        child.send_signal(stop)
        _, stderr = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0
    assert f"export AICHATONLINE_BASE_URL={url}" in stderr
    assert "Traceback" not in stderr


def test_serve_on_a_busy_port_fails_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        result = run("serve", "--port", str(busy.getsockname()[1]), env=cli_env())
    assert result.returncode == ExitCode.ERROR
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("aichatonline: cannot serve on 127.0.0.1:")


# --------------------------------------------------------------------------- --local, demo


def test_chat_local_needs_no_server() -> None:
    result = run("chat", "--local", "offline", env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply_for("offline") + "\n"


def test_demo_falls_back_to_the_local_server() -> None:
    # A proxy on a closed port makes the real service unreachable, network or not.
    env = cli_env(AICHATONLINE_PROXY=f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    result = run("demo", env=env)
    assert time.monotonic() - started < PROBE_SECONDS + 3
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply_for(DEMO_PROMPT) + "\n"
    assert "the service is not reachable; using the bundled local server at http://127.0.0.1:" in (
        result.stderr
    )


def test_demo_probe_is_bounded_when_the_network_hangs() -> None:
    # A "proxy" that accepts connections but never answers: the probe must give up on time.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = cli_env(AICHATONLINE_PROXY=f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        result = run("demo", "bounded?", env=env)
        elapsed = time.monotonic() - started
    assert elapsed < PROBE_SECONDS + 3
    assert result.returncode == 0, result.stderr
    assert "not reachable" in result.stderr
    assert result.stdout == reply_for("bounded?") + "\n"


def test_demo_local_skips_the_probe() -> None:
    result = run("demo", "--local", env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply_for(DEMO_PROMPT) + "\n"
    assert "not reachable" not in result.stderr


def test_demo_uses_the_configured_base_url(server: LocalServer) -> None:
    result = run("demo", "configured", server=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reply_for("configured") + "\n"
    assert server.chat_requests[-1].json()["prompt"] == "configured"
    assert "not reachable" not in result.stderr


# --------------------------------------------------------------------------- interactive


def spawn_session(server: LocalServer) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "aichatonline", "chat", "--base-url", server.base_url],
        env={**cli_env(), "TERM": "dumb"},
        encoding="utf-8",
        timeout=10,
    )
    child.expect_exact("> ")
    return child


def ask(child: pexpect.spawn, line: str, reply: str) -> None:
    child.sendline(line)
    child.expect_exact(reply)
    child.expect_exact("> ")


def test_interactive_session_keeps_history_and_resets(server: LocalServer) -> None:
    child = spawn_session(server)
    try:
        ask(child, "first", reply_for("first"))
        assert server.chat_requests[-1].json()["prompt"] == "first"
        second = f"User: first\nAssistant: {reply_for('first')}\nUser: second\nAssistant:"
        ask(child, "second", reply_for(second))
        assert server.chat_requests[-1].json()["prompt"] == second

        child.sendline("/history")
        child.expect_exact("User: first")
        child.expect_exact(f"Assistant: {reply_for('first')}")
        child.expect_exact("User: second")
        child.expect_exact(f"Assistant: {reply_for(second)}")
        child.expect_exact("> ")

        child.sendline("/reset")
        child.expect_exact("> ")
        ask(child, "third", reply_for("third"))
        assert server.chat_requests[-1].json()["prompt"] == "third"

        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_interactive_ctrl_c_stops_the_answer_and_the_session_goes_on(
    server: LocalServer,
) -> None:
    server.pieces = 100
    server.delay = 0.2
    child = spawn_session(server)
    try:
        child.sendline("a long one")
        child.expect_exact("You said")
        child.sendintr()
        child.expect_exact("stopped")
        child.expect_exact("> ")
        assert server.wait_for(lambda s: s.disconnects == 1)  # the response was closed

        server.pieces = None
        server.delay = 0.0
        ask(child, "after", reply_for("after"))
        # The stopped turn was dropped: no history before "after".
        assert server.chat_requests[-1].json()["prompt"] == "after"

        child.sendintr()  # at the prompt: clears the line, says how to leave
        child.expect_exact("Ctrl-C again")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == ExitCode.INTERRUPTED


def test_interactive_ctrl_d_exits_0(server: LocalServer) -> None:
    child = spawn_session(server)
    try:
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
