"""Delivery: how an answer goes onto the wire, with the request's fault acted out.

The endpoints (``_server.py``) decide *what* to answer; these functions write it to a
``Connection``: a plain response, a status or Cloudflare page in place of the answer, a token
body cut short or sent byte by byte, and the chat's NDJSON stream with its stalls, drops,
in-band error and malformed lines. They hold no server state. Each returns whether the
connection may serve another request, and raises ``PeerGone`` when the client left.

The streaming loop visits the points "after p valid lines" for p = 0..n and fires the stall,
in-band error and drop faults at their points (a point past the end fires after the last
line, before the terminating chunk).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable

from ._answers import error_object
from ._faults import CLOUDFLARE_PAGE, MALFORMED_LINES, Fault
from ._http import (
    SERVER_NAME,
    ChunkedBody,
    Connection,
    RecordedRequest,
    full_response,
    reason,
    response_head,
)

__all__ = ["send", "send_error", "send_fault_page", "send_token_body", "stream_lines"]

_log = logging.getLogger("aichatonline.testing")

_BATCH = 16 * 1024  # bytes of NDJSON per write when not pacing: few syscalls, prompt delivery


def send(
    conn: Connection,
    request: RecordedRequest,
    status: int,
    response: tuple[bytes, bytes],
    keep_alive: bool,
) -> bool:
    """Write a whole (head, body) response in one go and log it."""
    conn.write(response[0] + response[1])
    _log.info("%s %s -> %d", request.method, request.path, status)
    return keep_alive


def send_error(
    conn: Connection,
    request: RecordedRequest,
    status: int,
    message: str,
    keep_alive: bool,
    extra: Iterable[tuple[str, str]] = (),
) -> bool:
    """Answer ``status`` with the service's JSON error object."""
    body = error_object(status, message)
    response = full_response(status, body, "application/json", keep_alive, extra)
    return send(conn, request, status, response, keep_alive)


def send_fault_page(
    conn: Connection, request: RecordedRequest, fault: Fault, keep_alive: bool
) -> bool | None:
    """Answer a ``cloudflare`` or ``status`` fault; None (nothing sent) for neither."""
    extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
    if fault.cloudflare:
        extra += [
            ("cf-ray", f"{secrets.token_hex(8)}-AMS"),
            ("cf-mitigated", "challenge"),
            ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
        ]
        # A Cloudflare answer names Cloudflare as the server, not us.
        page = CLOUDFLARE_PAGE
        response = full_response(
            403, page, "text/html; charset=UTF-8", keep_alive, extra, "cloudflare"
        )
        return send(conn, request, 403, response, keep_alive)
    if fault.status is None:
        return None
    if fault.body is None:
        body, content_type = error_object(fault.status, reason(fault.status)), "application/json"
    else:
        body = fault.body  # exactly these bytes, whatever the status (a 200 HTML page too)
        try:
            json.loads(body)
            content_type = "application/json"
        except ValueError:
            content_type = "text/plain; charset=utf-8"
    response = full_response(fault.status, body, content_type, keep_alive, extra)
    return send(conn, request, fault.status, response, keep_alive)


async def send_token_body(
    conn: Connection, request: RecordedRequest, body: bytes, fault: Fault, keep_alive: bool
) -> bool:
    """Answer 200 with ``body``: whole, cut in the middle (``drop_after``) or trickled."""
    head, body = full_response(200, body, "application/json", keep_alive)
    if fault.drop_after is not None:
        conn.write(head + body[: len(body) // 2])
        await conn.drain()
        conn.drop(fault.drop_reset)
        _log.info("%s %s -> 200, dropped", request.method, request.path)
        return False
    if fault.trickle:
        conn.write(head)
        await conn.drain()
        for byte in body:
            conn.write(bytes((byte,)))
            await conn.drain()
        return keep_alive
    return send(conn, request, 200, (head, body), keep_alive)


async def stream_lines(
    conn: Connection,
    request: RecordedRequest,
    lines: tuple[bytes, ...],
    fault: Fault,
    keep_alive: bool,
    delay: float,
) -> bool:
    """Stream NDJSON ``lines`` as a chunked 200, ``delay`` seconds apart, acting out ``fault``."""
    head = response_head(
        200,
        [
            ("Server", SERVER_NAME),
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ],
        keep_alive,
    )
    out = ChunkedBody(conn, head, fault.trickle)
    count = len(lines)
    # Fault points past the end fire after the last line, before the terminating chunk.
    stall_at = min(fault.stall_after, count) if fault.stall > 0 else -1
    error_at = -1 if fault.error_after is None else min(fault.error_after, count)
    drop_at = -1 if fault.drop_after is None else min(fault.drop_after, count)
    for point in range(count + 1):
        if point == stall_at:
            await out.flush()
            await conn.pause(fault.stall)
        if point == error_at:
            out.add(error_object(fault.error_code, fault.error_message) + b"\n")
            await out.finish()
            _log.info("%s %s -> 200, in-band error", request.method, request.path)
            return keep_alive
        if point == drop_at:
            await out.flush()
            conn.drop(fault.drop_reset)
            _log.info("%s %s -> 200, dropped after %d", request.method, request.path, point)
            return False
        if point == count:
            break
        if fault.malformed:
            out.add(MALFORMED_LINES[point % len(MALFORMED_LINES)])
        out.add(lines[point])
        if delay > 0:
            await out.flush()
            if point < count - 1:
                await conn.pause(delay)
        elif out.pending >= _BATCH:
            await out.flush()
    if fault.malformed:
        out.add(MALFORMED_LINES[count % len(MALFORMED_LINES)])
    await out.finish()
    _log.info("%s %s -> 200, %d lines", request.method, request.path, count)
    return keep_alive
