"""``aichatonline gateway``: the real command in a child process (``--local``, ``--port 0``,
``--workers``), its refusal to listen on another interface without a key, and its one-line
error without the ``gateway`` extra."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aichatonline._cli import main
from aichatonline.testing import reply_for

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"^aichatonline gateway: serving on (http://127\.0\.0\.1:(\d+)/v1)$")
KEY = "sk-cli-key"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHATONLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


@contextmanager
def gateway_process(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Run ``aichatonline gateway ARGS``; yield its URL and the stderr lines read so far."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aichatonline", "gateway", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _env(),
        cwd=ROOT,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    stderr = process.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=20).rstrip("\n")
            seen.append(line)
            match = READY.match(line)
            if match:
                break
        yield match.group(1), seen
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_local_on_a_free_port() -> None:
    with gateway_process("--local", "--port", "0", "--api-key", KEY) as (url, seen):
        assert seen == [seen[-1]]  # that one line, nothing before it
        with openai.OpenAI(base_url=url, api_key=KEY, max_retries=0) as client:
            assert next(model.id for model in client.models.list()) == "gpt-4o-mini"
            chunks = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == reply_for(
                "Hi"
            )
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=url, api_key="nope", max_retries=0).models.list()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_as_in_the_readme() -> None:
    with gateway_process("--local", "--port", "0", "--api-key", KEY) as (url, _):

        def curl(path: str, *args: str) -> str:
            command = ["curl", "-sN", url + path, "-H", f"Authorization: Bearer {KEY}", *args]
            return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout

        def chat(stream: bool) -> str:
            body = {
                "model": "gpt-4o-mini",
                "stream": stream,
                "messages": [{"role": "user", "content": "Hi"}],
            }
            return curl(
                "/chat/completions", "-H", "Content-Type: application/json", "-d", json.dumps(body)
            )

        assert json.loads(curl("/models"))["data"][0]["id"] == "gpt-4o-mini"
        events = [line[6:] for line in chat(True).splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
        assert text == reply_for("Hi")
        assert json.loads(chat(False))["choices"][0]["message"]["content"] == reply_for("Hi")


def test_workers_and_the_key_from_the_environment() -> None:
    env = _env(AICHATONLINE_GATEWAY_API_KEY=KEY)
    with gateway_process("--local", "--port", "0", "--workers", "2", env=env) as (url, _):
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=20)
        for _ in range(4):
            done = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
            assert done.choices[0].message.content == reply_for("Hi")
        client.close()


def test_refuses_another_interface_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AICHATONLINE_GATEWAY_API_KEY", raising=False)
    assert main(["gateway", "--host", "0.0.0.0", "--port", "0", "--local"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without an API key" in err
    assert "--no-auth" in err


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--port", "70000"]) == 2
    assert main(["gateway", "--workers", "0"]) == 2
    assert main(["gateway", "--local", "--base-url", "http://x"]) == 2
    capsys.readouterr()
    assert main(["gateway", "--base-url", "ftp://x", "--port", "0"]) == 2
    assert "InvalidRequestError" in capsys.readouterr().err
    assert main(["gateway", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in (
        "--host",
        "--port",
        "--workers",
        "--api-key",
        "--no-auth",
        "--cors-origin",
        "--local",
        "--base-url",
        "--proxy",
        "--timeout",
        "--max-retries",
        "--max-concurrency",
    ):
        assert option in help_text


def test_without_the_extra_one_line_and_exit_2() -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; sys.modules['starlette'] = None\n"
        "from aichatonline._cli import main; sys.exit(main(['gateway', '--local']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        'aichatonline: the gateway needs its extra: pip install "aichatonline[gateway]"'
    ]


def test_the_other_commands_do_not_import_starlette_or_uvicorn() -> None:
    code = (
        "import sys; from aichatonline._cli import build_parser; build_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
