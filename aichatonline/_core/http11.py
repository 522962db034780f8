"""A sans-IO HTTP/1.1 client codec: request bytes out, response head and body bytes in.

Theory of operation
-------------------
The SDK talks to one origin (or one proxy) with two kinds of request, and reads streamed
answers of many small pieces. h11, the reference sans-IO codec, spent about as long on one
request and response as the whole round trip takes on loopback, so the SDK's own
connections use this smaller codec; a caller's own httpx client still goes through httpx.

:func:`request_head` serializes a request head. Everything in it was validated when the
client was configured (the core refuses header values and URLs that could smuggle a line
break), so it only joins strings.

:class:`ResponseParser` reads one response. ``receive_head(data)`` takes bytes until the
head is complete and returns it as a :class:`ResponseHead` (interim 1xx responses are
skipped); ``receive_body(data)`` then returns the body bytes that ``data`` completes
(chunked, ``Content-Length``, or to the end of the connection, as RFC 9112 section 6.3
decides) and ``done`` turns true at the end of the message. ``end_of_stream()`` reports
that the peer closed: the normal end of a body read to the close, otherwise a
:class:`IncompleteResponse`. Bytes a read brought past the end of the message are kept in
``leftover``; a response that leaves any makes the connection unusable for another request.

Bounds: a response head may be 64 KiB, a chunk-size line 1 KiB; anything larger, and any
framing that breaks the RFC, is a :class:`BadResponse` (which never quotes the bytes: they
may echo the token). Work is linear in the input however it is split: the head buffer is
searched from where the last search stopped, and body data is sliced, never rescanned.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._exceptions import ProtocolError

__all__ = [
    "MAX_HEAD",
    "BadResponse",
    "IncompleteResponse",
    "ResponseHead",
    "ResponseParser",
    "request_head",
]

#: The largest response head (status line and headers) accepted.
MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 1024
_MAX_CHUNK_SIZE = 1 << 40
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX_DIGITS = b"0123456789abcdefABCDEF"

# Body framing
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)
# Chunked states
_SIZE, _DATA, _DATA_END, _TRAILERS = range(4)


class BadResponse(ProtocolError):
    """The response breaks HTTP/1.1's rules (its bytes are never quoted: they may hold secrets).

    Retryable, like a dropped connection: a proxy or a server that garbles one answer
    usually sends the next one whole.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class IncompleteResponse(ConnectionError):
    """The peer closed the connection before the response was complete."""


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The head of an HTTP/1.1 request (names and values already validated)."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


class ResponseHead:
    """A response's status and headers (names lower-case; repeated ones joined by ``, ``)."""

    __slots__ = ("headers", "set_cookie", "status", "version")

    def __init__(
        self, status: int, version: str, headers: dict[str, str], set_cookie: list[str]
    ) -> None:
        self.status = status
        self.version = version
        self.headers = headers
        #: Every ``Set-Cookie`` value (they cannot be joined).
        self.set_cookie = set_cookie

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status}>"


