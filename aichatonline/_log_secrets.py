"""Keeping the SDK's secrets out of httpx's and httpcore's own log lines.

httpcore logs what it does at debug level, with its arguments and errors: a SOCKS proxy's
username and password as given, an error that quotes what a server echoed back (a token in
broken chunk framing, say). The SDK promises that a token or a proxy's credentials never
reach a log line, so it puts a filter on those libraries' loggers that masks the secrets of
every live client (``redact``). It costs nothing while their debug logging is off: Python
checks a logger's level before it runs any filter.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Protocol

from ._core.redact import redact

__all__ = ["watch"]

# The loggers below the SDK (httpx2 and httpcore2 too: an httpx2 client is accepted).
_PREFIXES = ("httpx", "httpcore")


class _HasSecrets(Protocol):
    def _secrets_for_logs(self) -> tuple[str, ...]: ...


_holders: weakref.WeakSet[_HasSecrets] = weakref.WeakSet()
_lock = threading.Lock()


class _MaskSecrets(logging.Filter):
    """Masks the secrets of every live client in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            holders = list(_holders)
        secrets = [secret for holder in holders for secret in holder._secrets_for_logs()]
        if secrets:
            message = record.getMessage()
            masked = redact(message, *secrets)
            if masked != message:
                record.msg, record.args = masked, None
        return True


_FILTER = _MaskSecrets()


def watch(holder: _HasSecrets) -> None:
    """Mask ``holder``'s secrets in the HTTP libraries' log lines while it lives."""
    with _lock:
        _holders.add(holder)
    # The libraries' loggers are made when they are imported; a client has made its httpx
    # client (and its transports) by now, so they exist. Adding the filter again is a no-op.
    for name in list(logging.root.manager.loggerDict):
        if name.partition(".")[0].rstrip("2") in _PREFIXES:
            logging.getLogger(name).addFilter(_FILTER)
