"""``python -m aichatonline.testing``: run the local AiChatOnline server in the foreground.

The first line on stdout is exactly the base URL (flushed), so scripts and ``spawn_server``
can read it; requests are logged to stderr with ``-v``. Ctrl-C or SIGTERM stops the server
cleanly with exit code 0.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aichatonline.testing._options import ServerOptions
from aichatonline.testing._process import run_server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aichatonline.testing",
        description="Run a local AiChatOnline-compatible server (for tests and demos).",
        epilog=(
            "Faults can be requested per request with an X-Fault header, e.g. "
            "curl -H 'X-Fault: drop_after=3; trickle' ... (see aichatonline.testing.Fault)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    ServerOptions.add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until SIGINT/SIGTERM and return the exit code."""
    args = _parser().parse_args(argv)
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger = logging.getLogger("aichatonline.testing")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def announce(url: str) -> None:
        print(url, flush=True)

    try:
        run_server(
            args.host, args.port, options=ServerOptions.from_namespace(args), on_ready=announce
        )
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
