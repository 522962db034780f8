"""Every error the SDK raises, in one tree.

Nothing else escapes a call: httpx, JSON and socket errors are translated at the
transport boundary and chained as ``__cause__``.

    AiChatOnlineError                 root of everything below
    ├── InvalidRequestError           bad input (also a ValueError), raised before any I/O;
    │   │                             .index and .field locate it
    │   └── ModelNotFoundError        a model the provider does not serve; the message names
    │                                 those it does
    └── APIError                      the network or the service failed us
        ├── APIConnectionError        could not connect, or the connection broke (or was closed)
        │   └── APITimeoutError       a time limit ran out; .limit names it, .seconds its value
        ├── APIStatusError            an HTTP status we cannot use: .status_code, .body (its start),
        │   │                         .headers, .method, .url, .retry_after, .retryable
        │   ├── AuthenticationError   401/403 (on chat: still after one token refresh)
        │   ├── BlockedError          403 with a Cloudflare challenge page: bot protection said no
        │   ├── RateLimitError        429/402
        │   └── ServerError           5xx
        ├── ProtocolError             the service answered in a form we cannot read
        ├── ServiceError              an in-band error line in the stream; .code, .message
        └── StreamInterrupted         the call failed after text was delivered (and could not be
                                      resumed exactly); .partial is that text ("" when it was
                                      not kept), .delivered its length, __cause__ says why

Messages never contain the token, proxy credentials or base-URL credentials, and neither do
the messages of the errors chained to ours as ``__cause__``.

Every class is exported by ``aichatonline`` and says so in tracebacks
(``aichatonline.RateLimitError``, not ``aichatonline._exceptions.RateLimitError``: their
``__module__`` is the package, as openai-python does); pickling finds them there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AiChatOnlineError",
    "AuthenticationError",
    "BlockedError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "ServiceError",
    "StreamInterrupted",
]


class AiChatOnlineError(Exception):
    """Root of every error this SDK raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds by calling __init__ with ``args`` alone, which
        # the keyword-only fields below would break: pickle and copy keep the
        # message and every attribute instead.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(
    cls: type[AiChatOnlineError], args: tuple[Any, ...], state: dict[str, Any]
) -> AiChatOnlineError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidRequestError(AiChatOnlineError, ValueError):
    """The caller's input is invalid; nothing was sent.

    ``index`` and ``field`` locate the offending message and key when the
    problem is inside a message list.
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


class ModelNotFoundError(InvalidRequestError):
    """The model is not one the provider serves (``field`` is ``"model"``).

    The message names the models there are. The OpenAI-compatible gateway answers it with
    404 ``model_not_found``, as OpenAI does.
    """


class APIError(AiChatOnlineError):
    """The network or the service did not give us an answer we can use."""


class APIConnectionError(APIError):
    """Could not connect to the service, or the connection broke.

    ``retryable`` says whether the SDK tries again: it does, except when a proxy refused
    the connection for a reason that another attempt cannot mend (a 407: wrong credentials).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class APITimeoutError(APIConnectionError):
    """A time limit ran out.

    ``limit`` names the :class:`~aichatonline.Timeout` field that fired: ``"connect"``,
    ``"read"`` (the longest silence between two reads), ``"write"``, ``"pool"``,
    ``"total"`` (the whole call) or ``"first_piece"`` (from sending the chat request to the
    first text piece); ``seconds`` is its value. ``None`` when not known (a timeout raised by
    your own httpx client).
    """

    def __init__(
        self, message: str, *, limit: str | None = None, seconds: float | None = None
    ) -> None:
        super().__init__(message, retryable=True)
        self.limit = limit
        self.seconds = seconds


class APIStatusError(APIError):
    """The service answered with an HTTP status we cannot use.

    ``body`` holds the start of the response body (at most a few hundred characters),
    enough to see what the server said; ``headers`` the response headers (lower-case
    names); ``method`` and ``url`` the request that got this answer (credentials and
    the token left out). ``retry_after`` is the wait in seconds the server asked for
    with ``Retry-After`` (or ``None``); ``retryable`` whether the SDK retries this status.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        self.method = method
        self.url = url
        self.retry_after = retry_after
        self.retryable = retryable


class AuthenticationError(APIStatusError):
    """The service said 401/403: on chat, still after one token refresh."""


class BlockedError(APIStatusError):
    """The site's bot protection (a Cloudflare challenge) blocked the request."""


class RateLimitError(APIStatusError):
    """Rate limited (429/402). ``retry_after`` is the wait the server asked for, if any."""


class ServerError(APIStatusError):
    """The service failed with a 5xx status."""


class ProtocolError(APIError):
    """The service answered in a form we cannot read.

    A token body without a token, a stream line in strict mode, a 200 answer in which no
    line could be read (an HTML page, an empty body, an encoding we did not ask for), or
    an HTTP response that breaks HTTP's own rules. ``retryable`` says whether the SDK
    tries again (it does once for an answer in which no line could be read).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ServiceError(APIError):
    """An in-band error line in the stream: ``{"code": <not 200>, ...}``."""

    def __init__(self, message: str, *, code: object, service_message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = service_message


class StreamInterrupted(APIError):
    """The call failed after text was delivered, and could not be resumed exactly.

    ``partial`` is exactly the text already delivered to the caller (for
    ``complete()``, the text received so far), or ``""`` when the call was asked not to
    keep it (``keep_text=False``); ``delivered`` is how many characters were delivered,
    in either case; ``__cause__`` is the error that ended the stream (a dropped
    connection, a timeout, an in-band error...).
    """

    def __init__(self, message: str, *, partial: str, delivered: int | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.delivered = len(partial) if delivered is None else delivered


# Tracebacks and reprs name the public path (``aichatonline.RateLimitError``), where users
# import them from; pickle looks classes up by ``__module__`` and ``__qualname__``, and the
# package's lazy ``__getattr__`` serves them there.
for _name in __all__:
    globals()[_name].__module__ = "aichatonline"
del _name
