"""The gateway's descriptors: the limit raised, the connection budget sized, ``accept()``
failures reported once a second.

:func:`raise_descriptor_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard one (worker
processes inherit it); :func:`default_max_connections` keeps a reserve out of it for the
upstream connections and the process itself; :func:`install_accept_guard` turns asyncio's
report of a failed ``accept()`` (a traceback for every connection waiting in the backlog,
thousands a second, while descriptors are exhausted) into one line a second: the loop
retries by itself and serves again as soon as connections close. No uvicorn here.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import time
from typing import Any

from ._errors import log

__all__ = [
    "BASE_RESERVE",
    "FALLBACK_MAX_CONNECTIONS",
    "Throttled",
    "default_max_connections",
    "install_accept_guard",
    "raise_descriptor_limit",
]

#: Descriptors kept out of the connection budget for the process itself (listening sockets,
#: the event loop, log files, DNS) on top of one per upstream request.
BASE_RESERVE = 64
#: The budget when the descriptor limit is unknown (no ``resource`` module: Windows).
FALLBACK_MAX_CONNECTIONS = 4096


class Throttled:
    """A warning logged at most once per ``interval`` seconds, counting the ones left out."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last = -math.inf
        self._skipped = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._skipped += 1
            return
        if self._skipped:
            message += f" ({self._skipped} more since the last report)"
        self._last, self._skipped = now, 0
        self._logger.warning(message, *args)


_accept_failed = Throttled(log)
_late_retries = Throttled(log)


def raise_descriptor_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit; the limit now in force
    (0 where there is none to read, as on Windows). Worker processes inherit it."""
    try:
        import resource
    except ImportError:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit (macOS) cannot be the soft one; 2**20 is Linux's usual cap.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return target if soft == resource.RLIM_INFINITY else soft


def default_max_connections(descriptors: int, max_concurrency: int) -> int:
    """The connection budget for a worker with ``descriptors`` descriptors.

    Out of them: :data:`BASE_RESERVE` for the process, then one per chat request it may run
    at once (``max_concurrency``, each with an upstream connection), but at most half of
    what is left; the rest are for clients. 0 descriptors (unknown):
    :data:`FALLBACK_MAX_CONNECTIONS`.
    """
    if descriptors <= 0:
        return FALLBACK_MAX_CONNECTIONS
    spare = descriptors - BASE_RESERVE
    upstream = min(max_concurrency, spare // 2)
    return max(spare - upstream, 1)


_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _late_accept_retry(context: dict[str, Any]) -> bool:
    """A retry asyncio scheduled after a failed ``accept()`` that ran once the listening
    socket was closed (at shutdown): ``_start_serving`` meets descriptor -1."""
    return isinstance(context.get("exception"), ValueError) and "._start_serving(" in str(
        context.get("message", "")
    )


def install_accept_guard(loop: asyncio.AbstractEventLoop) -> None:
    """Report running out of descriptors (or memory) on ``loop`` in one line a second.

    asyncio's accept loop reports each failed ``accept()`` with a traceback, for every
    connection waiting in the backlog (4,096 of them, every second, while descriptors are
    exhausted), and schedules a retry a second later for each; the connections are served
    again as soon as descriptors are free. The retries still pending when the server
    closes fail on the closed socket, each with a traceback of its own: they are counted
    in one line too. Other reports go to the handler that was there before.
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
            _accept_failed.warning(
                "%s: %s; new connections wait until others close",
                context.get("message", "out of resources"),
                exc.strerror or exc,
            )
        elif _late_accept_retry(context):
            _late_retries.warning("accept() retries left over after the listening socket closed")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
