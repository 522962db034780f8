"""The ``aichatonline`` command line: chat from a shell, run the bundled server or a gateway.

::

    aichatonline chat "PROMPT"     stream one answer (the prompt from stdin with "-" or a pipe)
    aichatonline chat              an interactive session, when stdin is a terminal
    aichatonline serve             the bundled local server in the foreground
    aichatonline demo [PROMPT]     the whole flow on any machine, with or without internet
    aichatonline gateway           an OpenAI-compatible API in front of the service

``_parser.py`` holds the arguments, ``_commands.py`` the commands that talk to the service
(``_target.py`` where the answers come from, ``_answer.py`` asking once and printing,
``_session.py`` the interactive session), ``_output.py`` what gets printed and the exit
codes (:class:`ExitCode`); the gateway's command lives with the gateway. A failure is one
line on stderr and an exit code that says which kind it was; ``-v`` logs retries, and only
``--debug`` shows tracebacks. An argument a subcommand does not know is reported with that
subcommand's usage (and the option it most likely meant), not the top-level one.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import logging
import os
import sys
from collections.abc import Iterator

from .._config import log_to_stderr
from .._exceptions import AiChatOnlineError
from ._commands import DEMO_PROMPT, PROBE_SECONDS
from ._output import ExitCode, exit_code_for, notice, report
from ._parser import add_common, build_parser

#: The command line's log lines: no time stamps, the logger's name as a prefix.
_CLI_FORMAT = "%(name)s: %(message)s"

__all__ = [
    "DEMO_PROMPT",
    "PROBE_SECONDS",
    "ExitCode",
    "add_common",
    "build_parser",
    "exit_code_for",
    "main",
]


@contextlib.contextmanager
def _logging(verbose: int, debug: bool) -> Iterator[None]:
    """``-v``: the SDK's INFO lines (retries) on stderr; ``-vv`` or ``--debug``: DEBUG too.

    The handler ``AICHATONLINE_LOG`` uses (one at most), in a shorter format for a terminal;
    undone on exit, so that ``main()`` called in a process leaves its logging as it was.
    """
    if not verbose and not debug:
        yield
        return
    undo = log_to_stderr(logging.DEBUG if debug or verbose > 1 else logging.INFO, _CLI_FORMAT)
    try:
        yield
    finally:
        undo()


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, but an unknown argument is the subcommand's usage error.

    argparse reports what no parser took from the top-level parser, whose usage says
    nothing about ``chat``'s options; the subcommand that was chosen says it instead, with
    the option that looks most like the one given (``--lokal``: did you mean ``--local``?).
    """
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        message = f"unrecognized arguments: {' '.join(unknown)}"
        options = [option for action in command._actions for option in action.option_strings]
        for argument in unknown:
            close = difflib.get_close_matches(argument.partition("=")[0], options, n=1)
            if argument.startswith("-") and close:
                message += f" (did you mean {close[0]}?)"
                break
        command.error(message)
    return args


def _tolerant_stdout() -> None:
    # An answer may hold any character; a terminal that cannot show one gets "?" instead of
    # the whole command failing with UnicodeEncodeError.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = _parse(build_parser(), argv)
    except SystemExit as exc:  # argparse: --help and --version (0), usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    _tolerant_stdout()
    with _logging(args.verbose, args.debug):
        try:
            code: ExitCode = args.run(args)
            return int(code)
        except AiChatOnlineError as exc:
            hint = getattr(args, "failure_hint", None)
            return int(report(exc, bool(args.debug), hint))
        except KeyboardInterrupt:
            notice("interrupted")
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
