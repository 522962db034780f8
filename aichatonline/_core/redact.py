"""Keeping secrets out of text: the token and proxy credentials. No I/O.

Every message the SDK builds from something a server or a library said
passes through :func:`redact` with the secrets of the moment, so an echoed
token or a URL with credentials never reaches an error message or a log line.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with URL credentials and each of ``secrets`` replaced by ``***``."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
