"""Log lines without raw control characters, whatever a client sends.

A request's path, its headers and the address taken from ``X-Forwarded-For`` reach the
logs (uvicorn's access log, the gateway's warnings). Written raw, an ANSI escape in them
recolours or rewrites an operator's terminal, and a carriage return or line break forges
a line. :class:`EscapeControlCharacters` rewrites each non-printable character of a
record's message and of its string arguments as a Python escape (``\\x1b``, ``\\r``,
``\\u202e``) before any handler formats it; in a traceback only the line breaks between
its lines stay. :func:`install` puts it on the loggers the gateway process writes to and
on their handlers (a handler's filter also sees the records of child loggers).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

__all__ = ["LOGGERS", "EscapeControlCharacters", "escape", "install"]

#: The loggers of a gateway process: the gateway's, the SDK's, uvicorn's and asyncio's.
LOGGERS = (
    "aichatonline",
    "aichatonline.gateway",
    "aichatonline.testing",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "asyncio",
)


def escape(text: str) -> str:
    """``text`` with every non-printable character written as its escape (printable: as is)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _escape_lines(text: str) -> str:
    return "\n".join(escape(line) for line in text.split("\n"))


def _escaped(value: Any) -> Any:
    return escape(value) if isinstance(value, str) else value


class EscapeControlCharacters(logging.Filter):
    """Escape control characters in a record's message, arguments and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):  # a trailing line break (uvicorn's) carries nothing
            record.msg = escape(record.msg.rstrip("\n"))
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_escaped(arg) for arg in args)
        elif isinstance(args, dict):
            record.args = {key: _escaped(value) for key, value in args.items()}
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            formatted = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = _escape_lines(formatted)
        return True


_FILTER = EscapeControlCharacters()


def install() -> None:
    """Escape control characters on :data:`LOGGERS` and their handlers (again: no-op)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, EscapeControlCharacters) for f in target.filters):
                target.addFilter(_FILTER)
