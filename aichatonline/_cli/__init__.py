"""The ``aichatonline`` command line: chat from a shell, run the bundled server or a gateway.

::

    aichatonline chat "PROMPT"     stream one answer (the prompt from stdin with "-" or a pipe)
    aichatonline chat              an interactive session, when stdin is a terminal
    aichatonline serve             the bundled local server in the foreground
    aichatonline demo [PROMPT]     the whole flow on any machine, with or without internet
    aichatonline gateway           an OpenAI-compatible API in front of the service

``_parser.py`` holds the arguments, ``_chat.py`` the commands that talk to the service,
``_output.py`` what gets printed and the exit codes (:class:`ExitCode`); the gateway's
command lives with the gateway. A failure is one line on stderr and an exit code that says
which kind it was; tracebacks only with ``--debug`` or ``-v``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator

from .._config import redact
from .._exceptions import AiChatOnlineError
from ._chat import DEMO_PROMPT, PROBE_SECONDS
from ._output import ExitCode, exit_code_for, notice, report
from ._parser import add_common, build_parser

__all__ = [
    "DEMO_PROMPT",
    "PROBE_SECONDS",
    "ExitCode",
    "add_common",
    "build_parser",
    "exit_code_for",
    "main",
]


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
            hint = getattr(args, "failure_hint", None)
            return int(report(exc, bool(args.debug or args.verbose), hint))
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
