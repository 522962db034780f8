"""Issue 21's list of messages and manners, each against the real thing.

- ``Client(timeout=-1)`` names ``timeout``; a base URL without a scheme gets "did you mean";
  one ending in ``/v1`` (an OpenAI-compatible URL, the gateway's) is refused at construction
  with the URL to use, before any I/O.
- A prompt with no text is refused by every entry point of the SDK (blocking ``Client``,
  ``AsyncClient`` on asyncio and trio, ``chat.completions``, conversations) before any I/O,
  with the words the command line uses too.
- ``ModelNotFoundError`` is exported and in the exception tree; every public exception shows
  as ``aichatonline.X`` in tracebacks and still pickles; the faces over ``stream()`` have
  reprs that say what they are.
- The command line: an unknown option gets the subcommand's usage (and the option meant),
  the model error lists the SDK's names, and ``/history`` after ``/undo`` says what is left.
"""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
import traceback
from typing import Any

import pexpect
import pytest

import aichatonline
from aichatonline import (
    MODELS,
    AsyncClient,
    Client,
    InvalidRequestError,
    ModelNotFoundError,
    RateLimitError,
)
from aichatonline import _exceptions as exceptions_module
from aichatonline._cli import ExitCode, main
from aichatonline._core import MODEL_ALIASES
from aichatonline.testing import LocalServer
from tests.faces import Api, backend_of
from tests.test_cli import cli_env, run

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_a_negative_timeout_names_the_argument(kind: type[Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        kind(timeout=-1)
    assert str(info.value) == "timeout must be a positive number of seconds or None, not -1"
    assert info.value.field == "timeout"


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("localhost:8000", "http://localhost:8000"),
        ("127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("[::1]:8765", "http://[::1]:8765"),
        ("aichatonlineorg.erweima.ai", "https://aichatonlineorg.erweima.ai"),
        ("example.com:8443/prefix", "https://example.com:8443/prefix"),
    ],
)
def test_a_base_url_without_its_scheme_gets_a_suggestion(given: str, meant: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Client(base_url=given)
    assert str(info.value).endswith(f"did you mean {meant!r}?")
    assert info.value.field == "base_url"


@pytest.mark.parametrize("given", ["ftp://example.com", "http://", "user:pw@localhost:8000"])
def test_no_suggestion_where_none_would_help(given: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Client(base_url=given)
    assert "did you mean" not in str(info.value)
    assert "pw" not in str(info.value)  # what reads like credentials is never repeated


@pytest.mark.parametrize(
    ("path", "meant"),
    [("/v1", ""), ("/v1/", ""), ("/V1", ""), ("/v1/chat/completions", ""), ("/api/v1", "/api")],
)
def test_a_base_url_ending_in_v1_is_refused_before_any_io(
    server: LocalServer, path: str, meant: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Client(base_url=server.base_url + path)
    message = str(info.value)
    assert "OpenAI-compatible" in message
    assert message.endswith(f"did you mean {server.base_url + meant!r}?")
    assert server.requests == []
    with Client(base_url=server.base_url + meant) as client:  # the suggestion works
        client.token = "x"
        assert client.base_url == server.base_url + meant


def test_a_v1_base_url_from_the_environment_says_so(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url + "/v1")
    with pytest.raises(InvalidRequestError, match=r"\(from \$AICHATONLINE_BASE_URL\)"):
        Client()
    monkeypatch.setenv("AICHATONLINE_BASE_URL", "localhost:1")
    with pytest.raises(InvalidRequestError) as info:
        Client()
    assert str(info.value).endswith(
        "did you mean 'http://localhost:1'? (from $AICHATONLINE_BASE_URL)"
    )


def test_paths_that_only_look_alike_are_kept(server: LocalServer) -> None:
    for path in ("/v1x", "/xv1", "/v1/chat", "/v10"):
        with Client(base_url=server.base_url + path) as client:
            assert client.base_url == server.base_url + path


# --------------------------------------------------------------------------- empty prompts

EMPTY_PROMPTS = [
    pytest.param("", id="empty-string"),
    pytest.param("  \n\t", id="blank-string"),
    pytest.param([{"role": "user", "content": ""}], id="one-empty-message"),
    pytest.param(
        [{"role": "system", "content": " "}, {"role": "user", "content": [{"text": ""}]}],
        id="every-message-blank",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("messages", EMPTY_PROMPTS)
async def test_every_entry_point_refuses_a_prompt_with_no_text(
    api: Api, client: Any, server: LocalServer, messages: Any
) -> None:
    calls = [lambda: client.complete(messages), lambda: client.stream(messages)]
    if isinstance(messages, str):
        calls.append(lambda: client.conversation().complete(messages))
        calls.append(lambda: client.conversation().stream(messages))
    else:  # OpenAI's shape takes a list only
        calls.append(lambda: client.chat.completions.create(model=MODELS[0], messages=messages))
    for call in calls:
        with pytest.raises(InvalidRequestError) as info:
            await api(call())
        assert str(info.value).startswith("the prompt is empty: ")
        assert info.value.field == "messages"
    assert server.requests == []


@pytest.mark.anyio
async def test_an_empty_message_among_others_is_kept(api: Api, client: Any) -> None:
    # OpenAI's assistant turn without text is a message of a conversation, not a prompt.
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "Again"},
    ]
    assert await api(client.complete(messages))


@pytest.mark.skipif(importlib.util.find_spec("starlette") is None, reason="the gateway extra")
@pytest.mark.anyio
@pytest.mark.parametrize("flavor", ["asyncio"])
async def test_the_gateway_answers_it_with_a_400(server: LocalServer) -> None:
    import httpx

    from aichatonline.gateway import create_app

    app = create_app(base_url=server.base_url)
    body = {"model": MODELS[0], "messages": [{"role": "user", "content": " "}]}
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as http,
    ):
        for stream in (False, True):
            response = await http.post("/v1/chat/completions", json={**body, "stream": stream})
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["message"].startswith("the prompt is empty: ")
            assert error["param"] == "messages"
    assert server.requests == []


def test_the_command_line_refuses_it_with_the_same_words(server: LocalServer) -> None:
    with pytest.raises(InvalidRequestError) as sdk:
        Client(base_url=server.base_url).complete("")
    for args, stdin in ((["chat", ""], ""), (["chat", "-"], " \n"), (["chat"], "")):
        result = run(*args, server=server, stdin=stdin)
        assert result.returncode == ExitCode.USAGE
        line = result.stderr.strip()
        assert line.startswith("aichatonline: InvalidRequestError: the prompt is empty: ")
        assert str(sdk.value).split(":")[0] in line
    assert server.requests == []


# --------------------------------------------------------------------------- exceptions


def test_model_not_found_is_exported_and_in_the_tree() -> None:
    assert aichatonline.ModelNotFoundError is ModelNotFoundError
    assert issubclass(ModelNotFoundError, InvalidRequestError)
    assert "ModelNotFoundError" in aichatonline.__all__
    tree = exceptions_module.__doc__ or ""
    assert "└── ModelNotFoundError" in tree
    with pytest.raises(ModelNotFoundError) as info:
        Client().chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "Hi"}]
        )
    for name in (*MODELS, *MODEL_ALIASES):
        assert name in str(info.value)


