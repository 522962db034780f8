"""Refusals end the connection: ``Connection: close`` on every refusal and on any answer that
leaves part of the request body unread.

A client refused with 401, or answered 413 before its body was read, must not keep its
connection open by trickling the rest of that body: the server would have to read (and
drop) all of it before the next request could start. So these answers say
``Connection: close`` and the server closes the connection after them (uvicorn does, on
that header; the gateway's own protocol then reads and drops what the client still sends
for a moment, so that the answer is not lost to a reset: ``_connections.py``).

:class:`CloseRefusals` is the outermost layer of ``create_app``: it works under any ASGI
server that honours ``Connection: close`` in a response.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REFUSALS", "CloseRefusals"]

#: The statuses that end the connection (the client's fault, or "not now").
REFUSALS = frozenset({400, 401, 403, 404, 405, 408, 413, 429})
_CLOSE = (b"connection", b"close")


def _has_body(headers: Any) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" 0")):
            return True
    return False


class CloseRefusals:
    """Add ``Connection: close`` to refusals and to answers sent before the body was read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        unread = _has_body(scope["headers"])

        async def receive_body() -> Message:
            nonlocal unread
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                unread = False
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                unread or message["status"] in REFUSALS
            ):
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    message = {**message, "headers": [*headers, _CLOSE]}
            await send(message)

        await self.app(scope, receive_body if unread else receive, send_closing)
