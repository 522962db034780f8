"""Fuzzing the clients: random answers and HTTP-level faults from a scripted raw-socket server.

Hypothesis writes an answer (pieces of any text, each a line in one of the shapes the
protocol allows, unreadable lines and blank lines between them), frames it (chunked with
chunk boundaries anywhere, ``Content-Length``, or read to the close), splits the bytes into
writes anywhere (through a multi-byte character, through ``\\r\\n``), and scripts what each
attempt of the call meets: the whole answer, a drop or a reset at any byte, a broken chunk
header, a status (429, 500, 503 with ``Retry-After: 0``; 401; 400, 404, 302), a 200 with an
empty or HTML body, an in-band error line, a stall longer than the read timeout. The
server (``tests/hostile.py``) acts the script out, one entry per chat request, the last one
for every request after it.

The clients (blocking, and async on asyncio and trio) must give the exact text, or a typed
error (``AiChatOnlineError``) whose ``.partial`` is exactly what was delivered, which must be
a start of the text; never a piece twice, never a foreign exception. And when the script
leaves room (the first attempt whole, or only retryable faults within ``max_retries``), the
exact text.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aichatonline import AiChatOnlineError, AsyncClient, Client, StreamInterrupted, Timeout
from tests.helpers import arun_stream, fast, run_stream
from tests.hostile import (
    TOKEN_PATH,
    Conn,
    HostileServer,
    Request,
    chunk,
    response,
    token,
)

pytestmark = pytest.mark.usefixtures("isolated")

MAX_RETRIES = 3
STALL = 0.35
TIMEOUT = Timeout(5.0, read=0.15)
RETRYABLE = frozenset({"drop", "reset", "bad_chunk", "429", "500", "503", "empty", "stall"})
FATAL_STATUSES = {"400": 400, "404": 404, "302": 302, "401": 401}
FAULTS = (
    "ok",
    "drop",
    "reset",
    "bad_chunk",
    "429",
    "500",
    "503",
    "401",
    "400",
    "404",
    "302",
    "empty",
    "html",
    "inband",
    "stall",
)
ASYNC = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------- the answer


@dataclass(frozen=True)
class Answer:
    """The text and the bytes of one answer, and how they are framed and cut into writes."""

    pieces: list[str]
    lines: list[bytes]  # every line of the body, readable or not, in order
    framing: str  # "chunked", "length" or "close"
    cuts: list[int]  # byte offsets of the body where a write (and a chunk) ends

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def body(self) -> bytes:
        return b"".join(self.lines)


_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
_junk = st.sampled_from(
    [b"\n", b"\r\n", b"not json\n", b"[1,2]\n", b'{"code":200,"data":{}}\n', b'{"code":200}\n']
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    # At least one piece: an answer with no readable line at all is a ProtocolError by design.
    pieces = draw(st.lists(_text, min_size=1, max_size=10))
    lines: list[bytes] = []
    for piece in pieces:
        lines += draw(st.lists(_junk, max_size=1))
        field = draw(st.sampled_from(["message", "content"]))
        text = json.dumps(piece, ensure_ascii=draw(st.booleans()))
        line = f'{{"code":200,"data":{{"{field}":{text}}}}}'.encode()
        prefix = draw(st.sampled_from([b"", b"data: "]))
        lines.append(prefix + line + draw(st.sampled_from([b"\n", b"\r\n"])))
    body_size = sum(map(len, lines))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, body_size)), max_size=6))))
    return Answer(pieces, lines, draw(st.sampled_from(["chunked", "length", "close"])), cuts)


# --------------------------------------------------------------------------- the server


def _head(answer: Answer, body: bytes) -> bytes:
    """The response head for ``body`` (the whole answer's, or one with an in-band error)."""
    if answer.framing == "chunked":
        framing = "Transfer-Encoding: chunked\r\n"
    elif answer.framing == "length":
        framing = f"Content-Length: {len(body)}\r\n"
    else:
        framing = "Connection: close\r\n"
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n{framing}\r\n".encode()


def _writes(answer: Answer, body: bytes) -> list[bytes]:
    """``body`` cut at ``answer.cuts``, each part framed as the answer's framing says."""
    edges = [0, *(cut for cut in answer.cuts if cut < len(body)), len(body)]
    parts = [body[a:b] for a, b in itertools.pairwise(edges) if b > a]
    return [chunk(part) for part in parts] if answer.framing == "chunked" else parts


def act(fault: str, answer: Answer, conn: Conn, at: int) -> bool:
    """Answer one chat request with ``fault`` acted out; return whether to keep the connection."""
    body = answer.body
    at = min(at, len(body))
    if answer.framing != "chunked" and fault == "bad_chunk":
        # Without chunks, the bytes would be part of the body: they could even complete a
        # Content-Length with an unreadable last line (a whole answer, as far as anyone can
        # tell). A broken frame there is a body cut short.
        fault = "drop"
    if answer.framing == "close" and fault == "drop":
        # A body read to the close that closes early looks complete: no client can tell.
        # A reset can be told, so the fault becomes one.
        fault = "reset"
    if fault in FATAL_STATUSES or fault in ("429", "500", "503"):
        status = FATAL_STATUSES.get(fault) or int(fault)
        extra = {"Retry-After": "0"} if fault in ("429", "503") else {}
        extra |= {"Location": "http://elsewhere.invalid/"} if fault == "302" else {}
        conn.send(response(status, b'{"code": %d, "message": "no"}' % status, extra))
        return True
    if fault in ("empty", "html"):
        page = b"" if fault == "empty" else b"<html><body>Down for maintenance</body></html>"
        conn.send(response(200, page, {"Content-Type": "text/html"}))
        return True
    if fault == "inband":
        split = body.rfind(b"\n", 0, at) + 1  # after a whole line
        body = body[:split] + b'{"code": 500, "message": "in-band failure"}\n'
    conn.send(_head(answer, body))
    if fault in ("drop", "reset", "bad_chunk", "stall"):
        for write in _writes(answer, body[:at]):
            conn.send(write)
        if fault == "bad_chunk":
            conn.send(b"zz-not-hex\r\n")
        elif fault == "stall":
            conn.pause(STALL)
            return False
        elif fault == "reset":
            # SO_LINGER with a zero timeout: the close that follows sends a TCP reset.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False
    for write in _writes(answer, body):
        conn.send(write)
    if answer.framing == "chunked":
        conn.send(chunk(b""))
    return answer.framing != "close"


class Script:
    """What each chat request of the current example meets (the last entry for all after)."""

    def __init__(self) -> None:
        self.answer = Answer([], [], "length", [])
        self.attempts: list[tuple[str, int]] = [("ok", 0)]
        self.calls = 0
        self._lock = threading.Lock()

    def reset(self, answer: Answer, attempts: list[tuple[str, int]]) -> None:
        with self._lock:
            self.answer, self.attempts, self.calls = answer, attempts, 0

    def __call__(self, request: Request, conn: Conn) -> bool:
        # Each write goes out at once (no Nagle wait for the client's delayed ACK).
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if request.path == TOKEN_PATH:
            return token()(request, conn)
        with self._lock:
            fault, at = self.attempts[min(self.calls, len(self.attempts) - 1)]
            self.calls += 1
            answer = self.answer
        return act(fault, answer, conn, at)


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[HostileServer, Script]]:
    script = Script()
    with HostileServer(script) as server:
        yield server, script


