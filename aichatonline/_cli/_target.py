"""Where the command line's answers come from: the service, another base URL, or the local server.

A :class:`Target` holds what a blocking :class:`~aichatonline.Client` needs for it (and a
token kept from earlier); :func:`probe` asks the real service for a token within a few
seconds, however the network behaves, for ``demo`` to decide. The bundled server
(:mod:`aichatonline.testing`) is imported only when one is started.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .._config import ProxyURL, parse_proxy, redact, resolve_proxy
from .._core import DEFAULT_TIMEOUT, Timeout
from .._exceptions import AiChatOnlineError, APITimeoutError
from .._sync.client import Client

__all__ = [
    "LOCAL_HINT",
    "PROBE_SECONDS",
    "Probe",
    "Target",
    "client_options",
    "probe",
    "proxy_url",
    "start_local_server",
]

#: The demo's whole probe of the real service (token fetch, DNS included) takes at most this.
PROBE_SECONDS = 3.0
#: Seconds between the pieces of the in-process server's answers, so a person sees it stream.
LOCAL_DELAY = 0.02
#: Said with a connection failure when the answer was to come from the real service.
LOCAL_HINT = "no network? --local chats with the bundled local server instead"


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


def proxy_url(proxy: str | None) -> str | None:
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


def start_local_server(stack: contextlib.ExitStack) -> str:
    """Start the bundled server on an ephemeral loopback port for as long as ``stack`` lives."""
    from ..testing import LocalServer  # only the commands that need it pay for the import

    server = LocalServer(port=0, delay=LOCAL_DELAY, record_requests=False)
    return stack.enter_context(server).base_url


@dataclass
class Probe:
    """What a probe found: a token, or the error that stopped it."""

    token: str | None = None
    error: AiChatOnlineError | None = None


def probe(base_url: str, proxy: str | None, seconds: float) -> Probe:
    """Fetch a token from ``base_url``, giving up after ``seconds`` however the network behaves.

    Socket timeouts do not bound a blocking client's DNS lookup, so the fetch runs in a daemon
    thread that is simply abandoned when the time is up (it cannot keep the process alive).
    """
    result = Probe()

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
