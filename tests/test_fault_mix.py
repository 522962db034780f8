"""``FaultMix``: faults at fixed rates, dealt once per conversation by the local server.

The mix itself (checks, text form, the seeded draw and its rates) is tested as data; the
server's dealing over real loopback with plain httpx (each kind on a conversation's first
request, never on its second; a request refused for its token does not use the fault up;
explicit faults first; the bounded memory); then the SDK's clients, sync and async on both
backends, against a mix of every kind: every stream exact, every fault dealt as predicted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aichatonline import AsyncClient, Client, Timeout
from aichatonline.testing import (
    CHAT_PATH,
    TOKEN_PATH,
    Fault,
    FaultMix,
    LocalServer,
    ServerOptions,
    reply_for,
    spawn_server,
)
from aichatonline.testing._mix import KINDS, MixMemory
from tests.helpers import arun_stream, fast, run_stream

pytestmark = pytest.mark.usefixtures("isolated")

EVERY_KIND = FaultMix(
    drop=0.15,
    rate_limit=0.15,
    unavailable=0.15,
    expire_token=0.15,
    malformed=0.15,
    stall=0.15,
    stall_seconds=0.6,
    seed=11,
)
#: Read limit of the clients against EVERY_KIND: shorter than its stalls.
READ = Timeout(10.0, read=0.25)


def only(kind: str, **extra: float) -> FaultMix:
    """A mix that gives every conversation a fault of ``kind``."""
    return FaultMix(**{kind: 1.0}, **extra)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the mix as data


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drop": -0.1}, "drop must be from 0 to 1"),
        ({"stall": 1.5}, "stall must be from 0 to 1"),
        ({"drop": True}, "drop must be a number"),
        ({"malformed": "1%"}, "malformed must be a number"),
        ({"drop": 0.6, "stall": 0.5}, "add up to more than 1"),
        ({"stall_seconds": 0}, "stall_seconds must be > 0"),
        ({"stall_seconds": float("inf")}, "stall_seconds must be > 0"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_bad_mixes_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultMix(**options)  # type: ignore[arg-type]


def test_text_form() -> None:
    mix = FaultMix.parse("drop=1%; rate-limit=0.005, stall=0.1%, stall_seconds=3, seed=7")
    assert mix == FaultMix(drop=0.01, rate_limit=0.005, stall=0.001, stall_seconds=3, seed=7)
    assert FaultMix.parse(str(mix)) == mix
    assert FaultMix.parse("") == FaultMix()
    for bad, message in [
        ("drop", "expected name=value"),
        ("drop=", "expected name=value"),
        ("dorp=1%", "the names are"),
        ("drop=lots", "not a number"),
        ("seed=1.5", "not a number"),
        ("drop=200%", "drop must be from 0 to 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            FaultMix.parse(bad)


@given(
    st.lists(st.floats(0, 1 / len(KINDS)), min_size=len(KINDS), max_size=len(KINDS)),
    st.floats(0.001, 1e6),
    st.integers(-(2**63), 2**63),
)
def test_text_form_round_trips(rates: list[float], stall_seconds: float, seed: int) -> None:
    mix = FaultMix(**dict(zip(KINDS, rates, strict=True)), stall_seconds=stall_seconds, seed=seed)
    assert FaultMix.parse(str(mix)) == mix


def test_the_draw_is_seeded_and_keeps_its_rates() -> None:
    mix = FaultMix(drop=0.1, rate_limit=0.05, expire_token=0.02, stall=0.2, seed=3)
    ids = [f"conv{i:07d}" for i in range(40_000)]
    kinds = [mix.kind_for(conversation_id) for conversation_id in ids]
    assert kinds == [mix.kind_for(conversation_id) for conversation_id in ids]  # the same again
    counts = Counter(kinds)
    for kind in KINDS:
        rate = getattr(mix, kind)
        expected = rate * len(ids)
        spread = 5 * (len(ids) * rate * (1 - rate)) ** 0.5  # five standard deviations
        assert abs(counts[kind] - expected) <= spread, (kind, counts[kind], expected)
    other = [FaultMix(drop=0.1, rate_limit=0.05, seed=4).kind_for(i) for i in ids[:2000]]
    assert other != kinds[:2000]  # another seed deals to other conversations


@given(st.text(min_size=1, max_size=20), st.integers(0, 500))
def test_a_drop_or_stall_comes_mid_stream(conversation_id: str, lines: int) -> None:
    drop = only("drop").fault_for(conversation_id, lines)
    stall = only("stall", stall_seconds=2).fault_for(conversation_id, lines)
    assert drop.drop_after == stall.stall_after
    assert stall.stall == 2
    if lines >= 2:
        assert drop.drop_after is not None
        assert 1 <= drop.drop_after < lines
    else:
        assert drop.drop_after == lines


def test_each_kind_is_the_fault_it_names() -> None:
    assert only("rate_limit").fault_for("x", 9).status == 429
    assert only("rate_limit").fault_for("x", 9).retry_after == "0"
    assert only("unavailable").fault_for("x", 9).status == 503
    assert only("unavailable").fault_for("x", 9).retry_after is None
    assert only("expire_token").fault_for("x", 9).expire_token
    assert only("malformed").fault_for("x", 9).malformed
    assert FaultMix().fault_for("x", 9) == FaultMix().fault_for("y", 1)  # no fault at all


def test_the_memory_is_bounded() -> None:
    memory = MixMemory(capacity=2)
    mix = only("unavailable")
    assert memory.deal(mix, "a", 5).status == 503
    assert memory.deal(mix, "a", 5).status is None  # seen: no fault
    memory.deal(mix, "b", 5)
    memory.deal(mix, "c", 5)  # "a" is forgotten
    assert memory.deal(mix, "a", 5).status == 503
    assert memory.dealt() == {**dict.fromkeys(KINDS, 0), "unavailable": 4}
    memory.clear()
    assert memory.dealt()["unavailable"] == 0


def test_options_carry_the_mix() -> None:
    mix = FaultMix(drop=0.01, stall=0.001, stall_seconds=3, seed=9)
    options = ServerOptions(fault_mix=mix)
    assert options.to_argv() == ["--fault-mix", str(mix)]
    with pytest.raises(ValueError, match="fault_mix must be None or a FaultMix"):
        ServerOptions(fault_mix="drop=1%")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


def token_of(http: httpx.Client, server: LocalServer | str) -> str:
    base = server if isinstance(server, str) else server.base_url
    answer = http.get(base + TOKEN_PATH, params={"canvas": "-abcdefghij"})
    return str(answer.json()["data"])


def post(
    http: httpx.Client, base: str, token: str, conversation_id: str, prompt: str = "Hi"
) -> tuple[int, dict[str, str], bytes, Exception | None]:
    """One chat request read to its end: status, headers, the body received, the error."""
    body = b""
    try:
        with http.stream(
            "POST",
            base + CHAT_PATH,
            json={"conversationId": conversation_id, "prompt": prompt},
            headers={"UniqueId": token},
        ) as response:
            for part in response.iter_raw():
                body += part
    except httpx.HTTPError as exc:
        return response.status_code, dict(response.headers), body, exc
    return response.status_code, dict(response.headers), body, None


def texts(body: bytes) -> tuple[str, int]:
    """The text of an NDJSON body and how many of its lines are not text lines."""
    text, other = "", 0
    for line in body.decode().splitlines():
        try:
            item = json.loads(line)
            text += item["data"]["message"]
        except (ValueError, KeyError, TypeError):
            other += 1
    return text, other


def test_each_kind_once_per_conversation(http: httpx.Client) -> None:
    prompt = "a prompt long enough for an answer of many pieces"
    with LocalServer(record_requests=False) as server:
        for kind in KINDS:
            server.fault_mix = only(kind, stall_seconds=0.5)
            token = token_of(http, server)
            started = time.monotonic()
            status, headers, body, error = post(http, server.base_url, token, kind, prompt)
            took = time.monotonic() - started
            text, other = texts(body)
            if kind == "drop":
                assert status == 200
                assert isinstance(error, httpx.RemoteProtocolError)
                assert text
                assert reply_for(prompt).startswith(text)
                assert text != reply_for(prompt)
            elif kind in ("rate_limit", "unavailable"):
                assert status == (429 if kind == "rate_limit" else 503)
                assert headers.get("retry-after") == ("0" if kind == "rate_limit" else None)
            elif kind == "expire_token":
                assert status == 401
                # Revoked for everyone who shares it: another conversation is refused too.
                assert post(http, server.base_url, token, "another")[0] == 401
                token = token_of(http, server)
            else:
                assert (status, error, text) == (200, None, reply_for(prompt))
                assert (other > 0) == (kind == "malformed")
                assert (took >= 0.5) == (kind == "stall")
            # The same conversation again: no fault at all.
            status, _, body, error = post(http, server.base_url, token, kind, prompt)
            assert (status, error, texts(body)) == (200, None, (reply_for(prompt), 0))
            assert server.mixed_faults[kind] == 1


def test_a_request_refused_for_its_token_keeps_the_fault(http: httpx.Client) -> None:
    with LocalServer(fault_mix=only("unavailable"), record_requests=False) as server:
        assert post(http, server.base_url, "not-a-token", "c1")[0] == 401
        assert server.mixed_faults["unavailable"] == 0
        token = token_of(http, server)
        assert post(http, server.base_url, token, "c1")[0] == 503
        assert post(http, server.base_url, token, "c1")[0] == 200


def test_explicit_faults_come_first(http: httpx.Client) -> None:
    with LocalServer(fault_mix=only("unavailable"), record_requests=False) as server:
        token = token_of(http, server)
        server.inject(Fault(status=429, retry_after="0"))
        assert post(http, server.base_url, token, "c1")[0] == 429  # the injected fault
        assert post(http, server.base_url, token, "c1")[0] == 503  # then the mix's
        assert post(http, server.base_url, token, "c1")[0] == 200
        server.reset()  # forgets the conversations seen
        assert post(http, server.base_url, token, "c1")[0] == 503


def test_a_spawned_server_deals_from_its_flag(http: httpx.Client) -> None:
    with spawn_server(fault_mix=only("rate_limit", seed=5)) as child:
        token = token_of(http, child.base_url)
        assert post(http, child.base_url, token, "c1")[0] == 429
        assert post(http, child.base_url, token, "c1")[0] == 200


# --------------------------------------------------------------------------- the clients


def conversations(count: int) -> list[str]:
    return [f"soak{i:06d}" for i in range(count)]


def predicted(ids: list[str]) -> dict[str, int]:
    dealt = Counter(EVERY_KIND.kind_for(conversation_id) for conversation_id in ids)
    return {kind: dealt[kind] for kind in KINDS}


def check(ids: list[str], results: list[tuple[list[str], object, Exception | None]]) -> None:
    for conversation_id, (pieces, stream, error) in zip(ids, results, strict=True):
        prompt = f"prompt of {conversation_id}"
        assert error is None, (conversation_id, EVERY_KIND.kind_for(conversation_id), error)
        assert "".join(pieces) == reply_for(prompt)
        kind = EVERY_KIND.kind_for(conversation_id)
        if kind == "malformed":
            assert stream.anomalies > 0  # type: ignore[attr-defined]
        elif kind in ("drop", "rate_limit", "unavailable", "stall"):
            assert stream.retries >= 1  # type: ignore[attr-defined]


def test_the_blocking_client_meets_every_kind() -> None:
    ids = conversations(40)
    with LocalServer(fault_mix=EVERY_KIND, record_requests=False) as server:
        assert sum(predicted(ids)[kind] > 0 for kind in KINDS) == len(KINDS)
        with Client(base_url=server.base_url, timeout=READ, retry_policy=fast(3)) as client:
            results = [
                run_stream(client, f"prompt of {conversation_id}", conversation_id=conversation_id)
                for conversation_id in ids
            ]
        check(ids, results)
        assert server.mixed_faults == predicted(ids)


@pytest.mark.anyio
async def test_the_async_client_meets_every_kind() -> None:
    ids = conversations(40)
    async with LocalServer(fault_mix=EVERY_KIND, record_requests=False) as server:
        async with AsyncClient(
            base_url=server.base_url, timeout=READ, retry_policy=fast(3)
        ) as client:
            results = [
                await arun_stream(
                    client, f"prompt of {conversation_id}", conversation_id=conversation_id
                )
                for conversation_id in ids
            ]
        check(ids, results)
        assert server.mixed_faults == predicted(ids)
