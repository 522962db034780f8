"""The ``aichatonline`` command line: chat from a shell, run the bundled server, try the demo.

::

    aichatonline chat "PROMPT"     stream one answer (the prompt from stdin with "-" or a pipe)
    aichatonline chat              an interactive session, when stdin is a terminal
    aichatonline serve             the bundled local server in the foreground
    aichatonline demo [PROMPT]     the whole flow on any machine, with or without internet

Everything goes through the public blocking :class:`~aichatonline.Client`. Answers go to
stdout; notices, logs and errors go to stderr, so the output pipes cleanly. A failure is one
line on stderr and an exit code that says which kind it was (:class:`ExitCode`); tracebacks
only with ``--debug`` or ``-v``. The bundled server (:mod:`aichatonline.testing`) is imported
only by the commands that start it, so ``chat`` starts quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ._client import Client
from ._config import BASE_URL_ENV, PROXY_ENV, redact, resolve_base_url, resolve_proxy
from ._core import DEFAULT_BASE_URL, DEFAULT_MODEL, get_random_string
from ._exceptions import (
    AiChatOnlineError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BlockedError,
    InvalidRequestError,
    RateLimitError,
    StreamInterrupted,
)
from ._provider import AiChatOnline
from ._types import Message
from ._version import __version__

__all__ = ["ExitCode", "exit_code_for", "main"]

PROG = "aichatonline"
#: ``serve`` listens here unless told otherwise: a fixed port keeps the exported
#: ``AICHATONLINE_BASE_URL`` valid across restarts (``--port 0`` picks a free one).
DEFAULT_SERVE_PORT = 8765
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
    "/exit": "leave the session (so do /quit and Ctrl-D)",
    "/help": "show this list",
}

_log = logging.getLogger("aichatonline.cli")


class ExitCode(enum.IntEnum):
    """The process exit codes: one per kind of failure, so scripts can tell them apart."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONNECTION = 3
    AUTH = 4
    RATE_LIMIT = 5
    STREAM_INTERRUPTED = 6
    INTERRUPTED = 130
    BROKEN_PIPE = 141


_EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "the service failed: an HTTP status, an in-band error, an unreadable answer",
    ExitCode.USAGE: "bad arguments or input; nothing was sent",
    ExitCode.CONNECTION: "could not connect, or the connection broke, or a timeout ran out",
    ExitCode.AUTH: "the token was rejected, or the site's bot protection blocked the request",
    ExitCode.RATE_LIMIT: "rate limited (HTTP 429/402), still after the retries",
    ExitCode.STREAM_INTERRUPTED: "the answer broke off; the partial text is on stdout",
    ExitCode.INTERRUPTED: "interrupted by Ctrl-C",
    ExitCode.BROKEN_PIPE: "stdout was closed early (for example, piped into head)",
}


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code for a failure (most specific class first)."""
    if isinstance(exc, InvalidRequestError):
        return ExitCode.USAGE
    if isinstance(exc, StreamInterrupted):
        return ExitCode.STREAM_INTERRUPTED
    if isinstance(exc, APIConnectionError):  # APITimeoutError included
        return ExitCode.CONNECTION
    if isinstance(exc, (AuthenticationError, BlockedError)):
        return ExitCode.AUTH
    if isinstance(exc, RateLimitError):
        return ExitCode.RATE_LIMIT
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.ERROR


# --------------------------------------------------------------------------- output


def _notice(text: str) -> None:
    """One line for the person at the terminal, on stderr (never mixed into the answer)."""
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _report(exc: AiChatOnlineError, show_traceback: bool) -> ExitCode:
    """Print ``exc`` as one line on stderr (after its traceback, if asked) and return its code.

    The SDK keeps tokens and proxy credentials out of its messages; ``redact`` is a second
    guard for URL credentials.
    """
    if show_traceback:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    _notice(f"{type(exc).__name__}: {redact(_one_line(str(exc)))}")
    return exit_code_for(exc)


class _Output:
    """Writes an answer to stdout as text or JSON lines, flushing every piece.

    ``at_line_start`` tracks whether the cursor is at the start of a line, so that what
    follows an answer (the next prompt, an error on stderr) starts on a line of its own.
    """

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.at_line_start = True

    def text(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        if not self.at_line_start:
            self.text("\n")

    def record(self, obj: dict[str, Any]) -> None:
        # ASCII-escaped JSON: parses the same and survives any stdout encoding.
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------- arguments


def _number(kind: Callable[[str], Any], test: Callable[[Any], bool], what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")
_non_negative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_port = _number(int, lambda v: 0 <= v <= 65535, "a port number (0-65535)")


def _exit_code_table() -> str:
    return "\n".join(f"  {int(code):>3}  {_EXIT_MEANINGS[code]}" for code in ExitCode)


_EPILOG = f"""\
environment:
  {BASE_URL_ENV}  the service's base URL (default {DEFAULT_BASE_URL})
  {PROXY_ENV}     a proxy URL (http, https or socks5); HTTP(S)_PROXY also apply

