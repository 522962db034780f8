"""Command-line values, checked: the argparse ``type=`` of every option that takes a number.

``aichatonline`` (``chat``, ``demo``, ``serve``, ``gateway``) and ``python -m
aichatonline.testing`` take ports, counts and durations. Each kind is written here once, and
its error says what it wanted (``argument --port: '70000' is not a port number (0-65535)``).
:func:`add_service_options` adds the options that say where the service is and how to
reach it, which ``chat``, ``demo`` and ``gateway`` share.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._config import BASE_URL_ENV, PROXY_ENV

__all__ = [
    "COUNT",
    "PORT",
    "POSITIVE_INT",
    "POSITIVE_SECONDS",
    "SECONDS",
    "ValueCheck",
    "add_service_options",
]


@dataclass(frozen=True)
class ValueCheck:
    """What values an option takes: how its text becomes one, a test, and its words.

    An instance is an argparse ``type=``: it converts an option's text, or raises
    ``ArgumentTypeError`` naming what was wanted.
    """

    kind: Callable[[str], Any]
    test: Callable[[Any], bool]
    what: str

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.what}") from None
        if not self.test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.what}")
        return value


PORT = ValueCheck(int, lambda v: 0 <= v <= 65535, "a port number (0-65535)")
COUNT = ValueCheck(int, lambda v: v >= 0, "an integer >= 0")
POSITIVE_INT = ValueCheck(int, lambda v: v > 0, "a positive integer")
#: A duration that must not be zero (a timeout); ``inf`` and ``nan`` are refused.
POSITIVE_SECONDS = ValueCheck(float, lambda v: 0 < v < math.inf, "a positive number")
#: A duration that may be zero (a delay, a grace period).
SECONDS = ValueCheck(float, lambda v: 0 <= v < math.inf, "a number >= 0")


def add_service_options(
    parser: argparse.ArgumentParser, *, title: str, local_help: str, timeout_help: str
) -> argparse._ArgumentGroup:
    """Where the service is and how to reach it: ``--base-url`` or ``--local``, ``--proxy``,
    ``--timeout`` and ``--max-retries``, in a group called ``title`` (returned)."""
    group = parser.add_argument_group(title)
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--base-url", metavar="URL", help=f"the service's base URL (default: ${BASE_URL_ENV})"
    )
    choice.add_argument("--local", action="store_true", help=local_help)
    group.add_argument("--proxy", metavar="URL", help=f"proxy URL (default: ${PROXY_ENV})")
    group.add_argument("--timeout", type=POSITIVE_SECONDS, metavar="SECONDS", help=timeout_help)
    group.add_argument(
        "--max-retries",
        type=COUNT,
        metavar="N",
        help="retries after a failed attempt (default: 2)",
    )
    return group
