"""What every request leaves behind: its id, its access-log line and its metrics.

:class:`Observer` is the outermost layer of the app (outside Starlette's own error
handling, so a 500 has an id too). For each HTTP request it:

- picks the request id: the caller's ``X-Request-Id`` when it is a sane token (1 to 128
  visible ASCII characters, no spaces), else a new ``req_<32 hex>``; it goes on the
  response as ``x-request-id``, into every error object (``request_id``), upstream as the
  SDK call's ``X-Request-Id`` and into the access line;
- answers 503 ``gateway_shutting_down`` with ``Connection: close`` while the worker drains
  (``/metrics`` excepted), and closes the connection after any answer started then;
- when the request ends, writes ONE access line at INFO on ``aichatonline.gateway.access``
  (time, id, method, path, status, outcome, duration, first-piece time, pieces; text or a
  JSON object, ``log_format``) and records the request's metrics.

The endpoints fill in the :class:`RequestRecord` they find in the scope (``record_of``):
the outcome (``completed``, ``client_gone``, ``upstream_error``, ``refused``,
``cut_by_shutdown``, ``gateway_error``), the first piece's time, the pieces. A request whose
client left before any answer is logged with status 499, as nginx logs it. Nothing from the
request's body is logged; what came from the client (path, method) has its control and
non-ASCII characters escaped.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import DRAINING
from ._logs import utc_time

if TYPE_CHECKING:
    from ._worker import Gateway

__all__ = [
    "ACCESS_LOGGER",
    "OUTCOMES",
    "Observer",
    "RequestRecord",
    "escape",
    "record_of",
    "request_id_for",
]

ACCESS_LOGGER = "aichatonline.gateway.access"
OUTCOMES = (
    "completed",
    "client_gone",
    "upstream_error",
    "refused",
    "cut_by_shutdown",
    "gateway_error",
)
#: The status logged for a request whose client left before any answer (nginx's).
CLIENT_GONE_STATUS = 499
_RECORD_KEY = "aichatonline.request"
_MAX_ID = 128
_MAX_LOGGED_PATH = 1024
_ROUTES = frozenset({"/v1/chat/completions", "/v1/models", "/health", "/ready", "/metrics"})
_ALWAYS_SERVED = frozenset({"/metrics"})  # a scrape during the drain sees its last values
_access_log = logging.getLogger(ACCESS_LOGGER)


def request_id_for(given: bytes | None) -> str:
    """The caller's id when it is a sane token, else a new ``req_<32 hex>``."""
    if given is not None and 0 < len(given) <= _MAX_ID and all(33 <= b <= 126 for b in given):
        return given.decode("ascii")
    return "req_" + secrets.token_hex(16)


class RequestRecord:
    """One request as the access log and the metrics see it."""

    __slots__ = (
        "client",
        "extra_headers",
        "first_piece",
        "method",
        "outcome",
        "path",
        "pieces",
        "request_id",
        "started",
        "status",
        "stream",
    )

    def __init__(self, request_id: str, method: str, path: str, client: str = "-") -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        #: The peer's address as the server reports it (after trusted forwarded headers).
        self.client = client
        self.started = time.monotonic()
        self.status: int | None = None
        self.outcome: str | None = None
        #: ``time.monotonic()`` when the service's first piece arrived (chat requests).
        self.first_piece: float | None = None
        self.pieces = 0
        #: Whether the chat answer was asked for as a stream (None: not a chat request).
        self.stream: bool | None = None
        #: Headers the endpoint adds to its answer (``x-aichatonline-dropped-params``).
        self.extra_headers: list[tuple[bytes, bytes]] = []

    def final_outcome(self) -> str:
        if self.outcome is not None:
            return self.outcome
        status = self.status
        if status is None:
            return "client_gone"
        if status < 400:
            return "completed"
        if status == 500:
            return "gateway_error"
        if status in (502, 504):
            return "upstream_error"
        return "refused"


