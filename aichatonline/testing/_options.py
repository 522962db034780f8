"""``ServerOptions``: how the local server answers, written once for every way to start it.

``LocalServer(...)``, ``run_server(...)``, ``spawn_server(...)``, ``python -m
aichatonline.testing`` and ``aichatonline serve`` all take these options. The dataclass is the
one list: each field carries its check and, when it has one, its command-line flag, from which
``add_arguments`` builds the argparse options, ``from_namespace`` reads them back and
``to_argv`` renders them for a child process. The keyword arguments of the three functions
are typed by ``ServerOptionFields``, a TypedDict of the same fields (a test keeps the two
lists equal).

This module imports no server code (``_mix.py`` is data and a hash), so a command line can
describe the options cheaply.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .._arguments import COUNT, POSITIVE_INT, SECONDS, ValueCheck
from ._mix import FaultMix

__all__ = ["ServerOptionFields", "ServerOptions", "resolve_options"]


_MIX = ValueCheck(
    FaultMix.parse,
    lambda v: isinstance(v, FaultMix),
    "a FaultMix (text form: 'drop=1%, rate_limit=0.5%, seed=7')",
)


def _option(
    default: Any, check: ValueCheck | None = None, flag: str = "", metavar: str = "", text: str = ""
) -> Any:
    """A field with its check and command-line flag (no flag: not on the command line)."""
    metadata = {"check": check, "flag": flag, "metavar": metavar or None, "help": text}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """How ``LocalServer`` answers; every field is checked here, once.

    ``LocalServer``, ``run_server`` and ``spawn_server`` take one as ``options=`` and the
    fields as keyword arguments (which override ``options``). A running ``LocalServer`` exposes
    each field as an attribute that may be set (it applies from the next request).
    """

    pieces: int | None = _option(
        None, COUNT, "--pieces", "N", "pieces per answer (default: just enough for the reply once)"
    )
    """Pieces per answer (None: the reply exactly once)."""
    piece_size: int = _option(
        8, POSITIVE_INT, "--piece-size", "CHARS", "characters per piece (%(default)s)"
    )
    """Characters per piece."""
    delay: float = _option(0.0, SECONDS, "--delay", "SECONDS", "pause between pieces (%(default)s)")
    """Seconds between streamed lines."""
    token_ttl: float | None = _option(
        None, SECONDS, "--token-ttl", "SECONDS", "lifetime of an issued token (default: forever)"
    )
    """Lifetime of a newly issued token in seconds (None: forever)."""
    require_token: bool = _option(
        True, flag="--no-require-token", text="accept chat requests without a valid UniqueId"
    )
    """Whether the chat endpoint checks the ``UniqueId`` header."""
    record_requests: bool = _option(True)
    """Whether ``LocalServer.requests`` keeps every request (turn off for long runs). No flag:
    a server in the foreground or in a child process never records."""
    # ``_option`` returns a dataclasses.field whose default is None (ruff cannot see that).
    fault_mix: FaultMix | None = _option(  # noqa: RUF009
        None,
        _MIX,
        "--fault-mix",
        "MIX",
        "faults at fixed rates, once per conversation: 'drop=1%%, rate_limit=0.5%%, "
        "unavailable=0.5%%, expire_token=0.2%%, malformed=0.1%%, stall=0.1%%, "
        "stall_seconds=3, seed=7' (see aichatonline.testing.FaultMix)",
    )
    """Faults dealt at fixed rates, on each conversation's first request (``FaultMix``)."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            check: ValueCheck | None = spec.metadata["check"]
            value = getattr(self, spec.name)
            if check is not None and value is not None and not check.test(value):
                what = f"None or {check.what}" if spec.default is None else check.what
                raise ValueError(f"{spec.name} must be {what}, got {value!r}")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add a flag for every field that has one (``--pieces N``, ``--no-require-token``)."""
        for spec in dataclasses.fields(cls):
            flag, check = spec.metadata["flag"], spec.metadata["check"]
            if not flag:
                continue
            if check is None:  # a switch: the flag turns the default off
                action = "store_false" if spec.default else "store_true"
                parser.add_argument(flag, dest=spec.name, action=action, help=spec.metadata["help"])
            else:
                parser.add_argument(
                    flag,
                    dest=spec.name,
                    type=check,
                    default=spec.default,
                    metavar=spec.metadata["metavar"],
                    help=spec.metadata["help"],
                )

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> ServerOptions:
        """The options parsed by a parser that ``add_arguments`` prepared."""
        names = [spec.name for spec in dataclasses.fields(cls) if hasattr(args, spec.name)]
        return cls(**{name: getattr(args, name) for name in names})

    def to_argv(self) -> list[str]:
        """The flags that reproduce these options (those that differ from the defaults)."""
        argv: list[str] = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if not spec.metadata["flag"] or value == spec.default:
                continue
            argv.append(spec.metadata["flag"])
            if not isinstance(value, bool):
                argv.append(str(value))
        return argv


class ServerOptionFields(TypedDict, total=False):
    """The fields of ``ServerOptions`` as keyword arguments (for ``**options`` signatures)."""

    pieces: int | None
    piece_size: int
    delay: float
    token_ttl: float | None
    require_token: bool
    record_requests: bool
    fault_mix: FaultMix | None


def resolve_options(options: ServerOptions | None, changes: ServerOptionFields) -> ServerOptions:
    """``options`` (or the defaults) with the fields in ``changes`` replaced, checked."""
    if options is None:
        return ServerOptions(**changes)
    if not isinstance(options, ServerOptions):
        raise TypeError(f"options must be a ServerOptions, got {options!r}")
    return dataclasses.replace(options, **changes) if changes else options
