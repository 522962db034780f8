"""The commands that talk to the service: ``chat`` (one answer, or a session), ``demo``, ``serve``.

Everything goes through the public blocking :class:`~aichatonline.Client`; the interactive
session is a :meth:`~aichatonline.Client.conversation`. The bundled server
(:mod:`aichatonline.testing`) is imported only by the commands that start it, so ``chat``
starts quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._config import BASE_URL_ENV, ProxyURL, parse_proxy, redact, resolve_base_url, resolve_proxy
from .._core import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, Timeout
from .._core.prompt import EMPTY_PROMPT
from .._exceptions import (
    AiChatOnlineError,
    APIConnectionError,
    APITimeoutError,
    InvalidRequestError,
    StreamInterrupted,
)
from .._openai import check_model
from .._sync.client import Client
from .._sync.conversation import Conversation
from ._output import ExitCode, Output, error_record, notice, one_line, report

__all__ = ["DEMO_PROMPT", "PROBE_SECONDS", "cmd_chat", "cmd_demo", "cmd_serve"]

DEMO_PROMPT = "Hello! What can you do?"
#: The demo's whole probe of the real service (token fetch, DNS included) takes at most this.
PROBE_SECONDS = 3.0
#: Seconds between the pieces of the in-process server's answers, so a person sees it stream.
LOCAL_DELAY = 0.02
PROMPT = "> "
#: The interactive session's commands, for /help.
SESSION_COMMANDS = {
    "/history": "show the conversation so far",
    "/reset": "forget the conversation (the --system text stays)",
    "/undo": "take the last exchange back",
    "/exit": "leave the session (so do /quit and Ctrl-D)",
    "/help": "show this list",
}
#: Said with a connection failure when the answer was to come from the real service.
LOCAL_HINT = "no network? --local chats with the bundled local server instead"

_log = logging.getLogger("aichatonline.cli")


# --------------------------------------------------------------------------- connecting


@dataclass
class Target:
    """Where answers come from, and everything needed to make a client for it."""

    base_url: str
    proxy: str | None
    local: bool
    options: dict[str, Any]
    token: str | None = None

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """A fresh client for the target (closed on exit)."""
        # Loopback: no proxy at all, not even HTTP_PROXY or AICHATONLINE_PROXY from the
        # environment.
        with Client(
            base_url=self.base_url,
            proxy=None if self.local else self.proxy,
            trust_env=not self.local,
            **self.options,
        ) as client:
            if self.token is not None:
                client.token = self.token
            yield client

    def describe(self) -> str:
        """Where answers come from, for notices and logs (credentials masked)."""
        where = "the bundled local server at " if self.local else ""
        via = ""
        if self.proxy and not self.local:
            via = f" via proxy {parse_proxy(self.proxy).shown}"
        return f"{where}{redact(self.base_url)}{via}"


def _proxy_url(proxy: str | None) -> str | None:
    """The proxy URL to use (the argument, else the environment's), checked."""
    resolved: ProxyURL | None = resolve_proxy(proxy)
    return resolved.url if resolved is not None else None


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The client settings the command line sets."""
    options: dict[str, Any] = {}
    if args.timeout is not None or args.total is not None:
        base = Timeout(args.timeout) if args.timeout is not None else DEFAULT_TIMEOUT
        options["timeout"] = base.copy_with(total=args.total)
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    return options


def _start_local_server(stack: contextlib.ExitStack) -> str:
    """Start the bundled server on an ephemeral loopback port for as long as ``stack`` lives."""
    from ..testing import LocalServer  # only the commands that need it pay for the import

    server = LocalServer(port=0, delay=LOCAL_DELAY, record_requests=False)
    return stack.enter_context(server).base_url


@dataclass
class _Probe:
    token: str | None = None
    error: AiChatOnlineError | None = None


def _probe(base_url: str, proxy: str | None, seconds: float) -> _Probe:
    """Fetch a token from ``base_url``, giving up after ``seconds`` however the network behaves.

    Socket timeouts do not bound a blocking client's DNS lookup, so the fetch runs in a daemon
    thread that is simply abandoned when the time is up (it cannot keep the process alive).
    """
    result = _Probe()

    def fetch() -> None:
        try:
            timeout = Timeout(seconds, total=seconds)
            with Client(base_url=base_url, proxy=proxy, timeout=timeout, max_retries=0) as client:
                result.token = client.get_token()
        except AiChatOnlineError as exc:
            result.error = exc

    thread = threading.Thread(target=fetch, name="aichatonline-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if result.token is None and result.error is None:
        result.error = APITimeoutError(f"no answer within {seconds:g}s")
    return result


# --------------------------------------------------------------------------- answering


def _read_prompt(argument: str | None) -> str | None:
    """The prompt: the argument, or stdin for ``-`` or a piped stdin; ``None`` for a session.

    Trailing whitespace (the newline of ``echo``) is dropped; a prompt with no text is the
    SDK's refusal (``client.complete("")`` says the same: ``EMPTY_PROMPT``), with where the
    prompt came from.
    """
    stdin = sys.stdin
    if argument is None and stdin is not None and stdin.isatty():
        return None
    from_stdin = argument is None or argument == "-"
    if from_stdin:
        try:
            argument = stdin.read() if stdin is not None else ""
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(f"stdin is not valid {exc.encoding} text") from None
    assert argument is not None
    prompt = argument.rstrip()
    if not prompt:
        where = "stdin held no text" if from_stdin else "the argument holds no text"
        raise InvalidRequestError(
            f"{EMPTY_PROMPT}: {where}; give one as an argument or on stdin "
            "(or run without one on a terminal for a session)",
            field="messages",
        )
    return prompt


@dataclass
class _Answer:
    text: str
    pieces: int | None
    conversation_id: str
    seconds: float


def _ask(conversation: Conversation, prompt: str, out: Output, stream: bool) -> _Answer:
    """Get one answer, printing it as it arrives (or at the end, when not ``stream``).

    On failure the text received so far is on stdout (for ``--no-stream``, the partial text
    of a :class:`StreamInterrupted` is printed here) and the cursor is at a line start.
    """
    started = time.monotonic()
    if not stream:
        try:
            text = conversation.complete(prompt)
        except StreamInterrupted as exc:
            if not out.as_json:
                out.text(exc.partial)
                out.end_line()
            raise
        out.piece(text)
        if not out.as_json:
            out.end_line()
        return _Answer(text, None, conversation.conversation_id, time.monotonic() - started)
    count = 0
    with conversation.stream(prompt) as pieces:
        try:
            for piece in pieces:
                count += 1
                out.piece(piece)
        finally:
            # Whatever happened, what follows starts on a new line; a broken pipe has no lines.
            with contextlib.suppress(BrokenPipeError):
                out.end_line()
        return _Answer(pieces.text, count, conversation.conversation_id, time.monotonic() - started)


def _answer_once(target: Target, prompt: str, args: argparse.Namespace) -> _Answer:
    out = Output(args.json)
    with target.client() as client:
        _log.info("asking %s", target.describe())
        conversation = client.conversation(system=args.system)
        try:
            answer = _ask(conversation, prompt, out, stream=not args.no_stream)
        except (AiChatOnlineError, KeyboardInterrupt) as exc:
            if args.json:  # the promised last line, Ctrl-C included
                with contextlib.suppress(BrokenPipeError):
                    out.record(error_record(exc, "".join(out.delivered)))
            raise
    if args.json:
        out.record(
            {
                "type": "done",
                "text": answer.text,
                "chars": len(answer.text),
                "pieces": answer.pieces,
                "conversation_id": answer.conversation_id,
                "seconds": round(answer.seconds, 3),
            }
        )
    return answer


class _Session:
    """The interactive chat: one conversation; one turn per input line."""

    def __init__(self, target: Target, args: argparse.Namespace) -> None:
        self.target = target
        self.system: str | None = args.system
        self.stream = not args.no_stream
        self.show_traceback = bool(args.debug)

    def run(self) -> ExitCode:
        """Read lines until /exit, Ctrl-D or two Ctrl-C in a row."""
        with contextlib.suppress(ImportError):  # line editing where the platform has it
            import readline  # noqa: F401
        notice(
            f"chatting with {self.target.describe()}. /help lists the commands; "
            "Ctrl-C stops an answer; /exit or Ctrl-D leaves."
        )
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(self.target.client())
            conversation = client.conversation(system=self.system)
            interrupted_at_prompt = False
            while True:
                try:
                    line = input(PROMPT)
                except EOFError:
                    print()
                    return ExitCode.OK
                except KeyboardInterrupt:
                    print()
                    if interrupted_at_prompt:
                        return ExitCode.INTERRUPTED
                    interrupted_at_prompt = True
                    notice("(Ctrl-C again, /exit or Ctrl-D to leave)")
                    continue
                interrupted_at_prompt = False
                line = line.strip()
                if not line:
                    continue
                if line.startswith("/"):
                    if self.command(conversation, line):
                        return ExitCode.OK
                    continue
                if not self.turn(conversation, line):
                    # The interrupt may have landed anywhere inside the client: carry on
                    # with a fresh one, keeping the token and the conversation.
                    self.target.token = client.token
                    stack.close()
                    client = stack.enter_context(self.target.client())
                    kept = conversation
                    conversation = client.conversation(system=self.system)
                    conversation.conversation_id = kept.conversation_id
                    for message in kept.history:
                        conversation.add(message["role"], str(message["content"]))

    def command(self, conversation: Conversation, line: str) -> bool:
        """Run a /command; True means leave."""
        name = line.split()[0].lower()
        if name in ("/exit", "/quit"):
            return True
        if name == "/reset":
            conversation.reset()
            notice("(the conversation is forgotten)")
        elif name == "/undo":
            removed = conversation.undo()
            notice("(the last exchange is taken back)" if removed else "(nothing to undo)")
        elif name == "/history":
            show_history(conversation)
        elif name == "/help":
            for command, meaning in SESSION_COMMANDS.items():
                print(f"{command:<9} {meaning}")
        else:
            notice(f"unknown command {name}; /help lists the commands")
        return False

    def turn(self, conversation: Conversation, line: str) -> bool:
        """Ask and print; the conversation keeps the exchange. False after a Ctrl-C."""
        out = Output(as_json=False)
        try:
            _ask(conversation, line, out, self.stream)
        except KeyboardInterrupt:
            out.end_line()
            notice("(stopped; this turn is not kept in the conversation)")
            return False
        except AiChatOnlineError as exc:
            report(exc, self.show_traceback, None if self.target.local else LOCAL_HINT)
            notice("(this turn is not kept in the conversation)")
            return True
        return True


def show_history(conversation: Conversation) -> None:
    """What the next turn sends before its question: the system message, then the exchanges.

    With no exchange (none yet, or all taken back by /undo or /reset) it says so, and that
    the system message, if any, is still sent.
    """
    history = conversation.history
    if conversation.system:
        print(f"System: {conversation.system}")
    for message in history:
        print(f"{message['role'].capitalize()}: {message['content']}")
    if not history:
        kept = "; the system message above is still sent first" if conversation.system else ""
        notice(f"(the conversation holds no exchange{kept})")


# --------------------------------------------------------------------------- commands


def _chat_target(args: argparse.Namespace, stack: contextlib.ExitStack) -> Target:
    options = client_options(args)
    if args.local:
        return Target(_start_local_server(stack), None, True, options)
    args.failure_hint = LOCAL_HINT
    return Target(resolve_base_url(args.base_url), _proxy_url(args.proxy), False, options)


def _check_request_options(args: argparse.Namespace) -> None:
    """Fail on bad input before any I/O (these raise InvalidRequestError)."""
    if args.model:  # the SDK's own check: the same names, the same ModelNotFoundError
        check_model(args.model)
    if args.base_url is not None:
        resolve_base_url(args.base_url)
    resolve_proxy(args.proxy)


def cmd_chat(args: argparse.Namespace) -> ExitCode:
    """``aichatonline chat``: one answer, or an interactive session."""
    _check_request_options(args)
    prompt = _read_prompt(args.prompt)
    if prompt is None and args.json:
        raise InvalidRequestError(
            "--json needs a prompt (an argument or stdin); the interactive session prints text"
        )
    with contextlib.ExitStack() as stack:
        target = _chat_target(args, stack)
        if prompt is None:
            return _Session(target, args).run()
        _answer_once(target, prompt, args)
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> ExitCode:
    """``aichatonline demo``: the real service if it answers, else the bundled server."""
    _check_request_options(args)
    prompt = _read_prompt(args.prompt)
    assert prompt is not None  # demo's PROMPT has a default, so never a session
    with contextlib.ExitStack() as stack:
        if args.local or args.base_url is not None or os.environ.get(BASE_URL_ENV):
            target = _chat_target(args, stack)
        else:
            proxy = _proxy_url(args.proxy)
            probe = _probe(DEFAULT_BASE_URL, proxy, PROBE_SECONDS)
            if probe.token is not None:
                target = Target(DEFAULT_BASE_URL, proxy, False, client_options(args))
                target.token = probe.token  # the probe's token saves the chat a fetch
            else:
                url = _start_local_server(stack)
                target = Target(url, None, True, client_options(args))
                state = "reachable" if isinstance(probe.error, APIConnectionError) else "usable"
                reason = one_line(str(probe.error))
                notice(
                    f"the service is not {state}; using the bundled local server at {url} "
                    f"({type(probe.error).__name__}: {redact(reason)})"
                )
        if not args.json:
            notice(f"asking {target.describe()}: {prompt}")
        answer = _answer_once(target, prompt, args)
    if not args.json:
        pieces = "" if answer.pieces is None else f" in {answer.pieces} pieces"
        notice(f"done: {len(answer.text)} characters{pieces}, {answer.seconds:.2f} s")
    return ExitCode.OK


def cmd_serve(args: argparse.Namespace) -> ExitCode:
    """``aichatonline serve``: the bundled local server in the foreground."""
    from ..testing import ServerOptions, run_server  # only serve pays for the server's import

    def announce(url: str) -> None:
        # stderr first: whoever has read the URL from stdout (a script, a test) may stop the
        # server at once, and these lines must already be out by then.
        notice(f"serving the bundled local AiChatOnline server at {url}; Ctrl-C stops it")
        print(f"export {BASE_URL_ENV}={url}", file=sys.stderr, flush=True)
        print(url, flush=True)  # the first stdout line is exactly the URL, for scripts

    try:
        run_server(
            args.host, args.port, options=ServerOptions.from_namespace(args), on_ready=announce
        )
    except KeyboardInterrupt:  # Ctrl-C before run_server installed its signal handlers
        pass
    except OSError as exc:
        hint = " (in use? --port 0 picks a free port)" if args.port else ""
        notice(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}{hint}")
        return ExitCode.ERROR
    notice("stopped")
    return ExitCode.OK