def record_of(scope: Scope) -> RequestRecord:
    """The request's record (a bare one when the app runs without :class:`Observer`)."""
    record: RequestRecord | None = scope.get(_RECORD_KEY)
    if record is None:
        record = scope[_RECORD_KEY] = RequestRecord(request_id_for(None), "", "")
    return record


def route_of(path: str) -> str:
    """The route's template for a metrics label: never the raw path (unbounded labels)."""
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "unmatched"


class Observer:
    """The outermost ASGI layer: request ids, the drain's refusals, access log and metrics."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
                break
        peer = scope.get("client")
        client = f"{peer[0]}:{peer[1]}" if peer else "-"
        record = RequestRecord(request_id_for(given), scope["method"], scope["path"], client)
        scope[_RECORD_KEY] = record
        gateway = self.gateway
        id_header = (b"x-request-id", record.request_id.encode())

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                headers = [*message.get("headers", ()), id_header, *record.extra_headers]
                if gateway.draining:  # the client should not send this worker more
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if gateway.draining and scope["path"] not in _ALWAYS_SERVED:
                record.outcome = "refused"
                await DRAINING.send(observed_send, record.request_id)
                return
            await self.app(scope, receive, observed_send)
        except BaseException:  # a bug (answered 500 by Starlette) or a cancelled task
            if record.outcome is None and record.status is None:
                record.outcome = "cut_by_shutdown" if gateway.draining else "client_gone"
            elif record.outcome is None and record.status is not None and record.status >= 500:
                record.outcome = "gateway_error"
            raise
        finally:
            self.finish(record)

    def finish(self, record: RequestRecord) -> None:
        """The request ended: its metrics, then its access line."""
        now = time.monotonic()
        outcome = record.final_outcome()
        status = record.status if record.status is not None else CLIENT_GONE_STATUS
        route = route_of(record.path)
        metrics = self.gateway.metrics
        metrics.requests.labels(route, str(status), outcome).inc()
        metrics.duration.labels(route).observe(now - record.started)
        if record.first_piece is not None:
            metrics.first_piece.labels("true" if record.stream else "false").observe(
                record.first_piece - record.started
            )
        if _access_log.isEnabledFor(logging.INFO):
            fields = access_fields(record, status, outcome, now)
            _access_log.info(
                access_line(fields, self.gateway.settings.log_format), extra={"access": fields}
            )


def access_fields(record: RequestRecord, status: int, outcome: str, now: float) -> dict[str, Any]:
    """The access line's fields, in order."""
    first = record.first_piece
    return {
        "time": utc_time(time.time()),
        "request_id": record.request_id,
        "client": escape(record.client),
        "method": escape(record.method),
        "path": escape(record.path),
        "status": status,
        "outcome": outcome,
        "duration_ms": round((now - record.started) * 1000, 1),
        "first_piece_ms": None if first is None else round((first - record.started) * 1000, 1),
        "pieces": record.pieces,
    }


def access_line(fields: dict[str, Any], log_format: str) -> str:
    """One access line: ``key=value`` pairs (``-`` for none), or a JSON object."""
    if log_format == "json":
        return json.dumps(fields, separators=(",", ":"))
    return " ".join(f"{key}={'-' if value is None else value}" for key, value in fields.items())


def escape(text: str, limit: int = _MAX_LOGGED_PATH) -> str:
    """``text`` with every character but visible ASCII escaped (``\\xNN``, ``\\uNNNN``).

    A client's path may hold anything once percent-decoded (line breaks, terminal escapes,
    spaces); escaped, one request stays one line with one token per field. Backslashes are
    doubled so an escape cannot be forged. Longer than ``limit``: cut, with ``...`` after.
    """
    if not (text.isascii() and text.isprintable() and " " not in text and "\\" not in text):
        text = "".join(_escape_char(char) for char in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _escape_char(char: str) -> str:
    if "!" <= char <= "~":
        return "\\\\" if char == "\\" else char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