class ResponseParser:
    """Reads one HTTP/1.1 response. ``method`` is the request's (HEAD and CONNECT matter)."""

    __slots__ = (
        "_buffer",
        "_chunk_left",
        "_chunk_line",
        "_chunk_state",
        "_framing",
        "_left",
        "_method",
        "_pending",
        "_searched",
        "done",
        "head",
        "keep_alive",
        "leftover",
    )

    def __init__(self, method: str = "GET") -> None:
        self._method = method
        self._buffer = bytearray()
        self._searched = 0
        self.head: ResponseHead | None = None
        self._framing = _NONE
        self._left = 0
        self._chunk_state = _SIZE
        self._chunk_left = 0
        self._chunk_line = bytearray()
        self._pending = b""
        #: The message ended (the whole body was read).
        self.done = False
        #: Whether the connection may carry another request once ``done``.
        self.keep_alive = False
        #: Bytes received past the end of the message.
        self.leftover = b""

    # -- the head ---------------------------------------------------------------------

    def receive_head(self, data: bytes) -> ResponseHead | None:
        """Take bytes of the response; the head once it is complete (else ``None``).

        Body bytes that came with the head are kept for the first :meth:`receive_body`.
        """
        buffer = self._buffer
        buffer += data
        while True:
            end = self._find_head_end()
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise BadResponse(f"the response head is larger than {MAX_HEAD} bytes")
                return None
            if end > MAX_HEAD:
                raise BadResponse(f"the response head is larger than {MAX_HEAD} bytes")
            raw, rest = bytes(buffer[:end]), bytes(buffer[end:])
            head = self._parse_head(raw)
            if 100 <= head.status < 200:  # interim (100 Continue, 103 Early Hints): skip
                if head.status == 101:
                    raise BadResponse("the server switched protocols (HTTP 101)")
                buffer[:] = rest
                self._searched = 0
                continue
            self._frame(head)
            self.head = head
            self._buffer = bytearray()
            self._pending = rest
            return head

    def _find_head_end(self) -> int:
        """Where the head ends (just past its blank line), or -1; searches only new bytes."""
        buffer = self._buffer
        start = max(0, self._searched - 2)
        self._searched = len(buffer)
        crlf = buffer.find(b"\n\r\n", start)
        lf = buffer.find(b"\n\n", start)
        if lf >= 0 and (crlf < 0 or lf < crlf):
            return lf + 2
        return crlf + 3 if crlf >= 0 else -1

    def _parse_head(self, raw: bytes) -> ResponseHead:
        # One replace and one split in C, then per line a partition: this runs once per
        # request, and h11's validating parser cost as much as the round trip.
        lines = raw.replace(b"\r\n", b"\n").split(b"\n")
        status_line = lines[0]
        if (
            len(status_line) < 12
            or status_line[:7] != b"HTTP/1."
            or status_line[7:8] not in (b"0", b"1")
            or status_line[8:9] != b" "
            or not status_line[9:12].isdigit()
            or status_line[12:13] not in (b"", b" ")
        ):
            raise BadResponse("the response does not start with an HTTP/1.x status line")
        headers: dict[str, str] = {}
        set_cookie: list[str] = []
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(b":")
            # A header name is a non-empty token; this also refuses a folded line (it
            # starts with a space) and stray bytes.
            if not colon or not name or name.translate(None, _TOKEN_CHARS):
                raise BadResponse("the response has a malformed header line")
            if b"\r" in value or b"\x00" in value:
                raise BadResponse("the response has a control character in a header value")
            key = name.decode("ascii").lower()
            text = value.strip(b" \t").decode("latin-1")
            if key == "set-cookie":
                set_cookie.append(text)
            previous = headers.get(key)
            headers[key] = text if previous is None else f"{previous}, {text}"
        version = "1.1" if status_line[7:8] == b"1" else "1.0"
        return ResponseHead(int(status_line[9:12]), version, headers, set_cookie)

    def _frame(self, head: ResponseHead) -> None:
        """Decide how the body is delimited (RFC 9112 section 6.3) and whether to keep alive."""
        headers = head.headers
        connection = {t.strip(" \t").lower() for t in headers.get("connection", "").split(",")}
        if head.version == "1.1":
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection
        status = head.status
        if (
            self._method == "HEAD"
            or status in (204, 304)
            or (self._method == "CONNECT" and 200 <= status < 300)
        ):
            self._framing = _NONE
            return
        coding = headers.get("transfer-encoding")
        if coding is not None:
            last = coding.rsplit(",", 1)[-1].strip().lower()
            if last == "chunked":
                self._framing = _CHUNKED
                if "content-length" in headers:  # a smuggling pattern: never reuse
                    self.keep_alive = False
            else:
                self._framing, self.keep_alive = _CLOSE, False
            return
        length = headers.get("content-length")
        if length is None:
            self._framing, self.keep_alive = _CLOSE, False
            return
        values = {part.strip(" \t") for part in length.split(",")}
        value = next(iter(values))
        # isdigit alone would take "²"; 18 digits is more than any body could be.
        if len(values) != 1 or not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise BadResponse("the response has an invalid Content-Length")
        self._framing, self._left = _LENGTH, int(value)

    # -- the body ---------------------------------------------------------------------

    def first_body(self) -> bytes:
        """The body bytes that came with the head (call once, right after the head)."""
        pending, self._pending = self._pending, b""
        if self._framing == _NONE:
            self.done = True
            self._keep_extra(pending)
            return b""
        return self.receive_body(pending) if pending or self._framing == _LENGTH else b""

    def receive_body(self, data: bytes) -> bytes:
        """Take the next bytes; the body bytes they complete (``b""`` if none)."""
        framing = self._framing
        if framing == _CHUNKED:
            return self._chunked(data)
        if framing == _LENGTH:
            left = self._left
            if len(data) >= left:
                self.done = True
                self._keep_extra(data[left:])
                self._left = 0
                return data[:left]
            self._left = left - len(data)
            return data
        if framing == _CLOSE:
            return data
        self.done = True
        return b""

    def end_of_stream(self) -> None:
        """The peer closed the connection: fine for a body read to the close, else an error."""
        if self.head is None:
            if self._buffer:
                raise IncompleteResponse(
                    "the server closed the connection mid-way through the head"
                )
            raise IncompleteResponse("the server closed the connection without answering")
        if self._framing == _CLOSE:
            self.done = True
            self.keep_alive = False
            return
        if not self.done:
            raise IncompleteResponse("the server closed the connection before the body ended")

    def _keep_extra(self, extra: bytes) -> None:
        if extra:
            self.leftover = extra
            self.keep_alive = False  # we never pipeline: bytes past the answer are suspect

    def _chunked(self, data: bytes) -> bytes:
        out: list[bytes] = []
        size = len(data)
        at = 0
        while at < size and not self.done:
            state = self._chunk_state
            if state == _DATA:
                take = min(self._chunk_left, size - at)
                out.append(data if take == size else data[at : at + take])
                at += take
                self._chunk_left -= take
                if not self._chunk_left:
                    self._chunk_state = _DATA_END
                continue
            # A line: the chunk size, the CRLF after the data, or a trailer.
            end = data.find(b"\n", at)
            if end < 0:
                self._chunk_line += data[at:]
                if len(self._chunk_line) > _MAX_CHUNK_LINE:
                    raise BadResponse("a chunk-size line of the response is too long")
                break
            if self._chunk_line:  # the line began in an earlier read
                self._chunk_line += data[at:end]
                line = bytes(self._chunk_line)
                self._chunk_line = bytearray()
            else:
                line = data[at:end]
            if len(line) > _MAX_CHUNK_LINE:
                raise BadResponse("a chunk-size line of the response is too long")
            at = end + 1
            if line[-1:] == b"\r":
                line = line[:-1]
            if state == _DATA_END:
                if line:
                    raise BadResponse("a chunk of the response does not end where its size said")
                self._chunk_state = _SIZE
            elif state == _SIZE:
                digits = line.split(b";", 1)[0].strip(b" \t")
                if not 0 < len(digits) <= 16 or digits.translate(None, _HEX_DIGITS):
                    raise BadResponse("the response has an invalid chunk-size line")
                chunk = int(digits, 16)
                if chunk > _MAX_CHUNK_SIZE:
                    raise BadResponse("the response announces an absurd chunk size")
                if chunk:
                    self._chunk_state, self._chunk_left = _DATA, chunk
                else:
                    self._chunk_state = _TRAILERS
            elif not line:  # the blank line after the trailers: the end
                self.done = True
                self._keep_extra(data[at:])
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)
