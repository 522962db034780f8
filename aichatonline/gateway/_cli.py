"""``aichatonline gateway``: serve the OpenAI-compatible gateway from the command line.

:func:`add_parser` registers the subcommand on the main parser (``aichatonline._cli``);
:func:`run` is its command. Neither imports Starlette or uvicorn until the command runs, so
``aichatonline chat`` does not pay for them, and without the ``gateway`` extra the command
says in one line what to install (exit 2). Every flag has an ``AICHATONLINE_GATEWAY_*``
environment variable; a flag given wins over its variable.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
from typing import Any

from .._arguments import (
    PORT,
    POSITIVE_INT,
    POSITIVE_SECONDS,
    SECONDS,
    ValueCheck,
    add_service_options,
)
from .._config import BASE_URL_ENV, PROXY_ENV
from ._settings import (
    API_KEY_ENV,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_READY_TTL,
    DEFAULT_SHUTDOWN_TIMEOUT,
    LOG_FORMATS,
    is_loopback,
    split_addresses,
)

__all__ = ["EXTRA_HINT", "add_parser", "announce_line", "run"]

DEFAULT_PORT = 8000
EXTRA_HINT = 'aichatonline: the gateway needs its extra: pip install "aichatonline[gateway]"'
#: Seconds between the pieces of the bundled server's answers with --local (as ``chat``).
LOCAL_DELAY = 0.02

#: A keep-alive comment more often than each millisecond would be the stream itself.
_KEEPALIVE_SECONDS = ValueCheck(float, lambda v: 1e-3 <= v < math.inf, "a positive number")

#: The variables of the flags that are not gateway settings (where and how many to serve).
HOST_ENV, PORT_ENV, WORKERS_ENV = (f"AICHATONLINE_GATEWAY_{n}" for n in ("HOST", "PORT", "WORKERS"))

_EPILOG = f"""\
environment:
  {API_KEY_ENV}  the API key clients must send (better than --api-key,
                                which other users of this machine can see in ps)
  {BASE_URL_ENV}         the service's base URL
  {PROXY_ENV}            a proxy for the service
  AICHATONLINE_GATEWAY_<FLAG>   any other flag: --max-concurrency 50 is
                                AICHATONLINE_GATEWAY_MAX_CONCURRENCY=50, --drop-params is
                                AICHATONLINE_GATEWAY_DROP_PARAMS=1 (a flag given wins)

Clients use it as they use OpenAI's API:
  export OPENAI_BASE_URL=http://127.0.0.1:{DEFAULT_PORT}/v1 OPENAI_API_KEY=KEY
  curl -N $OPENAI_BASE_URL/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY" \\
       -H "Content-Type: application/json" \\
       -d '{{"model": "gpt-4o-mini", "stream": true, "messages": [{{"role": "user", \\
            "content": "Hello"}}]}}'

