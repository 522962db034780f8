"""Review fix: ``CookieJar.header()`` while another thread's ``update()`` adds cookies.

A blocking ``Client`` may be shared by threads: one call's response sets cookies while
another call builds its request. Iterating the live dict then raised ``RuntimeError:
dictionary changed size during iteration``; the header is now built from a copy.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import pytest

from aichatonline._core import CookieJar


@pytest.fixture
def switch_often() -> Iterator[None]:
    """Threads switch every microsecond, so a race shows within the test's time."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("switch_often")
def test_header_while_another_thread_adds_cookies() -> None:
    jar = CookieJar()
    jar.update(f"c{i}=v{i}" for i in range(200))
    stop = threading.Event()

    def grow() -> None:
        n = 200
        while not stop.is_set():
            jar.update([f"c{n}=v{n}", f"c{n - 150}=; Max-Age=0"])  # one in, one out
            n += 1

    grower = threading.Thread(target=grow, daemon=True)
    grower.start()
    headers = 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            header = jar.header()
            assert header is not None
            assert all("=" in pair for pair in header.split("; "))
            headers += 1
    finally:
        stop.set()
        grower.join(5)
    assert headers > 0


def test_header_is_unchanged_for_a_quiet_jar() -> None:
    jar = CookieJar()
    assert jar.header() is None
    jar.update(["a=1; Path=/", "b=2", "a=3"])
    assert jar.header() == "a=3; b=2"
