"""The command line's arguments: every sub-command, its options, help and epilogs."""

from __future__ import annotations

import argparse
from typing import Any

from .._arguments import PORT, POSITIVE_SECONDS, add_service_options
from .._config import BASE_URL_ENV, PROXY_ENV
from .._core import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, MODEL_ALIASES, MODELS
from .._version import __version__
from ._commands import DEMO_PROMPT, PROBE_SECONDS, cmd_chat, cmd_demo, cmd_serve
from ._output import EXIT_MEANINGS, PROG, ExitCode

__all__ = ["DEFAULT_SERVE_PORT", "build_parser"]

#: ``serve`` listens here unless told otherwise: a fixed port keeps the exported
#: ``AICHATONLINE_BASE_URL`` valid across restarts (``--port 0`` picks a free one).
DEFAULT_SERVE_PORT = 8765


def _exit_code_table() -> str:
    return "\n".join(f"  {int(code):>3}  {EXIT_MEANINGS[code]}" for code in ExitCode)


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
  {PROG} gateway --local               an OpenAI-compatible API on the local server
"""

_CHAT_EPILOG = f"""\
interactive session (no prompt, stdin a terminal):
  Every turn sends the whole conversation (user and assistant turns) under one
  conversation id.
  /history   show the conversation          /reset   forget it (the --system text stays)
  /undo      take the last exchange back    /help    list the commands
  /exit      leave (so does Ctrl-D)
  Ctrl-C while an answer streams stops it; that unfinished turn (your line and the partial
  answer) is not kept and the session goes on. Ctrl-C at the prompt clears the line; a
  second Ctrl-C in a row leaves with exit code 130.

--json prints {{"type": "piece", "text": ...}} per piece, then {{"type": "done", "text": ...,
"chars": ..., "pieces": ..., "conversation_id": ..., "seconds": ...}} ("pieces" is null with
--no-stream); on failure, or Ctrl-C, a {{"type": "error", "error": ..., "message": ...,
"exit_code": ...}} object comes last instead (with "partial" when text had arrived).

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


def add_common(parser: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
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
        help="log retries (and the local server's requests) to stderr, -vv for debug detail "
        "(tracebacks: --debug)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default_d,
        help="show the traceback of an error, and log at debug level",
    )


def _add_chat_options(parser: argparse.ArgumentParser) -> None:
    """The options ``chat`` and ``demo`` share: where to connect, what to send, how to print."""
    where = add_service_options(
        parser,
        title="connection",
        local_help="start the bundled local server in this process and chat with it (no "
        "network; proxies are not used)",
        timeout_help="limit on each network operation, as in httpx: connecting, sending, and "
        "the longest silence between two reads (default: connect "
        f"{DEFAULT_TIMEOUT.connect:g}, read {DEFAULT_TIMEOUT.read:g}); a long answer that "
        "keeps coming is never cut",
    )
    where.add_argument(
        "--total",
        type=POSITIVE_SECONDS,
        metavar="SECONDS",
        help="bound on the whole call, token fetch, retries and back-off included (default: none)",
    )
    what = parser.add_argument_group("request and output")
    what.add_argument("--system", metavar="TEXT", help="a system message sent before the prompt")
    what.add_argument(
        "--model",
        metavar="NAME",
        help=f"checked against the provider's models ({', '.join([*MODELS, *MODEL_ALIASES])}); "
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
        description="Chat with AiChatOnline from the shell, or run its bundled local server "
        "or an OpenAI-compatible gateway.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_common(parser, on_subcommand=False)
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
    chat.set_defaults(run=cmd_chat)

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
        type=PORT,
        default=DEFAULT_SERVE_PORT,
        help="port to listen on (%(default)s; 0 picks a free one)",
    )
    # The server's options and their flags are written once, in aichatonline.testing
    # (a small module: the server itself is imported only when serve runs).
    from ..testing import ServerOptions

    ServerOptions.add_arguments(serve)
    serve.set_defaults(run=cmd_serve)

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
    demo.set_defaults(run=cmd_demo)

    from ..gateway._cli import add_parser as add_gateway_parser  # no Starlette/uvicorn import

    add_gateway_parser(commands)
    for command in commands.choices.values():
        add_common(command, on_subcommand=True)  # -v / --debug after the subcommand too
        command.set_defaults(command_parser=command)  # whose usage an unknown argument prints
    return parser