def _quick(attempts: list[tuple[str, int]]) -> bool:
    """At most one stall, and not the last entry (which would answer every later attempt)."""
    stalls = [fault == "stall" for fault, _ in attempts]
    return sum(stalls) <= 1 and not stalls[-1]


attempts_strategy = st.lists(
    st.tuples(st.sampled_from(FAULTS), st.integers(0, 400)), min_size=1, max_size=5
).filter(_quick)


# --------------------------------------------------------------------------- the judgement


def judge(
    answer: Answer,
    attempts: list[tuple[str, int]],
    pieces: list[str],
    stream: Any,
    error: Exception | None,
) -> None:
    delivered = "".join(pieces)
    assert stream.text == delivered
    assert answer.text.startswith(delivered), (delivered, answer.text)
    if error is None:
        assert delivered == answer.text
    else:
        assert isinstance(error, AiChatOnlineError), repr(error)
        if delivered:
            assert isinstance(error, StreamInterrupted), repr(error)
        assert getattr(error, "partial", "") == delivered
    faults = [fault for fault, _ in attempts]
    if faults[0] == "ok" or (
        len(faults) <= MAX_RETRIES + 1
        and faults[-1] == "ok"
        and all(fault in RETRYABLE for fault in faults[:-1])
    ):
        assert error is None, (faults, repr(error))


@given(answers(), attempts_strategy)
def test_the_blocking_client(
    scripted: tuple[HostileServer, Script], answer: Answer, attempts: list[tuple[str, int]]
) -> None:
    server, script = scripted
    script.reset(answer, attempts)
    with Client(
        base_url=server.base_url, timeout=TIMEOUT, retry_policy=fast(MAX_RETRIES)
    ) as client:
        pieces, stream, error = run_stream(client, "Hi")
    judge(answer, attempts, pieces, stream, error)


@pytest.mark.anyio
@ASYNC
@given(answers(), attempts_strategy)
async def test_the_async_client(
    scripted: tuple[HostileServer, Script], answer: Answer, attempts: list[tuple[str, int]]
) -> None:
    server, script = scripted
    script.reset(answer, attempts)
    async with AsyncClient(
        base_url=server.base_url, timeout=TIMEOUT, retry_policy=fast(MAX_RETRIES)
    ) as client:
        pieces, stream, error = await arun_stream(client, "Hi")
    judge(answer, attempts, pieces, stream, error)