It listens on 127.0.0.1 unless told otherwise, and refuses another interface without an
API key (--no-auth to allow it anyway). Without a key (and without --no-auth) it answers
403 to every client not on this machine's loopback. Each worker process has its own SDK
client and stores nothing between requests: add workers, processes or machines behind a
load balancer.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gateway`` on the main parser's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gateway",
        help="serve an OpenAI-compatible API (/v1/chat/completions) backed by the service",
        description="Serve OpenAI's /v1/models and /v1/chat/completions (streamed and not)\n"
        "through the SDK, for any OpenAI client or tool. Needs the gateway extra:\n"
        '  pip install "aichatonline[gateway]"\n'
        "When ready it prints one line to stderr: "
        "aichatonline gateway: serving on http://HOST:PORT/v1",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--host",
        default=env.get(HOST_ENV) or "127.0.0.1",
        help="address to listen on (%(default)s)",
    )
    listen.add_argument(  # a default from the environment is a string: argparse checks it
        "--port",
        type=PORT,
        default=env.get(PORT_ENV) or DEFAULT_PORT,
        help="port to listen on (%(default)s; 0 picks a free one)",
    )
    listen.add_argument(
        "--workers",
        type=POSITIVE_INT,
        default=env.get(WORKERS_ENV) or 1,
        metavar="N",
        help="worker processes, each with its own SDK client (%(default)s)",
    )
    listen.add_argument(
        "--max-concurrency",
        type=POSITIVE_INT,
        metavar="N",
        help=f"chat requests at once per worker; past it, 429 ({DEFAULT_MAX_CONCURRENCY})",
    )
    operate = parser.add_argument_group("operating")
    operate.add_argument(
        "--sse-keepalive",
        type=_KEEPALIVE_SECONDS,
        metavar="SECONDS",
        help="send streams' heads at once and ': keep-alive' after each SECONDS of silence "
        "(default: off)",
    )
    operate.add_argument(
        "--shutdown-timeout",
        type=SECONDS,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, what running requests get before open streams are ended "
        f"({DEFAULT_SHUTDOWN_TIMEOUT:g})",
    )
    operate.add_argument(
        "--ready-ttl",
        type=SECONDS,
        metavar="SECONDS",
        help=f"/ready trusts the service's last answer this long ({DEFAULT_READY_TTL:g})",
    )
    operate.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="access and other log lines as key=value text or JSON (text)",
    )
    operate.add_argument(
        "--drop-params",
        action="store_true",
        default=None,
        help="accept and ignore unknown request parameters (named in a response header)",
    )
    operate.add_argument(
        "--aiohttp",
        action="store_true",
        default=None,
        help="carry the SDK's requests on aiohttp (DefaultAioHttpClient; the aiohttp extra)",
    )
    connections = parser.add_argument_group("connections (per worker)")
    connections.add_argument(
        "--header-timeout",
        type=POSITIVE_SECONDS,
        metavar="SECONDS",
        help="a request head must be complete within this of the accept or of the last "
        "response, or the connection is closed (408 if it had started; "
        f"{DEFAULT_HEADER_TIMEOUT:g})",
    )
    connections.add_argument(
        "--keep-alive-timeout",
        type=POSITIVE_SECONDS,
        metavar="SECONDS",
        help="an idle connection is closed this long after its last response "
        f"({DEFAULT_KEEP_ALIVE_TIMEOUT:g})",
    )
    connections.add_argument(
        "--max-connections",
        type=POSITIVE_INT,
        metavar="N",
        help="open connections at once; past it, 503 and close (default: sized from the "
        "descriptor limit, which is raised to its hard limit)",
    )
    connections.add_argument(
        "--forwarded-allow-ips",
        type=split_addresses,
        metavar="IPS",
        help="comma-separated proxy addresses (or networks, or *) whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed (default: nobody's)",
    )
    guard = parser.add_argument_group("access")
    guard.add_argument(
        "--api-key", metavar="KEY", help=f"the key clients must send (default: ${API_KEY_ENV})"
    )
    guard.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="serve clients on any address without an API key (behind an authenticating proxy)",
    )
    guard.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser requests from ORIGIN (repeatable; default: no CORS at all)",
    )
    add_service_options(
        parser,
        title="the service",
        local_help="start the bundled local server in this process and serve from it (offline)",
        timeout_help="the SDK client's timeout, as its timeout= argument",
    )
    parser.set_defaults(run=run)
    return parser


def announce_line(host: str, port: int) -> str:
    """The line printed to stderr once the gateway listens."""
    shown = f"[{host}]" if ":" in host else host
    return f"aichatonline gateway: serving on http://{shown}:{port}/v1"


def run(args: argparse.Namespace) -> int:
    """The ``gateway`` command: 0 after a clean stop, 1 if it could not start, 2 on bad use."""
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(EXTRA_HINT, file=sys.stderr, flush=True)
        return 2
    from ._run import serve
    from ._settings import GatewaySettings

    settings = GatewaySettings.from_environ(  # bad values: InvalidRequestError (exit 2)
        api_key=args.api_key,
        base_url=args.base_url,
        proxy=args.proxy,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_concurrency=args.max_concurrency,
        cors_origins=args.cors_origin,
        no_auth=args.no_auth,
        sse_keepalive=args.sse_keepalive,
        shutdown_timeout=args.shutdown_timeout,
        ready_ttl=args.ready_ttl,
        log_format=args.log_format,
        drop_params=args.drop_params,
        aiohttp=args.aiohttp,
        header_timeout=args.header_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        max_connections=args.max_connections,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    if settings.api_key is None and not settings.no_auth and not is_loopback(args.host):
        print(
            f"aichatonline: refusing to serve on {args.host} without an API key: anyone who "
            f"reaches it could use it. Set {API_KEY_ENV} (or --api-key), or pass --no-auth.",
            file=sys.stderr,
            flush=True,
        )
        return 2
    if settings.aiohttp:
        from ._app import AIOHTTP_HINT, aiohttp_missing

        if aiohttp_missing():
            print(f"aichatonline: {AIOHTTP_HINT}", file=sys.stderr, flush=True)
            return 2
    verbose, debug = getattr(args, "verbose", 0), getattr(args, "debug", False)

    def on_ready(host: str, port: int) -> None:
        print(announce_line(host, port), file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        if args.workers > 1:  # the workers' metrics add up in one directory
            from ._metrics import metrics_directory

            stack.enter_context(metrics_directory())
        if args.local:
            from ..testing import LocalServer

            server = LocalServer(port=0, delay=LOCAL_DELAY, record_requests=False)
            local_url = stack.enter_context(server).base_url
            settings = dataclasses.replace(
                settings, base_url=local_url, proxy=None, trust_env=False
            )
        started = serve(
            settings,
            host=args.host,
            port=args.port,
            workers=args.workers,
            verbose=verbose,
            debug=debug,
            on_ready=on_ready,
        )
    return 0 if started else 1