exit codes:
{_exit_code_table()}

examples:
  {PROG} demo                          see it work, with or without internet
  {PROG} chat "Hello"                  stream one answer
  echo "Hello" | {PROG} chat --json    one JSON object per piece, then a summary
  {PROG} chat                          an interactive session (on a terminal)
  {PROG} serve --port 8765             a local server for your own tests
"""

_CHAT_EPILOG = f"""\
interactive session (no prompt, stdin a terminal):
  Every turn sends the whole conversation (user and assistant turns) as the prompt.
  /history   show the conversation          /reset   forget it (the --system text stays)
  /exit      leave (so does Ctrl-D)         /help    list the commands
  Ctrl-C while an answer streams stops it; that unfinished turn (your line and the partial
  answer) is dropped from the history and the session goes on. Ctrl-C at the prompt clears
  the line; a second Ctrl-C in a row leaves with exit code 130.

--json prints {{"type": "piece", "text": ...}} per piece, then {{"type": "done", "text": ...,
"chars": ..., "pieces": ..., "conversation_id": ..., "seconds": ...}} ("pieces" is null with
--no-stream); on failure a {{"type": "error", "error": ..., "message": ..., "exit_code": ...}}
object comes last instead (with "partial" for an interrupted answer).

exit codes:
{_exit_code_table()}
"""

_DEMO_EPILOG = f"""\
Where the answer comes from: --base-url or {BASE_URL_ENV} when given (no fallback);
otherwise the real service if a token fetch succeeds within {PROBE_SECONDS:g} s; otherwise
the bundled local server, started in this process (a notice on stderr says so). --local
skips the probe.

