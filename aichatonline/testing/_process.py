"""The local server as a process of its own: in the foreground, or as a child process.

``run_server`` is what ``python -m aichatonline.testing`` and ``aichatonline serve`` run: it
serves until SIGINT/SIGTERM and returns cleanly. ``spawn_server`` starts ``python -m
aichatonline.testing`` as a child process, with the same options on its command line
(``ServerOptions.to_argv``), and returns a ``SpawnedServer`` handle once the child prints its
base URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._options import ServerOptions, resolve_options
from ._server import LocalServer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import ServerOptionFields

__all__ = ["SpawnedServer", "run_server", "spawn_server"]


class _StopSignal(BaseException):
    """Raised by run_server's signal handler to unwind the wait, like KeyboardInterrupt."""


def run_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    options: ServerOptions | None = None,
    on_ready: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
    **changes: Unpack[ServerOptionFields],
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (or ``stop_event``), then return cleanly.

    The server answers as ``options`` with ``changes`` applied (``run_server(pieces=3)``).
    ``on_ready`` is called with the base URL once the server listens. Signal handlers are
    installed only when called from the main thread; elsewhere pass ``stop_event``. Requests
    are not recorded (a long-running server must not grow), whatever ``record_requests``
    says, but are logged at INFO level on the ``aichatonline.testing`` logger. A Ctrl-C
    that comes before the signal handlers are installed stops it just as cleanly.
    """
    resolved = resolve_options(options, changes)
    with contextlib.suppress(KeyboardInterrupt):
        _serve(host, port, resolved, on_ready, stop_event)


def _serve(
    host: str,
    port: int,
    options: ServerOptions,
    on_ready: Callable[[str], None] | None,
    stop_event: threading.Event | None,
) -> None:
    server = LocalServer(host, port, options=dataclasses.replace(options, record_requests=False))
    stop = stop_event if stop_event is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}
    signals = [signal.SIGINT, signal.SIGTERM]

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        for sig in signals:  # a second signal during shutdown must not interrupt it
            signal.signal(sig, signal.SIG_IGN)
        raise _StopSignal

    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        server.start()
        if on_ready is not None:
            on_ready(server.base_url)
        stop.wait()
    except _StopSignal:
        pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class SpawnedServer:
    """A local server running in a child process (see ``spawn_server``)."""

    def __init__(self, process: subprocess.Popen[str], base_url: str) -> None:
        self.process = process
        """The child process."""
        self.base_url = base_url
        """``http://HOST:PORT`` of the child's server."""

    def stop(self, timeout: float = 10.0) -> int:
        """Send SIGTERM, wait for the child to exit (kill it after ``timeout``); return its code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> SpawnedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SpawnedServer {self.base_url} pid={self.process.pid}>"


def spawn_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    options: ServerOptions | None = None,
    verbose: bool = False,
    timeout: float = 30.0,
    **changes: Unpack[ServerOptionFields],
) -> SpawnedServer:
    """Run ``python -m aichatonline.testing`` as a child process and return its handle.

    The child answers as ``options`` with ``changes`` applied (``spawn_server(pieces=3)``);
    like ``run_server`` it does not record requests. Blocks until the child prints its base
    URL. From async code, call it through ``anyio.to_thread.run_sync``.
    """
    resolved = resolve_options(options, changes)
    argv = [sys.executable, "-m", "aichatonline.testing", "--host", host, "--port", str(port)]
    argv += resolved.to_argv()
    if verbose:
        argv.append("-v")
    # Make the package importable in the child even when it is not installed.
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = _readline_with_timeout(process.stdout, timeout)
    if not line.startswith("http"):
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(f"the server process did not start (first output: {line!r})")
    return SpawnedServer(process, line.strip())


def _readline_with_timeout(stream: IO[str], timeout: float) -> str:
    # A helper thread keeps this portable: select() does not work on pipes on Windows.
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""
