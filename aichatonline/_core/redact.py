"""Keeping secrets out of text: the token, proxy credentials, URL credentials. No I/O.

Every message the SDK builds from something a server or a library said passes through
:func:`redact` with the secrets of the moment, so an echoed token or a URL with
credentials never reaches an error message or a log line. A secret is masked in every
form a message may show it in: as it is, percent-encoded (as in a URL), and escaped as
Python's ``repr`` of the text or of its bytes would escape it (as in httpcore's logs).

A secret of at least :data:`MIN_ANYWHERE` characters is masked wherever it appears. A
shorter one would also match ordinary words (a password ``t`` in "Connection refused"),
so it is masked only where it can stand as a credential: in the userinfo of a URL (always
masked whole) and in the value of an ``Authorization``, ``Proxy-Authorization`` or
``UniqueId`` header.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

__all__ = ["redact", "sanitized", "secret_forms"]

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s]*)@")
# A credential header and its value, as text, a dict's repr or httpcore's byte pairs show it:
# ``Authorization: Basic x``, ``'authorization': 'Bearer x'``, ``(b'UniqueId', b'x')``.
_CREDENTIAL_HEADER = re.compile(
    r"(?i)(?P<name>\b(?:proxy-)?authorization|\buniqueid)"
    r"(?P<separator>['\"]?\s*[:=,]\s*b?['\"]?)(?P<value>[^'\"\r\n]*)"
)
MASK = "***"
#: The length from which a secret is masked wherever it appears (shorter ones: see above).
MIN_ANYWHERE = 4


@functools.lru_cache(maxsize=256)
def secret_forms(secret: str) -> tuple[str, ...]:
    """The ways ``secret`` can appear in text, longest first."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "surrogateescape"))[2:-1],
    }
    return tuple(sorted((form for form in forms if form), key=len, reverse=True))


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with URL credentials and each of ``secrets`` (in any form) replaced by ``***``.

    A secret shorter than :data:`MIN_ANYWHERE` is masked only where a credential stands:
    in a URL's userinfo and in the value of a credential header.
    """
    short: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        if len(secret) < MIN_ANYWHERE:
            short.append(secret)
            continue
        text = _mask(text, secret)
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    if short:
        text = _CREDENTIAL_HEADER.sub(lambda match: _mask_header(match, short), text)
    return text


def _mask(text: str, secret: str) -> str:
    for form in secret_forms(secret):
        if form in text:
            text = text.replace(form, MASK)
    return text


def _mask_header(match: re.Match[str], secrets: list[str]) -> str:
    value = match["value"]
    scheme, space, credentials = value.partition(" ")
    if not space:  # no auth scheme before the credentials (the UniqueId header)
        scheme, credentials = "", value
    for secret in sorted(secrets, key=len, reverse=True):
        credentials = _mask(credentials, secret)
    return f"{match['name']}{match['separator']}{scheme}{space}{credentials}"


def sanitized(exc: BaseException, *secrets: str | None) -> BaseException:
    """``exc``, or a copy whose message (and whose causes' messages) hide ``secrets``.

    Errors from libraries are chained to ours as ``__cause__``; a traceback prints their
    messages too, and some repeat what the server sent (httpx: ``illegal chunk header:
    bytearray(b'...')``). The copy keeps the type and the traceback.
    """
    secrets_given = tuple(s for s in secrets if s)
    return _sanitized(exc, secrets_given, 0)


def _sanitized(exc: BaseException, secrets: tuple[str, ...], depth: int) -> BaseException:
    cause = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    clean_cause = _sanitized(cause, secrets, depth + 1) if cause is not None and depth < 8 else None
    text = str(exc)
    leaks = redact(text, *secrets) != text or any(
        isinstance(arg, str) and redact(arg, *secrets) != arg for arg in exc.args
    )
    if not leaks and clean_cause is cause:
        return exc
    if leaks:
        try:
            copy = type(exc).__new__(type(exc))
            copy.__dict__.update(getattr(exc, "__dict__", {}))
            if isinstance(exc, OSError) and isinstance(copy, OSError):
                _copy_os_error(exc, copy, secrets)
            else:
                copy.args = (redact(text, *secrets),)
        except (TypeError, AttributeError):
            copy = RuntimeError(f"{type(exc).__name__}: {redact(text, *secrets)}")
        copy.__traceback__ = exc.__traceback__
    else:
        copy = exc
    if clean_cause is not cause:
        copy.__cause__ = clean_cause
        copy.__suppress_context__ = True
    return copy


def _copy_os_error(exc: OSError, copy: OSError, secrets: tuple[str, ...]) -> None:
    """Fill ``copy`` as ``exc`` with its texts masked: ``errno``, ``strerror`` and the file
    names kept apart, as ``str()`` and code that reads ``errno`` expect them."""

    def clean(value: object) -> object:
        return redact(value, *secrets) if isinstance(value, str) else value

    copy.args = tuple(clean(arg) for arg in exc.args)
    # Set only when the original has them: a file name set to None would still be shown.
    for name in ("errno", "strerror", "filename", "filename2"):
        value = getattr(exc, name)
        if value is not None:
            setattr(copy, name, clean(value))