PUBLIC_ERRORS = [getattr(aichatonline, name) for name in exceptions_module.__all__]


@pytest.mark.parametrize("error", PUBLIC_ERRORS, ids=lambda error: error.__name__)
def test_public_exceptions_show_their_public_path(error: type[Exception]) -> None:
    assert error.__module__ == "aichatonline"
    assert getattr(aichatonline, error.__qualname__) is error


def test_a_traceback_names_aichatonline_dot_the_class() -> None:
    try:
        raise RateLimitError("slow down", status_code=429, retry_after=2.0)
    except RateLimitError as exc:
        text = "".join(traceback.format_exception(exc))
    assert text.splitlines()[-1] == "aichatonline.RateLimitError: slow down"


def test_exceptions_still_pickle_with_their_fields() -> None:
    error = RateLimitError("slow down", status_code=429, retry_after=2.0, headers={"a": "b"})
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimitError
    assert (copy.status_code, copy.retry_after, copy.headers) == (429, 2.0, {"a": "b"})
    # In a fresh interpreter too, where only the public path can find the class.
    script = (
        "import pickle, sys; e = pickle.loads(sys.stdin.buffer.read()); "
        "print(type(e).__module__, type(e).__name__, e.field)"
    )
    model_error = ModelNotFoundError("no such model", field="model")
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(model_error),
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.decode().split() == ["aichatonline", "ModelNotFoundError", "model"]


