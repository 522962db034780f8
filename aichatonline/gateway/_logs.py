"""Logging for ``aichatonline gateway``: one configuration, applied in every worker process.

:func:`log_config` is a ``logging.config.dictConfig`` dictionary given to uvicorn as its
``log_config``, which uvicorn applies in the serving process and again in each worker it
spawns (so ``--workers N`` keeps ``-v``). On stderr:

- ``aichatonline.gateway.access``: the access lines, at INFO, always (their text is made by
  the app: ``key=value`` pairs or a JSON object, ``log_format``);
- ``aichatonline`` (the SDK's retry lines with ``-v``, its debug detail with ``-vv`` or
  ``--debug``; the gateway's warnings always) and uvicorn's own messages: a time, the level,
  the logger and the message, or with ``log_format="json"`` one JSON object per line;
- uvicorn's own access log is off: the gateway's replaces it;
- ``asyncio``'s warnings go through the same handler (a line of the log's format, not a bare
  one from Python's last-resort handler), except "socket.send() raised exception.", which
  the event loop writes for each write to a connection whose client has already gone (the
  gateway sees the disconnect at its next wait): hundreds of lines when clients leave a
  fast stream, and nothing an operator can act on.

Every line passes through :func:`~aichatonline._core.redact` (URL credentials masked), a
second guard behind the SDK's own.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .._core import redact

__all__ = ["ClientGoneWrites", "JsonFormatter", "TextFormatter", "log_config", "utc_time"]


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z WARNING aichatonline.gateway: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message`` (and
    ``exception`` with a traceback). An access record is its own fields, ``level`` added."""

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            return json.dumps({**access, "level": record.levelname}, separators=(",", ":"))
        data: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, separators=(",", ":"))


class ClientGoneWrites(logging.Filter):
    """Drops the event loop's warning about writes to a connection already lost."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "socket.send() raised exception."


def log_config(log_format: str, verbose: int = 0, debug: bool = False) -> dict[str, Any]:
    """The ``dictConfig`` dictionary for these options (see the module docstring)."""
    sdk_level = "DEBUG" if debug or verbose > 1 else "INFO" if verbose else "WARNING"
    server_level = "INFO" if verbose or debug else "WARNING"
    formatter = "json" if log_format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"()": f"{__name__}.TextFormatter"},
            "json": {"()": f"{__name__}.JsonFormatter"},
            "access": {"format": "%(message)s"},
        },
        "filters": {"client_gone_writes": {"()": f"{__name__}.ClientGoneWrites"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "access",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "aichatonline": {"handlers": ["default"], "level": sdk_level, "propagate": False},
            # The gateway's own warnings (an upstream failure) whatever -v says.
            "aichatonline.gateway": {"level": min(sdk_level, "WARNING", key=_level_number)},
            "aichatonline.gateway.access": {
                "handlers": ["access"],
                "level": "INFO",
                "propagate": False,
            },
            "uvicorn": {"handlers": ["default"], "level": server_level, "propagate": False},
            "uvicorn.error": {"level": server_level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "asyncio": {
                "handlers": ["default"],
                "level": "WARNING",
                "propagate": False,
                "filters": ["client_gone_writes"],
            },
        },
    }


def _level_number(name: str) -> int:
    return logging.getLevelName(name)  # type: ignore[no-any-return]


def utc_time(created: float) -> str:
    """``created`` (``time.time()``) as ISO 8601 in UTC, to the millisecond."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"
