"""OpenAI error objects for everything that can go wrong, with the status a client expects.

=====  =====================  ==============================================================
400    invalid_request_error  bad JSON, a bad or unsupported parameter (named in ``param``)
401    invalid_request_error  missing or wrong API key (``invalid_api_key``)
403    invalid_request_error  no API key is set and the client is not on loopback
                              (``api_key_required``)
404    invalid_request_error  unknown model (``model_not_found``) or route
405    invalid_request_error  a known route with another method
408    invalid_request_error  the request head or body did not arrive in time
                              (``request_timeout``)
413    invalid_request_error  body over the limit (``request_too_large``)
429    requests               the service rate-limits us (``rate_limit_exceeded``, with the
                              service's ``Retry-After``) or the worker is at its concurrency
                              limit (``concurrency_limit_exceeded``, ``Retry-After: 1``)
502    server_error           the service failed, blocked us, rejected our token, answered
                              something unreadable, or could not be reached
503    server_error           the gateway is draining (stopping) or its SDK client was
                              closed under the request: retry elsewhere
                              (``gateway_shutting_down``, ``Retry-After: 1``); ``/ready``
                              when the service does not answer (the reason's ``code``)
503    server_error           the worker has ``max_connections`` connections open
                              (``too_many_connections``, ``Retry-After: 1``; sent by the
                              connection guard of ``_connections.py``)
504    server_error           the service timed out
500    server_error           a bug in the gateway (logged; no details to the client)
=====  =====================  ==============================================================

Every error object carries the request's id (``request_id``, as the ``x-request-id`` header
says it), so a user's report can be found in the access log. Messages to clients are fixed
sentences: the SDK's own messages (which name the upstream URL
and proxy host, credentials masked) go to the ``aichatonline.gateway`` log only, so nothing
about the upstream side (its address, a proxy, the token) reaches a client.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from .._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BlockedError,
    InvalidRequestError,
    ProtocolError,
    RateLimitError,
    ServiceError,
    StreamInterrupted,
)
from .._openai import ModelNotFoundError
from ..types import ErrorObject
from ._settings import API_KEY_ENV

__all__ = ["CUT_BY_SHUTDOWN", "DRAINING", "Failure", "failure_for", "log"]

log = logging.getLogger("aichatonline.gateway")

Headers = list[tuple[bytes, bytes]]


class Failure:
    """An HTTP status, its OpenAI error object and extra headers: a whole error answer."""

    __slots__ = ("error", "headers", "status")

    def __init__(self, status: int, error: ErrorObject, headers: Headers | None = None) -> None:
        self.status = status
        self.error = error
        self.headers = headers or []

    @classmethod
    def invalid(
        cls, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> Failure:
        return cls(
            status,
            ErrorObject(message=message, type="invalid_request_error", param=param, code=code),
        )

    def body(self, request_id: str | None = None) -> bytes:
        """The JSON body: ``{"error": {..., "request_id": ...}}`` (the id when there is one)."""
        data = self.error.to_dict()
        if request_id is not None:
            data["error"]["request_id"] = request_id
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def event(self, request_id: str | None = None) -> bytes:
        """The error as one SSE event, for a failure after the stream started."""
        return b"data: " + self.body(request_id) + b"\n\n"

    async def send(self, send: Any, request_id: str | None = None) -> None:
        """Answer with this failure on a raw ASGI ``send``."""
        body = self.body(request_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @property
    def code(self) -> str | None:
        return self.error.code


def _server(status: int, message: str, code: str | None) -> Failure:
    return Failure(status, ErrorObject(message=message, type="server_error", code=code))


def failure_for(exc: BaseException) -> Failure:
    """The answer for ``exc``, raised by the request checks or the SDK (see the table above)."""
    if isinstance(exc, ModelNotFoundError):
        return Failure.invalid(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, InvalidRequestError):
        return Failure.invalid(400, str(exc), param=exc.field)
    if isinstance(exc, StreamInterrupted):
        # Only a non-streamed answer ends here (a stream reports it in-band): the cause decides.
        cause = exc.__cause__
        if isinstance(cause, APIError) and not isinstance(cause, StreamInterrupted):
            return failure_for(cause)
        return _server(
            502, "The AiChatOnline service broke off its answer.", "upstream_interrupted"
        )
    if isinstance(exc, APIError):
        log.warning("upstream failure: %s: %s", type(exc).__name__, exc)
    else:
        log.error("gateway error", exc_info=exc)
        return _server(500, "The gateway failed to handle the request.", None)
    failure = _upstream(exc)
    retry_after = getattr(exc, "retry_after", None)  # the service's Retry-After, passed on
    if isinstance(exc, APIStatusError) and isinstance(retry_after, (int, float)):
        seconds = max(0, math.ceil(retry_after))
        failure.headers.append((b"retry-after", str(seconds).encode()))
        failure.error.message += f" Retry after {seconds} s."
    return failure


def _upstream(exc: APIError) -> Failure:
    if isinstance(exc, RateLimitError):
        error = ErrorObject(
            message=f"The AiChatOnline service is rate limiting requests (HTTP {exc.status_code}).",
            type="requests",
            code="rate_limit_exceeded",
        )
        return Failure(429, error)
    if isinstance(exc, APITimeoutError):
        return _server(504, "The AiChatOnline service did not answer in time.", "upstream_timeout")
    if isinstance(exc, BlockedError):
        return _server(
            502,
            "The AiChatOnline service's bot protection blocked the request.",
            "upstream_blocked",
        )
    if isinstance(exc, AuthenticationError):
        return _server(
            502,
            f"The AiChatOnline service rejected the gateway's token (HTTP {exc.status_code}).",
            "upstream_rejected",
        )
    if isinstance(exc, APIStatusError):
        return _server(
            502, f"The AiChatOnline service failed (HTTP {exc.status_code}).", "upstream_status"
        )
    if isinstance(exc, APIConnectionError):
        return _server(
            502, "The connection to the AiChatOnline service failed.", "upstream_unreachable"
        )
    if isinstance(exc, ServiceError):
        code = f" (code {exc.code})" if isinstance(exc.code, int) else ""
        return _server(502, f"The AiChatOnline service reported an error{code}.", "upstream_error")
    if isinstance(exc, ProtocolError):
        return _server(
            502,
            "The AiChatOnline service answered in a form the gateway cannot read.",
            "upstream_protocol_error",
        )
    return _server(502, "The AiChatOnline service failed.", "upstream_error")


def _retry_shortly(status: int, message: str, kind: str, code: str) -> Failure:
    """A refusal the client should retry in a second (``Retry-After: 1``)."""
    return Failure(
        status, ErrorObject(message=message, type=kind, code=code), [(b"retry-after", b"1")]
    )


CONCURRENCY_LIMIT = _retry_shortly(
    429,
    "The gateway is handling as many requests as it may; retry shortly.",
    "requests",
    "concurrency_limit_exceeded",
)
INVALID_API_KEY = Failure.invalid(
    401,
    "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'.",
    code="invalid_api_key",
)
LOOPBACK_ONLY = Failure.invalid(
    403,
    "This gateway has no API key, so it serves clients on its own machine (loopback) only. "
    f"To serve other addresses, set {API_KEY_ENV} (or --api-key, or create_app(api_key=...)) "
    "and send the key as 'Authorization: Bearer KEY'.",
    code="api_key_required",
)
CLIENT_CLOSED = _retry_shortly(
    503,
    "The gateway is shutting down and cannot handle the request; retry shortly.",
    "server_error",
    "gateway_shutting_down",
)
#: Every request that arrives while the worker drains (with ``Connection: close``, which the
#: observer adds to every answer then).
DRAINING = Failure(
    503,
    ErrorObject(
        message="The gateway is shutting down and takes no new requests; retry shortly.",
        type="server_error",
        code="gateway_shutting_down",
    ),
    [(b"retry-after", b"1")],
)
#: What ends a stream still open when the drain's time is up.
CUT_BY_SHUTDOWN = Failure(
    503,
    ErrorObject(
        message="The gateway shut down before the answer was complete; retry the request.",
        type="server_error",
        code="gateway_shutting_down",
    ),
    [(b"retry-after", b"1")],
)