exit codes:
{_exit_code_table()}
"""


def _add_common(parser: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    """``-v`` and ``--debug``, accepted before and after the subcommand.

    On a subcommand the defaults are SUPPRESS, so that they do not overwrite what was given
    before the subcommand.
    """
    default_v: Any = argparse.SUPPRESS if on_subcommand else 0
    default_d: Any = argparse.SUPPRESS if on_subcommand else False
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default_v,
        help="log retries (and the local server's requests) to stderr, -vv for debug detail; "
        "show tracebacks",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default_d,
        help="show the traceback of an error, and log at debug level",
    )


def _add_chat_options(parser: argparse.ArgumentParser) -> None:
    """The options ``chat`` and ``demo`` share: where to connect, what to send, how to print."""
    where = parser.add_argument_group("connection")
    choice = where.add_mutually_exclusive_group()
    choice.add_argument(
        "--base-url", metavar="URL", help=f"the service's base URL (default: ${BASE_URL_ENV})"
    )
    choice.add_argument(
        "--local",
        action="store_true",
        help="start the bundled local server in this process and chat with it (no network; "
        "proxies are not used)",
    )
    where.add_argument("--proxy", metavar="URL", help=f"proxy URL (default: ${PROXY_ENV})")
    where.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="bound on the whole call, retries included (default: 600)",
    )
    where.add_argument(
        "--max-retries",
        type=_non_negative_int,
        metavar="N",
        help="retries after a failed attempt (default: 2)",
    )
    what = parser.add_argument_group("request and output")
    what.add_argument("--system", metavar="TEXT", help="a system message sent before the prompt")
    what.add_argument(
        "--model",
        metavar="NAME",
        help=f"checked against the provider's models (only {DEFAULT_MODEL}); "
        "the request itself carries no model",
    )
    what.add_argument(
        "--json", action="store_true", help="print JSON lines (for scripts); see below"
    )
    what.add_argument(
        "--no-stream",
        action="store_true",
        help="print the whole answer once it is complete instead of piece by piece",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the whole command line."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chat with AiChatOnline from the shell, or run its bundled local server.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, on_subcommand=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser(
        "chat",
        help="stream an answer, or chat interactively",
        description="Stream the answer to PROMPT to stdout. Without PROMPT: read it from\n"
        "stdin when stdin is not a terminal, else start an interactive session.",
        epilog=_CHAT_EPILOG,
        formatter_class=formatter,
    )
    chat.add_argument("prompt", nargs="?", metavar="PROMPT", help='the prompt ("-": stdin)')
    _add_chat_options(chat)
    _add_common(chat, on_subcommand=True)
    chat.set_defaults(run=_cmd_chat)

    serve = commands.add_parser(
        "serve",
        help="run the bundled local server in the foreground",
        description="Run the bundled local AiChatOnline-compatible server until Ctrl-C or\n"
        "SIGTERM (then exit 0). The first line on stdout is its base URL; stderr says\n"
        f"how to point clients at it (export {BASE_URL_ENV}=...).",
        formatter_class=formatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_SERVE_PORT,
        help="port to listen on (%(default)s; 0 picks a free one)",
    )
    serve.add_argument(
        "--pieces",
        type=_non_negative_int,
        metavar="N",
        help="pieces per answer (default: just enough for the reply once)",
    )
    serve.add_argument(
        "--piece-size",
        type=_positive_int,
        default=8,
        metavar="CHARS",
        help="characters per piece (%(default)s)",
    )
    serve.add_argument(
        "--delay",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="pause between pieces (%(default)s)",
    )
    serve.add_argument(
        "--token-ttl",
        type=_positive_float,
        metavar="SECONDS",
        help="lifetime of an issued token (default: forever)",
    )
    _add_common(serve, on_subcommand=True)
    serve.set_defaults(run=_cmd_serve)

    demo = commands.add_parser(
        "demo",
        help="show the whole flow working, with or without internet",
        description="Stream an answer to PROMPT from the real service, or from the bundled\n"
        "local server when the service cannot be reached.",
        epilog=_DEMO_EPILOG,
        formatter_class=formatter,
    )
    demo.add_argument(
        "prompt",
        nargs="?",
        default=DEMO_PROMPT,
        metavar="PROMPT",
        help=f'the prompt ("-": stdin; default: "{DEMO_PROMPT}")',
    )
    _add_chat_options(demo)
    _add_common(demo, on_subcommand=True)
    demo.set_defaults(run=_cmd_demo)
    return parser


# --------------------------------------------------------------------------- connecting


@dataclass
class _Target:
    """Where answers come from, and everything needed to make a client for it."""

    base_url: str
    proxy: str | None
    local: bool
    options: dict[str, Any]
    token: str | None = None

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """A fresh client for the target (closed on exit)."""
        http = None
        if self.local:
            # Loopback: no proxy at all, not even HTTP_PROXY or AICHATONLINE_PROXY from the
            # environment (a client given its own httpx client ignores those).
            http = httpx.Client(trust_env=False)
        try:
            with Client(
                self.base_url,
                proxy=None if self.local else self.proxy,
                http_client=http,
                **self.options,
            ) as client:
                if self.token is not None:
                    client.token = self.token
                yield client
        finally:
            if http is not None:
                http.close()

    def describe(self) -> str:
        """Where answers come from, for notices and logs (credentials redacted)."""
        where = "the bundled local server at " if self.local else ""
        via = f" via proxy {redact(self.proxy)}" if self.proxy and not self.local else ""
        return f"{where}{redact(self.base_url)}{via}"


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    return options


def _start_local_server(stack: contextlib.ExitStack) -> str:
    """Start the bundled server on an ephemeral loopback port for as long as ``stack`` lives."""
    from .testing import LocalServer  # only the commands that need it pay for the import

    server = LocalServer(port=0, delay=LOCAL_DELAY, record_requests=False)
    return stack.enter_context(server).base_url


@dataclass
class _Probe:
    """What the demo's probe of the real service found."""

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
            with Client(base_url, proxy=proxy, timeout=seconds, max_retries=0) as client:
                result.token = client.get_token()
        except AiChatOnlineError as exc:
            result.error = exc

    thread = threading.Thread(target=fetch, name="aichatonline-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if result.token is None and result.error is None:
        result.error = APITimeoutError(f"no answer within {seconds:g}s")
    return result


# --------------------------------------------------------------------------- prompts


def _read_prompt(argument: str | None) -> str | None:
    """The prompt: the argument, or stdin for ``-`` or a piped stdin; ``None`` for a session.

    Trailing whitespace (the newline of ``echo``) is dropped; an empty prompt is an error.
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
        where = "stdin was empty" if from_stdin else "the prompt is empty"
        raise InvalidRequestError(
            f"no prompt: {where}; give one as an argument or on stdin "
            "(or run without one on a terminal for a session)"
        )
    return prompt


def _messages(system: str | None, history: list[Message], prompt: str) -> list[Message]:
    """The messages for one request: the system message, the history, the new user turn."""
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(history)
    messages.append({"role": "user", "content": prompt})
    return messages


# --------------------------------------------------------------------------- answering


@dataclass
class _Answer:
    text: str
    pieces: int | None
    conversation_id: str
    seconds: float


def _ask(client: Client, messages: list[Message], out: _Output, stream: bool) -> _Answer:
    """Get one answer, printing it as it arrives (or at the end, when not ``stream``).

    On failure the text received so far is on stdout (for ``--no-stream``, the partial text
    of a :class:`StreamInterrupted` is printed here) and the cursor is at a line start.
    """
    started = time.monotonic()
    if not stream:
        conversation_id = get_random_string()
        try:
            text = client.complete(messages, conversation_id=conversation_id)
        except StreamInterrupted as exc:
            if not out.as_json:
                out.text(exc.partial)
                out.end_line()
            raise
        if out.as_json:
            out.record({"type": "piece", "text": text})
        else:
            out.text(text)
            out.end_line()
        return _Answer(text, None, conversation_id, time.monotonic() - started)
    count = 0
    with client.stream(messages) as pieces:
        try:
            for piece in pieces:
                count += 1
                if out.as_json:
                    out.record({"type": "piece", "text": piece})
                else:
                    out.text(piece)
        finally:
            # Whatever happened, what follows starts on a new line; a broken pipe has no lines.
            with contextlib.suppress(BrokenPipeError):
                out.end_line()
        return _Answer(pieces.text, count, pieces.conversation_id, time.monotonic() - started)


def _answer_once(target: _Target, messages: list[Message], args: argparse.Namespace) -> _Answer:
    out = _Output(args.json)
    with target.client() as client:
        _log.info("asking %s", target.describe())
        try:
            answer = _ask(client, messages, out, stream=not args.no_stream)
        except AiChatOnlineError as exc:
            if args.json:
                error: dict[str, Any] = {
                    "type": "error",
                    "error": type(exc).__name__,
                    "message": redact(str(exc)),
                    "exit_code": int(exit_code_for(exc)),
                }
                if isinstance(exc, StreamInterrupted):
                    error["partial"] = exc.partial
                out.record(error)
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
    """The interactive chat: the conversation lives in memory; one turn per input line."""

    def __init__(self, target: _Target, args: argparse.Namespace) -> None:
        self.target = target
        self.system: str | None = args.system
        self.stream = not args.no_stream
        self.show_traceback = bool(args.debug or args.verbose)
        self.history: list[Message] = []

    def run(self) -> ExitCode:
        """Read lines until /exit, Ctrl-D or two Ctrl-C in a row."""
        with contextlib.suppress(ImportError):  # line editing where the platform has it
            import readline  # noqa: F401
        _notice(
            f"chatting with {self.target.describe()}. /help lists the commands; "
            "Ctrl-C stops an answer; /exit or Ctrl-D leaves."
        )
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(self.target.client())
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
                    _notice("(Ctrl-C again, /exit or Ctrl-D to leave)")
                    continue
                interrupted_at_prompt = False
                line = line.strip()
                if not line:
                    continue
                if line.startswith("/"):
                    if self.command(line):
                        return ExitCode.OK
                    continue
                if not self.turn(client, line):
                    # The interrupt may have landed anywhere inside the client (a lock, the
                    # connection pool): carry on with a fresh one, keeping the token.
                    self.target.token = client.token
                    stack.close()
                    client = stack.enter_context(self.target.client())

    def command(self, line: str) -> bool:
        """Run a /command; True means leave."""
        name = line.split()[0].lower()
        if name in ("/exit", "/quit"):
            return True
        if name == "/reset":
            self.history.clear()
            _notice("(the conversation is forgotten)")
        elif name == "/history":
            if self.system:
                print(f"System: {self.system}")
            for message in self.history:
                print(f"{message['role'].capitalize()}: {message['content']}")
            if not self.history:
                _notice("(no conversation yet)")
        elif name == "/help":
            for command, meaning in SESSION_COMMANDS.items():
                print(f"{command:<9} {meaning}")
        else:
            _notice(f"unknown command {name}; /help lists the commands")
        return False

    def turn(self, client: Client, line: str) -> bool:
        """Ask, print, and keep the exchange in the history. False after a Ctrl-C."""
        out = _Output(as_json=False)
        try:
            answer = _ask(client, _messages(self.system, self.history, line), out, self.stream)
        except KeyboardInterrupt:
            out.end_line()
            _notice("(stopped; this turn is not kept in the conversation)")
            return False
        except AiChatOnlineError as exc:
            _report(exc, self.show_traceback)
            _notice("(this turn is not kept in the conversation)")
            return True
        self.history.append({"role": "user", "content": line})
        self.history.append({"role": "assistant", "content": answer.text})
        return True


# --------------------------------------------------------------------------- commands


def _chat_target(args: argparse.Namespace, stack: contextlib.ExitStack) -> _Target:
    options = _client_options(args)
    if args.local:
        return _Target(_start_local_server(stack), None, True, options)
    return _Target(resolve_base_url(args.base_url), resolve_proxy(args.proxy), False, options)


def _check_request_options(args: argparse.Namespace) -> None:
    """Fail on bad input before any I/O (these raise InvalidRequestError)."""
    AiChatOnline.get_model(args.model or "")
    if args.base_url is not None:
        resolve_base_url(args.base_url)
    resolve_proxy(args.proxy)


def _cmd_chat(args: argparse.Namespace) -> ExitCode:
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
        _answer_once(target, _messages(args.system, [], prompt), args)
    return ExitCode.OK


def _cmd_demo(args: argparse.Namespace) -> ExitCode:
    _check_request_options(args)
    prompt = _read_prompt(args.prompt)
    assert prompt is not None  # demo's PROMPT has a default, so never a session
    with contextlib.ExitStack() as stack:
        if args.local or args.base_url is not None or os.environ.get(BASE_URL_ENV):
            target = _chat_target(args, stack)
        else:
            proxy = resolve_proxy(args.proxy)
            probe = _probe(DEFAULT_BASE_URL, proxy, PROBE_SECONDS)
            if probe.token is not None:
                target = _Target(DEFAULT_BASE_URL, proxy, False, _client_options(args))
                target.token = probe.token  # the probe's token saves the chat a fetch
            else:
                url = _start_local_server(stack)
                target = _Target(url, None, True, _client_options(args))
                state = "reachable" if isinstance(probe.error, APIConnectionError) else "usable"
                reason = _one_line(str(probe.error))
                _notice(
                    f"the service is not {state}; using the bundled local server at {url} "
                    f"({type(probe.error).__name__}: {redact(reason)})"
                )
        if not args.json:
            _notice(f"asking {target.describe()}: {prompt}")
        answer = _answer_once(target, _messages(args.system, [], prompt), args)
    if not args.json:
        pieces = "" if answer.pieces is None else f" in {answer.pieces} pieces"
        _notice(f"done: {len(answer.text)} characters{pieces}, {answer.seconds:.2f} s")
    return ExitCode.OK


def _cmd_serve(args: argparse.Namespace) -> ExitCode:
    from .testing import run_server  # only the commands that need it pay for the import

    def announce(url: str) -> None:
        print(url, flush=True)  # the first stdout line is exactly the URL, for scripts
        _notice(f"serving the bundled local AiChatOnline server at {url}; Ctrl-C stops it")
        print(f"export {BASE_URL_ENV}={url}", file=sys.stderr, flush=True)

    try:
        run_server(
            args.host,
            args.port,
            pieces=args.pieces,
            piece_size=args.piece_size,
            delay=args.delay,
            token_ttl=args.token_ttl,
            on_ready=announce,
        )
    except KeyboardInterrupt:  # Ctrl-C before run_server installed its signal handlers
        pass
    except OSError as exc:
        hint = " (in use? --port 0 picks a free port)" if args.port else ""
        _notice(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}{hint}")
        return ExitCode.ERROR
    _notice("stopped")
    return ExitCode.OK


# --------------------------------------------------------------------------- main


class _RedactingFormatter(logging.Formatter):
    """Log lines with URL credentials hidden (the SDK hides them too: a second guard)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


@contextlib.contextmanager
def _logging(verbose: int, debug: bool) -> Iterator[None]:
    """``-v``: the SDK's INFO lines (retries) on stderr; ``-vv`` or ``--debug``: DEBUG too.

    Undone on exit, so that ``main()`` called in a process leaves its logging as it was.
    """
    if not verbose and not debug:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(name)s: %(message)s"))
    logger = logging.getLogger("aichatonline")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug or verbose > 1 else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _tolerant_stdout() -> None:
    # An answer may hold any character; a terminal that cannot show one gets "?" instead of
    # the whole command failing with UnicodeEncodeError.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help and --version (0), usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    _tolerant_stdout()
    with _logging(args.verbose, args.debug):
        try:
            code: ExitCode = args.run(args)
            return int(code)
        except AiChatOnlineError as exc:
            return int(_report(exc, bool(args.debug or args.verbose)))
        except KeyboardInterrupt:
            _notice("interrupted")
            return int(ExitCode.INTERRUPTED)
        except BrokenPipeError:
            _detach_stdout()
            return int(ExitCode.BROKEN_PIPE)


def _detach_stdout() -> None:
    # The reader went away (``| head``). Point stdout at /dev/null so that the
    # interpreter's final flush does not fail a second time.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
