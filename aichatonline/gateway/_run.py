"""Running the gateway on uvicorn: one worker in this process, or N worker processes.

One worker: the app is made here and served by a ``uvicorn.Server`` whose startup, once its
socket listens, calls ``on_ready(host, port)``. N workers: the socket is bound and listening
here (so ``--port 0`` is known, and connections queue until a worker takes them), the
settings go to the workers in the environment (``GatewaySettings.to_env``; the API key in
its own variable), and uvicorn's process supervisor runs ``app_from_env`` in each worker.
Each worker has its own SDK client; nothing is shared between them, so more processes or
more machines behind a load balancer serve more clients.

Every worker logs with the same configuration (``_logs.log_config``) and drains on
SIGTERM/SIGINT (``_worker.py``); the command gives the workers one metrics directory
(``PROMETHEUS_MULTIPROC_DIR``, ``_metrics.metrics_directory``). The supervisor closes its
own copy of the listening socket when told to stop, so once the last worker has drained
the port refuses connections at once instead of queueing them for nobody.

Connections (``_connections.py``): the descriptor limit is raised to its hard limit before
anything starts (the workers inherit it), each worker serves with the guarded protocol
class, its deadlines and its budget (:class:`GatewayConfig` carries them to the workers),
reports a failing ``accept()`` once a second, and escapes control characters in its logs.
Forwarded headers are believed only from ``forwarded_allow_ips`` (uvicorn's default
trusts loopback), and WebSocket upgrades are off (the gateway has no WebSocket route).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from . import _log_escape
from ._app import check_settings, create_app
from ._connections import ConnectionLimits, guarded_protocol
from ._descriptors import default_max_connections, install_accept_guard, raise_descriptor_limit
from ._logs import log_config
from ._memory import steady_allocator
from ._settings import API_KEY_ENV, SETTINGS_ENV, GatewaySettings

__all__ = ["GatewayConfig", "serve"]

OnReady = Callable[[str, int], None]
#: Seconds uvicorn waits for connections after the drain (``_worker.py``) ended them.
GRACEFUL_SECONDS = 5
_BACKLOG = 4096


class GatewayConfig(uvicorn.Config):
    """uvicorn's config with the connection limits, for the guarded protocol to read."""

    def __init__(self, app: Any, *, connection_limits: ConnectionLimits, **options: Any) -> None:
        self.connection_limits = connection_limits
        super().__init__(app, http=guarded_protocol(), ws="none", **options)


class _Server(uvicorn.Server):
    """A uvicorn server that says when it listens (and on which port, for ``--port 0``)."""

    def __init__(self, config: uvicorn.Config, on_ready: OnReady | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        _log_escape.install()  # after uvicorn configured its loggers (in each worker too)
        steady_allocator()  # in each worker process too
        install_accept_guard(asyncio.get_running_loop())
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            port = self.servers[0].sockets[0].getsockname()[1]
            self._on_ready(self.config.host, port)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn raises the signals it caught again once it stopped (the default action:
        # death by SIGTERM); the drain handled them, and the command exits 0.
        with super().capture_signals():
            try:
                yield
            finally:
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, closing its copy of the listening socket when told to stop."""

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def _stop_listening(self) -> None:
        for sock in self.sockets:
            sock.close()


def serve(
    settings: GatewaySettings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    verbose: int = 0,
    debug: bool = False,
    on_ready: OnReady | None = None,
    loop: str = "auto",
) -> bool:
    """Serve until SIGINT/SIGTERM and the drain; False if the server could not start.

    ``loop`` is uvicorn's (``auto``: uvloop when it is installed, else asyncio).
    """
    descriptors = raise_descriptor_limit()
    limits = ConnectionLimits(
        header_timeout=settings.header_timeout,
        keep_alive_timeout=settings.keep_alive_timeout,
        max_connections=settings.max_connections
        or default_max_connections(descriptors, settings.max_concurrency),
    )
    options: dict[str, Any] = {
        "connection_limits": limits,
        "loop": loop,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": list(settings.forwarded_allow_ips),
        "host": host,
        "port": port,
        "log_config": log_config(settings.log_format, verbose, debug),
        "access_log": False,  # the gateway's own access lines replace uvicorn's
        "backlog": _BACKLOG,
        "timeout_graceful_shutdown": GRACEFUL_SECONDS,
        "lifespan": "on",
    }
    if workers == 1:
        app = create_app(settings=settings)
        app.state.gateway.handle_signals = True
        server = _Server(GatewayConfig(app, **options), on_ready)
        try:
            server.run()
        except SystemExit:  # uvicorn's exit on a startup failure (it logged why)
            return False
        return server.started
    check_settings(settings)  # bad settings fail here, before any worker starts
    os.environ[SETTINGS_ENV] = settings.to_env()
    if settings.api_key is not None:
        os.environ[API_KEY_ENV] = settings.api_key
    config = GatewayConfig(
        "aichatonline.gateway._app:app_from_env", factory=True, workers=workers, **options
    )
    try:
        sock = config.bind_socket()
    except SystemExit:
        return False
    sock.listen(_BACKLOG)  # connections wait in the backlog until a worker accepts them
    if on_ready is not None:
        on_ready(host, sock.getsockname()[1])
    supervisor: Any = _Supervisor  # its signature changed over uvicorn's versions
    if "target" in inspect.signature(supervisor).parameters:
        supervisor(config, target=_Server(config, None).run, sockets=[sock]).run()
    else:
        supervisor(config, sockets=[sock]).run()
    return True
