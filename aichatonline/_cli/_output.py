"""What the command line prints: exit codes, one-line errors, answers as text or JSON lines.

Answers go to stdout; notices, logs and errors to stderr, so the output pipes cleanly. A
failure is one line on stderr and an exit code that says which kind it was.
"""

from __future__ import annotations

import enum
import json
import sys
import traceback
from typing import Any

from .._config import redact
from .._exceptions import (
    AiChatOnlineError,
    APIConnectionError,
    AuthenticationError,
    BlockedError,
    InvalidRequestError,
    RateLimitError,
    StreamInterrupted,
)

__all__ = [
    "EXIT_MEANINGS",
    "PROG",
    "ExitCode",
    "Output",
    "error_record",
    "exit_code_for",
    "notice",
    "one_line",
    "report",
]

PROG = "aichatonline"


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


EXIT_MEANINGS: dict[ExitCode, str] = {
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


def notice(text: str) -> None:
    """One line for the person at the terminal, on stderr (never mixed into the answer)."""
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    """``text`` on one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def report(exc: AiChatOnlineError, show_traceback: bool, hint: str | None = None) -> ExitCode:
    """Print ``exc`` as one line on stderr (after its traceback, if asked); its exit code.

    ``hint`` is added to a connection failure (where to go from there). The SDK keeps
    tokens and credentials out of its messages; ``redact`` is a second guard.
    """
    if show_traceback:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    line = f"{type(exc).__name__}: {redact(one_line(str(exc)))}"
    cause = exc.__cause__ if isinstance(exc, StreamInterrupted) else exc
    if hint and isinstance(cause, APIConnectionError):
        line = f"{line} ({hint})"
    notice(line)
    return exit_code_for(exc)


def error_record(exc: BaseException, partial: str | None = None) -> dict[str, Any]:
    """The ``{"type": "error", ...}`` JSON line that ends ``--json`` output on a failure."""
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted by Ctrl-C"
    else:
        message = redact(one_line(str(exc)))
    record: dict[str, Any] = {
        "type": "error",
        "error": type(exc).__name__,
        "message": message,
        "exit_code": int(exit_code_for(exc)),
    }
    if isinstance(exc, StreamInterrupted):
        record["partial"] = exc.partial
    elif partial:
        record["partial"] = partial
    return record


class Output:
    """Writes an answer to stdout as text or JSON lines, flushing every piece.

    ``at_line_start`` tracks whether the cursor is at the start of a line, so that what
    follows an answer (the next prompt, an error on stderr) starts on a line of its own;
    ``delivered`` is the text written so far.
    """

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.at_line_start = True
        self.delivered: list[str] = []

    def piece(self, piece: str) -> None:
        """One piece of the answer."""
        self.delivered.append(piece)
        if self.as_json:
            self.record({"type": "piece", "text": piece})
        else:
            self.text(piece)

    def text(self, text: str) -> None:
        """Text as it is."""
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        """Make sure what follows starts on a line of its own."""
        if not self.at_line_start:
            self.text("\n")

    def record(self, obj: dict[str, Any]) -> None:
        """One JSON line."""
        # ASCII-escaped JSON: parses the same and survives any stdout encoding.
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
