"""The pytest plugin as a user's test suite meets it: fixtures, the marker, the factory.

A user's test file runs under pytest's own ``pytester`` (in this process, with the plugin
loaded from its entry point as in any project), and the durations pytest reports for each
test are held to bounds: with the ``aichatonline_server`` fixture, a test whose client meets
two 503s takes well under 0.2 s (the default back-off alone would wait 1.5 s or more); the
same test on a plain ``LocalServer`` waits, so the bound can fail.
"""

from __future__ import annotations

import time

import pytest

from aichatonline import Client, RetryPolicy, is_testing
from aichatonline.testing import Fault, LocalServer

pytest_plugins = ("pytester",)

#: The user's test file.
USER_TESTS = """
import time

import pytest

import aichatonline
from aichatonline import AsyncClient, Client, RetryPolicy
from aichatonline.testing import Fault, LocalServer


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def test_two_503s(aichatonline_server):
    aichatonline_server.inject(Fault(status=503), Fault(status=503))
    with Client(base_url=aichatonline_server.base_url) as client:  # the default back-off
        assert client.complete("Hi") == aichatonline_server.reply_for("Hi")
    assert len(aichatonline_server.chat_requests) == 3


def test_two_503s_without_the_fixture():
    policy = RetryPolicy(initial_backoff=0.15, jitter=0)  # waits 0.15 s, then 0.3 s
    with LocalServer() as server, Client(base_url=server.base_url, retry_policy=policy) as c:
        server.inject(Fault(status=503), Fault(status=503))
        assert c.complete("Hi") == server.reply_for("Hi")


@pytest.mark.aichatonline_server(pieces=3, delay=0.01)
def test_the_marker_sets_the_options(aichatonline_server):
    assert (aichatonline_server.pieces, aichatonline_server.delay) == (3, 0.01)
    with Client(base_url=aichatonline_server.base_url) as client:
        pieces = list(client.stream("Hi"))
    assert pieces == aichatonline_server.pieces_for("Hi")
    assert len(pieces) == 3


@pytest.mark.aichatonline_server(peices=3)
def test_a_misspelt_option_is_named(aichatonline_server):
    pass


def test_the_factory_starts_servers_with_their_options(aichatonline_server_factory):
    one = aichatonline_server_factory(pieces=1)
    two = aichatonline_server_factory(pieces=2, require_token=False)
    assert one.base_url != two.base_url
    with Client(base_url=two.base_url) as client:
        two.inject(Fault(status=503))
        assert len(list(client.stream("Hi"))) == 2
    assert aichatonline.is_testing()


@pytest.mark.anyio
@pytest.mark.aichatonline_server(pieces=2)
async def test_async_two_503s(aichatonline_server):
    aichatonline_server.inject(Fault(status=503), Fault(status=503))
    async with AsyncClient(base_url=aichatonline_server.base_url) as client:
        async with client.stream("Hi") as stream:
            pieces = [piece async for piece in stream]
    assert pieces == aichatonline_server.pieces_for("Hi")
    assert stream.retries == 2


def test_back_off_can_be_turned_on_again(aichatonline_server):
    aichatonline_server.inject(Fault(status=503))
    policy = RetryPolicy(initial_backoff=0.2, jitter=0)
    started = time.monotonic()
    with aichatonline.set_testing(False), Client(
        base_url=aichatonline_server.base_url, retry_policy=policy
    ) as client:
        client.complete("Hi")
    assert time.monotonic() - started >= 0.2
"""


@pytest.fixture
def outcome(pytester: pytest.Pytester) -> dict[str, tuple[str, float, str]]:
    """Each user test: (outcome, seconds of setup + call + teardown, the failure's text)."""
    pytester.makepyfile(test_user=USER_TESTS)
    run = pytester.inline_run("-p", "no:cacheprovider", "--strict-markers")
    results: dict[str, tuple[str, float, str]] = {}
    for report in run.getreports("pytest_runtest_logreport"):
        name = report.nodeid.split("::")[1]
        state, seconds, text = results.get(name, ("passed", 0.0, ""))
        if report.failed:
            state, text = "failed", str(report.longrepr)
        results[name] = (state, seconds + report.duration, text)
    return results


def test_the_users_tests_pass_and_fast(outcome: dict[str, tuple[str, float, str]]) -> None:
    failed = {name: text for name, (state, _, text) in outcome.items() if state != "passed"}
    assert set(failed) == {"test_a_misspelt_option_is_named"}
    assert "takes the server's options by name" in failed["test_a_misspelt_option_is_named"]
    assert "got peices" in failed["test_a_misspelt_option_is_named"]
    assert not is_testing()  # every fixture put the switch back

    # Two 503s with the fixture, setup and teardown included: the bound of 0.2 s,
    # with room for a slow machine; far from the waits of the default policy (>= 0.45 s).
    assert outcome["test_two_503s"][1] < 0.3, outcome["test_two_503s"]
    for backend in ("asyncio", "trio"):
        assert outcome[f"test_async_two_503s[{backend}]"][1] < 0.3
    assert outcome["test_two_503s_without_the_fixture"][1] >= 0.45  # the bound can fail


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.aichatonline_server(**options): *"])


def test_this_suites_own_use_of_the_fixture(aichatonline_server: LocalServer) -> None:
    aichatonline_server.inject(Fault(status=503), Fault(status=503))
    started = time.monotonic()
    with Client(base_url=aichatonline_server.base_url) as client:
        assert client.complete("Hi") == aichatonline_server.reply_for("Hi")
    assert time.monotonic() - started < 0.2
    assert is_testing()
    assert RetryPolicy().max_retries == 2  # the default policy, not a faster one
