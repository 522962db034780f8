"""Fault specs: ``Fault``, one scripted misbehaviour of the local server, and its header form.

A ``Fault`` is data only; the endpoints (``_server.py``) act it out. It travels either as an
object (``LocalServer.inject()``, ``LocalServer.always``) or as an ``X-Fault`` request header,
``name=value`` items separated by ``;`` with booleans by bare name, so that a server in another
process can be driven from ``curl`` (``Fault.from_header`` / ``Fault.to_header``).

This module also holds the bytes a fault sends instead of a normal answer: the malformed lines
interleaved with the valid ones, and the Cloudflare challenge page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CLOUDFLARE_PAGE", "MALFORMED_LINES", "NO_FAULT", "Fault"]

# Lines the ``malformed`` fault interleaves with the valid ones, in turn: not JSON at all,
# JSON without ``data.message``, and JSON that is not an object.
MALFORMED_LINES = (
    b"this line is not JSON\n",
    b'{"code":200,"data":{}}\n',
    b"[1,2,3]\n",
)

CLOUDFLARE_PAGE = b"""<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<meta name="robots" content="noindex,nofollow"></head>
<body><div class="main-wrapper" role="main"><div class="main-content">
<noscript><div class="h2">Enable JavaScript and cookies to continue</div></noscript>
</div></div><script>window._cf_chl_opt={cType: 'managed'};</script></body></html>
"""

_INT_FIELDS = frozenset({"status", "drop_after", "stall_after", "error_after", "error_code"})
_FLOAT_FIELDS = frozenset({"stall"})
_STR_FIELDS = frozenset({"endpoint", "retry_after", "error_message", "body"})
_BOOL_FIELDS = frozenset(
    {"cloudflare", "drop_reset", "malformed", "trickle", "expire_token", "variant"}
)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One scripted misbehaviour of the server; the defaults mean "no fault".

    Streaming fields count *valid* lines: "after k lines" is the point where k NDJSON pieces
    have been written (k = 0 is right after the response headers; k past the end means after
    the last piece, before the terminating chunk). They apply to a 200 chat stream; on the
    token endpoint ``stall`` delays the response, ``drop_after`` cuts it mid-body,
    ``trickle`` sends the body byte by byte, ``malformed`` answers 200 with a non-JSON body
    and ``error_after`` answers 200 with an error object instead of a token.
    """

    endpoint: Literal["chat", "token"] = "chat"
    """Which endpoint's next request consumes this fault."""
    status: int | None = None
    """Answer with this status and a JSON error body (or ``body``)."""
    retry_after: str | None = None
    """Value of a ``Retry-After`` header added to a ``status``/``cloudflare`` answer."""
    body: bytes | None = None
    """Raw body for a ``status`` answer instead of the JSON error object (any status, 200
    included: ``Fault(status=200, body=b"<html>...")`` is a maintenance page)."""
    cloudflare: bool = False
    """Answer 403 with a Cloudflare "Just a moment..." challenge page."""
    drop_after: int | None = None
    """Abort the connection after this many lines, without the terminating chunk."""
    drop_reset: bool = False
    """Abort with a TCP reset (SO_LINGER 0) instead of a FIN."""
    stall: float = 0.0
    """Seconds without any byte, at ``stall_after`` lines."""
    stall_after: int = 0
    """Where the stall happens (0 = after the headers, before the first line)."""
    malformed: bool = False
    """Interleave malformed lines with the valid ones (the valid text is unchanged)."""
    error_after: int | None = None
    """After this many lines send ``{"code": error_code, "message": error_message}`` and end."""
    error_code: int = 500
    error_message: str = "internal error"
    trickle: bool = False
    """Send every body byte as its own write and its own chunk."""
    expire_token: bool = False
    """Invalidate the request's token first, so the request gets 401."""
    variant: bool = False
    """Answer with a different text ("Variant N: ..."), so a resend does not reproduce it."""

    def __post_init__(self) -> None:
        if self.endpoint not in ("chat", "token"):
            raise ValueError(f"endpoint must be 'chat' or 'token', got {self.endpoint!r}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be in 100..599, got {self.status}")
        for name in ("drop_after", "error_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be None or >= 0, got {value}")
        if self.stall < 0 or self.stall_after < 0:
            raise ValueError("stall and stall_after must be >= 0")

    @classmethod
    def from_header(cls, value: str, *, endpoint: Literal["chat", "token"] = "chat") -> Fault:
        """Parse an ``X-Fault`` header value such as ``"drop_after=3; trickle; status=503"``.

        Items are separated by ``;``; each is ``name=value`` with a field name of this class
        (``-`` may stand for ``_``), or a bare boolean field name meaning true. Raises
        ``ValueError`` on an unknown name or a bad value.
        """
        options: dict[str, Any] = {"endpoint": endpoint}
        for item in value.split(";"):
            item = item.strip()
            if not item:
                continue
            name, has_value, raw = item.partition("=")
            name = name.strip().lower().replace("-", "_")
            raw = raw.strip()
            try:
                if name in _BOOL_FIELDS:
                    if has_value and raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    options[name] = not has_value or raw.lower() in ("1", "true", "yes")
                elif not has_value:
                    raise ValueError("a value is required")
                elif name in _INT_FIELDS:
                    options[name] = int(raw)
                elif name in _FLOAT_FIELDS:
                    options[name] = float(raw)
                elif name == "body":
                    options[name] = raw.encode()
                elif name in _STR_FIELDS:
                    options[name] = raw
                else:
                    raise ValueError("unknown fault field")
            except ValueError as exc:
                raise ValueError(f"bad X-Fault item {item!r}: {exc}") from None
        return cls(**options)

    def to_header(self) -> str:
        """Render the non-default fields as an ``X-Fault`` header value (``endpoint`` omitted)."""
        items = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name == "endpoint" or value == spec.default:
                continue
            if value is True:
                items.append(spec.name)
            elif isinstance(value, bytes):
                items.append(f"{spec.name}={value.decode()}")
            else:
                items.append(f"{spec.name}={value}")
        return "; ".join(items)


NO_FAULT = Fault()
"""The fault of a request that has none."""
