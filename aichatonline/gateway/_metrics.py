"""The gateway's Prometheus metrics (``GET /metrics``), right across worker processes.

Every name starts with ``aichatonline_gateway_``:

=========================================  =========  =======================================
``requests_total``                         counter    answered requests, by ``route`` (the
                                                      route's template, never the raw path),
                                                      ``status`` and ``outcome``
``request_duration_seconds``               histogram  from the request's arrival to its last
                                                      byte, by ``route``
``first_piece_seconds``                    histogram  from a chat request's arrival to the
                                                      service's first piece, by ``stream``
``streams_in_flight``                      gauge      streamed answers in progress
``upstream_retries_total``                 counter    retries the SDK made for chat calls
``client_disconnects_total``               counter    clients gone before their answer ended
=========================================  =========  =======================================

One process: each app has its own registry. Several (``aichatonline gateway --workers N``,
or any server whose environment sets ``PROMETHEUS_MULTIPROC_DIR``): prometheus_client's
multiprocess mode, in which each process writes its values to files in that directory and a
scrape of any worker adds up every worker's files; the in-flight gauge counts live processes
only (``livesum``), so the files of a process that is gone are removed: by the process itself
when it stops, and at each scrape for processes that died without stopping.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["MULTIPROC_ENV", "PREFIX", "Metrics", "metrics_directory"]

PREFIX = "aichatonline_gateway_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db$")


class Metrics:
    """One app's metrics: the objects the gateway records into, and the scrape's text."""

    def __init__(self) -> None:
        directory = os.environ.get(MULTIPROC_ENV)
        #: The multiprocess directory, or None in single-process mode.
        self.directory = directory or None
        # In multiprocess mode the values live in the directory's files, and a registry the
        # scrape also reads would count them twice: the metrics then belong to no registry.
        self.registry = None if self.directory else CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            PREFIX + "requests",
            "Requests answered, by route template, HTTP status and outcome.",
            ["route", "status", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer.",
            ["route"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.first_piece = Histogram(
            PREFIX + "first_piece_seconds",
            "Seconds from a chat request's arrival to the service's first text piece.",
            ["stream"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.streams = Gauge(
            PREFIX + "streams_in_flight",
            "Streamed chat answers in progress.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.retries = Counter(
            PREFIX + "upstream_retries",
            "Retries the SDK made towards the service for chat requests.",
            registry=registry,
        )
        self.disconnects = Counter(
            PREFIX + "client_disconnects",
            "Clients that went away before their answer was complete.",
            registry=registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The scrape: Prometheus text and its content type."""
        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        assert self.directory is not None
        _forget_dead_processes(self.directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def process_stopping(self) -> None:
        """This process stops serving: its in-flight gauge no longer counts."""
        if self.directory is not None:
            mark_process_dead(os.getpid(), self.directory)  # type: ignore[no-untyped-call]


def _forget_dead_processes(directory: str) -> None:
    """Remove the live-gauge files of processes that no longer run (a worker that crashed)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_FILE.search(path)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's: not ours to judge
            continue


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` for worker processes about to start: the one set, or a
    new empty temporary directory, removed afterwards (each run starts from zero)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="aichatonline-gateway-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        try:
            yield directory
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
