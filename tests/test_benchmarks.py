"""The benchmark harness measures what it says: line shapes, the new stacks, the targets.

``python -m benchmarks --quick`` (in CI) proves that every scenario runs; these tests pin
what a smoke run cannot see: that every line shape the bench server writes is the JSON it
claims to be, with the same texts; that a refused setting is refused whole; that the SDK
(blocking, asyncio, trio, and on ``DefaultAioHttpClient``) reads every shape to the last
piece through the worker's own measuring code; and that every target names rows that the
scenarios really build (a target naming no row would read "n/a" forever, unnoticed).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.answers import BLOCK_LINES, PIECE_BYTES, SHAPES, ndjson_line, piece_text
from benchmarks.rows import build_rows, shape_key
from benchmarks.scenarios import FULL, QUICK, Row, run_worker
from benchmarks.server import CHAT_PATH, ServerProcess
from benchmarks.targets import Target, evaluate, targets

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def bench_server() -> Iterator[str]:
    """The bench server in its own process, for the module; its base URL."""
    with ServerProcess() as server:
        yield server.base_url


def _control(base_url: str, query: str) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", f"/_bench/config?{query}")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _chat_lines(base_url: str) -> list[bytes]:
    """The raw lines of one answer, read with httpx (chunks undone, nothing else)."""
    headers = {"UniqueId": "test", "Content-Type": "application/json"}
    with httpx.stream("POST", base_url + CHAT_PATH, headers=headers, content=b"{}") as reply:
        assert reply.status_code == 200
        body = reply.read()
    assert body.endswith(b"\n")
    return body.split(b"\n")[:-1]


# -- the line shapes -------------------------------------------------------------------


@given(text=st.text(), shape=st.sampled_from(sorted(SHAPES)))
def test_every_shape_is_one_json_line_holding_the_text(text: str, shape: str) -> None:
    line = ndjson_line(text, shape)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # one line, whatever the text holds
    value = json.loads(line)
    assert value["data"] == {"message": text}
    assert value.get("code", 200) == 200


def test_the_shapes_differ_in_the_bytes_around_the_text_only() -> None:
    lines = {shape: ndjson_line("abc", shape) for shape in SHAPES}
    assert len(set(lines.values())) == len(SHAPES)
    assert lines["usual"] == b'{"code":200,"data":{"message":"abc"}}\n'  # what the service sends
    assert lines["no-code"] == b'{"data":{"message":"abc"}}\n'
    assert lines["code-last"] == b'{"data":{"message":"abc"},"code":200}\n'
    assert lines["json.dumps"] == b'{"code": 200, "data": {"message": "abc"}}\n'
    assert lines["json.dumps-no-code"] == b'{"data": {"message": "abc"}}\n'


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_server_writes_the_shape_it_is_set_to(bench_server: str, shape: str) -> None:
    pieces = BLOCK_LINES + 7  # a whole block and a partial last chunk
    status, payload = _control(bench_server, f"pieces={pieces}&shape={shape}")
    assert (status, payload["shape"], payload["pieces"]) == (200, shape, pieces)
    lines = _chat_lines(bench_server)
    expected = [ndjson_line(piece_text(i % BLOCK_LINES), shape)[:-1] for i in range(pieces)]
    assert lines == expected


def test_an_unknown_shape_is_refused_and_nothing_of_the_setting_applies(
    bench_server: str,
) -> None:
    assert _control(bench_server, "pieces=3&shape=no-code")[0] == 200
    status, payload = _control(bench_server, "pieces=9&shape=yaml")
    assert status == 400
    assert "yaml" in payload["error"]
    assert "no-code" in payload["error"]
    assert _chat_lines(bench_server) == [
        ndjson_line(piece_text(i), "no-code")[:-1] for i in range(3)
    ]


def test_a_setting_without_a_shape_means_the_usual_lines(bench_server: str) -> None:
    assert _control(bench_server, "pieces=2&shape=code-last")[0] == 200
    status, payload = _control(bench_server, "pieces=2")
    assert (status, payload["shape"]) == (200, "usual")
    assert _chat_lines(bench_server)[0] == ndjson_line(piece_text(0))[:-1]


# -- the stacks, measured by the worker -------------------------------------------------


def _throughput(base_url: str, stack: str, shape: str, **spec: Any) -> dict[str, Any]:
    spec = {
        "scenario": "throughput",
        "stack": stack,
        "base_url": base_url,
        "pieces": 2 * BLOCK_LINES + 5,
        "warm_pieces": 10,
        "parser": "default",
        "shape": shape,
        **spec,
    }
    result, why = run_worker(spec, timeout=120)
    assert result is not None, why
    return result


@pytest.mark.parametrize("shape", ["no-code", "code-last"])
@pytest.mark.parametrize(
    ("stack", "backend"),
    [("sdk-sync", None), ("sdk-async", "asyncio"), ("sdk-async", "trio"), ("floor", None)],
)
def test_each_stack_reads_every_piece_of_another_shape(
    bench_server: str, stack: str, backend: str | None, shape: str
) -> None:
    parser = "orjson" if stack == "floor" else "default"
    result = _throughput(bench_server, stack, shape, backend=backend, parser=parser)
    assert result["error"] is None  # the worker checks every piece's count and length
    assert result["pieces"] == 2 * BLOCK_LINES + 5
    assert result["requests"]["chat"] == 1  # one request: the worker's answer, in that shape


def test_the_sdk_on_default_aio_http_client_is_measured_through_aiohttp(
    bench_server: str,
) -> None:
    result = _throughput(bench_server, "sdk-aiohttp", "usual", backend="asyncio")
    assert result["error"] is None
    assert result["rate"] > 0
    assert result["pieces"] == 2 * BLOCK_LINES + 5


def test_the_sdk_on_default_aio_http_client_holds_concurrent_streams(bench_server: str) -> None:
    spec = {
        "scenario": "concurrency",
        "stack": "sdk-aiohttp",
        "base_url": bench_server,
        "pieces": 50,
        "warm_pieces": 5,
        "parser": "default",
        "backend": "asyncio",
        "streams": 30,
        "cap": 60,
    }
    result, why = run_worker(spec, timeout=120)
    assert result is not None, why
    assert (result["completed"], result["errors"], result["timed_out"]) == (30, 0, False)
    assert result["server_peak_open"] >= 30  # the server's barrier: all open at once


# -- the targets ------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [FULL, QUICK], ids=["full", "quick"])
def test_every_target_names_rows_the_scenarios_build(sizes: Any) -> None:
    keys: dict[str, set[str]] = {}
    for scenario in ("throughput", "latency", "concurrency", "gateway"):
        keys[scenario] = {row.key for row in build_rows(scenario, sizes)}
    keys["import"] = {"aichatonline", "aichatonline-clients", "httpx"}
    for target in targets(sizes):
        assert target.sdk in keys[target.scenario], target.text
        assert target.reference is None or target.reference in keys[target.scenario], target.text


def test_every_line_shape_has_a_target_for_each_default_client() -> None:
    texts = [
        t.text for t in targets(FULL) if t.reference and t.reference.startswith("floor-orjson")
    ]
    for shape in SHAPES:
        sdk_rows = {t.sdk for t in targets(FULL) if t.reference == shape_key("floor-orjson", shape)}
        assert sdk_rows == {
            shape_key("sdk-sync+default", shape),
            shape_key("sdk-async+default", shape),
        } | ({"sdk-async-trio+default"} if shape == "usual" else set()), texts


def _row(key: str, **result: Any) -> Row:
    row = Row(key, key, {"stack": key, "pieces": 1000})
    row.results.append(result)
    return row


def _judge(target: Target, sdk: Row, reference: Row) -> str:
    return evaluate(target, {target.scenario: {sdk.key: sdk, reference.key: reference}}).result


def test_a_throughput_target_wants_the_sdk_at_its_share_of_the_floor_on_the_same_lines() -> None:
    (target,) = [t for t in targets(FULL) if t.sdk == shape_key("sdk-sync+default", "code-last")]
    floor = _row(shape_key("floor-orjson", "code-last"), rate=1000.0, client_cpu=1.0)
    assert _judge(target, _row(target.sdk, rate=850.0, client_cpu=1.0), floor) == "PASS"
    assert _judge(target, _row(target.sdk, rate=840.0, client_cpu=1.0), floor) == "MISS"


def test_a_latency_target_wants_the_sdk_no_slower_than_bare_httpx() -> None:
    (target,) = [t for t in targets(FULL) if t.sdk == "sdk-sync" and t.reference == "httpx-sync"]
    httpx_row = _row("httpx-sync", p50=0.001)
    assert _judge(target, _row("sdk-sync", p50=0.001), httpx_row) == "PASS"
    assert _judge(target, _row("sdk-sync", p50=0.0011), httpx_row) == "MISS"


def test_the_aio_http_client_target_wants_half_the_original_s_wall_time() -> None:
    (target,) = [t for t in targets(FULL) if t.sdk == "sdk-aiohttp@1000" and t.metric == "seconds"]
    original = _row("original@1000", seconds=10.0)
    assert _judge(target, _row("sdk-aiohttp@1000", seconds=5.0), original) == "PASS"
    assert _judge(target, _row("sdk-aiohttp@1000", seconds=5.5), original) == "MISS"


def test_a_skipped_row_makes_its_targets_n_a_with_the_reason() -> None:
    (target,) = [t for t in targets(FULL) if t.sdk == "sdk-aiohttp" and t.metric == "p50"]
    sdk = Row("sdk-aiohttp", "x", {"stack": "sdk-aiohttp"}, skip="skipped: aiohttp not installed")
    verdict = evaluate(target, {"latency": {"sdk-aiohttp": sdk, "original": _row("original")}})
    assert (verdict.result, verdict.note) == ("n/a", "skipped: aiohttp not installed")


def test_piece_text_is_the_size_the_worker_checks() -> None:
    assert {len(piece_text(i)) for i in range(BLOCK_LINES)} == {PIECE_BYTES}