# --------------------------------------------------------------------------- reprs


@pytest.mark.anyio
async def test_the_faces_over_stream_have_reprs(api: Api, client: Any) -> None:
    prefix = "" if api.sync else "Async"
    assert repr(client.chat) == f"<{prefix}Chat of {client!r}>"
    assert repr(client.chat.completions) == f"<{prefix}Completions of {client!r}>"
    chat = client.conversation(system="Answer in one sentence, and as briefly as you can.")
    assert repr(chat) == (
        f"<{prefix}Conversation conversation_id={chat.conversation_id!r} "
        "system='Answer in one sentence, and as briefly…' messages=0>"
    )
    await api(chat.complete("Hi"))
    assert repr(chat).endswith(" messages=2>")
    turn = chat.stream("Again")
    assert repr(turn) == (
        f"<{prefix}ConversationStream conversation_id={chat.conversation_id!r} chars=0>"
    )
    await api.drain(turn)
    assert repr(turn).endswith(" completed>")
    hi = [{"role": "user", "content": "Hi"}]
    chunks = await api(client.chat.completions.create(model=MODELS[0], messages=hi, stream=True))
    assert repr(chunks).startswith(f"<{prefix}ChatCompletionStream id='chatcmpl-")
    assert repr(chunks).endswith(f" model={MODELS[0]!r} chars=0>")
    await api.close(chunks)


def test_a_client_repr_masks_proxy_credentials_everywhere() -> None:
    client = Client(proxy="http://user:s3cret@127.0.0.1:1")
    for shown in (repr(client), repr(client.chat), repr(client.chat.completions)):
        assert "s3cret" not in shown
        assert "http://***@127.0.0.1:1" in shown


# --------------------------------------------------------------------------- command line


def test_an_unknown_option_gets_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--lokal", "Hello"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: aichatonline chat ")
    assert "--local" in err.split("\n\n")[0] or "[--local]" in err
    assert err.rstrip().endswith(
        "aichatonline chat: error: unrecognized arguments: --lokal (did you mean --local?)"
    )
    assert main(["serve", "--peices", "3"]) == ExitCode.USAGE
    assert (
        "aichatonline serve: error: unrecognized arguments: --peices 3 (did you mean --pieces?)"
        in (capsys.readouterr().err)
    )


def test_the_model_error_lists_the_sdks_names(server: LocalServer) -> None:
    result = run("chat", "--model", "gpt-5", "Hi", server=server)
    assert result.returncode == ExitCode.USAGE
    line = result.stderr.strip()
    assert line.startswith("aichatonline: ModelNotFoundError: ")
    for name in (*MODELS, *MODEL_ALIASES):
        assert name in line
    assert server.requests == []
    assert run("chat", "--model", next(iter(MODEL_ALIASES)), "Hi", server=server).returncode == 0


def test_history_after_undo_says_what_is_left(server: LocalServer) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "aichatonline", "chat", "--base-url", server.base_url, "--system", "Be brief"],
        env={**cli_env(), "TERM": "dumb"},
        encoding="utf-8",
        timeout=10,
    )
    try:
        child.expect_exact("> ")
        child.sendline("one")
        child.expect_exact("> ")
        child.sendline("/undo")
        child.expect_exact("(the last exchange is taken back)")
        child.expect_exact("> ")
        child.sendline("/history")
        child.expect_exact("> ")
        shown = child.before.replace("\r\n", "\n")
        assert shown.splitlines()[1:] == [
            "System: Be brief",
            "aichatonline: (the conversation holds no exchange; the system message above is "
            "still sent first)",
        ]
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
