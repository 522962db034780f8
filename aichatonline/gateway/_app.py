"""``create_app(...)``: the gateway as an ASGI application (Starlette), for any ASGI server.

Layers, outermost first: the observer (request ids, the drain's refusals, access log,
metrics: ``_observe.py``), ``Connection: close`` on refusals (``_refusals.py``),
Starlette's error handling, CORS (only with ``cors_origins``), the API-key check (with an
``api_key``) or else the loopback check (without one, unless ``no_auth``), then Starlette's
router (which never redirects: a URL built from the ``Host`` header would be the client's
to choose). ``/health`` and ``/ready`` pass both checks, for load balancers; ``/metrics``
follows the same rule as ``/v1``::

    GET  /v1/models              the provider's models and aliases (a ModelPage)
    GET  /v1/models/{id}         one of them, or 404 model_not_found
    POST /v1/chat/completions    see ``_chat.py``
    GET  /health                 liveness: {"status": "ok"}; 503 while draining
    GET  /ready                  readiness: 200 when the service answers; else 503 and why
    GET  /metrics                Prometheus text (``_metrics.py``)

Any other path is a 404 and another method a 405, as OpenAI error objects. The lifespan makes
the worker's one SDK ``AsyncClient`` at startup and closes it at shutdown, so each worker
process (``--workers N``, gunicorn's uvicorn workers) has its own pool and token cache;
under ``aichatonline gateway`` it also turns SIGTERM/SIGINT into a drain (``_worker.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import AsyncClient
from .._core import MODEL_ALIASES, MODELS
from .._exceptions import InvalidRequestError
from .._openai import check_model
from ..types import Model, ModelPage
from . import _log_escape
from ._chat import ChatEndpoint
from ._errors import INVALID_API_KEY, LOOPBACK_ONLY, Failure, failure_for
from ._memory import UPSTREAM_SOCKET_OPTIONS
from ._observe import Observer, record_of
from ._refusals import CloseRefusals
from ._settings import GatewaySettings, is_loopback
from ._sse import dumps
from ._worker import Gateway, drain_on_signals

__all__ = ["AIOHTTP_HINT", "aiohttp_missing", "app_from_env", "check_settings", "create_app"]

#: ``created`` of the models we list: gpt-4o-mini's release (2024-07-18), as OpenAI lists it.
MODELS_CREATED = 1721172741
OWNED_BY = "aichatonline"
_OPEN_PATHS = frozenset({"/health", "/ready"})
AIOHTTP_HINT = (
    "aiohttp=True (--aiohttp) needs aichatonline.DefaultAioHttpClient and the aiohttp extra: "
    'pip install "aichatonline[aiohttp]"'
)


class _GatewayApp(Starlette):
    """Starlette with the observer outside everything, Starlette's error handling included."""

    def build_middleware_stack(self) -> ASGIApp:
        return Observer(super().build_middleware_stack(), self.state.gateway)


def create_app(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    proxy: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    max_concurrency: int | None = None,
    max_body_bytes: int | None = None,
    buffer_chars: int | None = None,
    cors_origins: Sequence[str] | None = None,
    trust_env: bool | None = None,
    no_auth: bool | None = None,
    sse_keepalive: float | None = None,
    shutdown_timeout: float | None = None,
    ready_ttl: float | None = None,
    log_format: str | None = None,
    drop_params: bool | None = None,
    aiohttp: bool | None = None,
    header_timeout: float | None = None,
    keep_alive_timeout: float | None = None,
    max_connections: int | None = None,
    forwarded_allow_ips: Sequence[str] | str | None = None,
    settings: GatewaySettings | None = None,
) -> Starlette:
    """The OpenAI-compatible gateway as an ASGI app: ``uvicorn --factory
    aichatonline.gateway:create_app`` (configured by the environment) or your own call.

    Every argument left out (or ``None``) is read from its environment variable,
    ``AICHATONLINE_GATEWAY_<NAME>`` (``AICHATONLINE_GATEWAY_MAX_CONCURRENCY=50``), else its
    default; ``base_url`` and ``proxy`` from the SDK's ``AICHATONLINE_BASE_URL`` and
    ``AICHATONLINE_PROXY``.

    - ``api_key``: the key clients must send (``Authorization: Bearer KEY``); default
      ``$AICHATONLINE_GATEWAY_API_KEY``. Neither: no key is asked for, and only clients on
      loopback are served (``scope["client"]`` a loopback address, or absent as on a Unix
      socket); others get 403 ``api_key_required``, so a server listening on
      ``0.0.0.0`` without a key is not an open relay. ``no_auth=True`` serves every client
      without a key (behind a proxy that authenticates them itself).
    - ``base_url``, ``proxy``, ``timeout`` (seconds, as the SDK's ``timeout=``),
      ``max_retries``: the SDK client's settings (defaults: the SDK's, which read
      ``AICHATONLINE_BASE_URL`` and ``AICHATONLINE_PROXY``).
    - ``max_concurrency``: requests on ``/v1/chat/completions`` at once in this worker;
      past it, 429. ``max_body_bytes``: the request body limit (413).
    - ``buffer_chars``: the text one stream may hold for a slow client (then the gateway
      stops reading from the service). ``cors_origins``: allowed browser origins (none:
      no CORS headers at all). ``trust_env=False``: no proxy from the environment (for a
      server on loopback).
    - ``sse_keepalive``: seconds of silence after which a stream gets an SSE comment
      (``: keep-alive``); its head then goes out at once, and a failure before the first
      piece is an error event and ``data: [DONE]``. Default: off (the status tells).
    - ``shutdown_timeout``: seconds running requests get once SIGTERM/SIGINT asks the
      gateway to stop (default 30); then open streams end with an error event
      (``gateway_shutting_down``) and ``data: [DONE]``.
    - ``ready_ttl``: ``/ready`` is 200 for this many seconds after the service last answered
      (a token fetch, or a chat request's first piece); after that it asks again (default 30).
    - ``log_format``: ``"text"`` (``key=value`` access lines) or ``"json"``.
    - ``drop_params``: accept and ignore unknown request parameters (named in the
      ``x-aichatonline-dropped-params`` response header) instead of a 400.
    - ``aiohttp``: the SDK client carries its requests on ``DefaultAioHttpClient()``.
    - ``header_timeout``, ``keep_alive_timeout``, ``max_connections``,
      ``forwarded_allow_ips``: the connection limits ``aichatonline gateway`` serves with
      (see docs/gateway.md; defaults 10 s, 5 s, sized from the descriptor limit, nobody).
      They belong to the server, not the app: under another server, set its own.
    - ``settings``: all of the above as one :class:`GatewaySettings` (the arguments are
      then ignored).

    Bad settings raise :class:`~aichatonline.InvalidRequestError` now, before any I/O.
    """
    if settings is None:
        settings = GatewaySettings.from_environ(
            api_key=api_key,
            base_url=base_url,
            proxy=proxy,
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_body_bytes=max_body_bytes,
            buffer_chars=buffer_chars,
            cors_origins=None if cors_origins is None else tuple(cors_origins),
            trust_env=trust_env,
            no_auth=no_auth,
            sse_keepalive=sse_keepalive,
            shutdown_timeout=shutdown_timeout,
            ready_ttl=ready_ttl,
            log_format=log_format,
            drop_params=drop_params,
            aiohttp=aiohttp,
            header_timeout=header_timeout,
            keep_alive_timeout=keep_alive_timeout,
            max_connections=max_connections,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    check_settings(settings)
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _log_escape.install()  # once the server configured its logging, under any server
        http_client = _aiohttp_client() if settings.aiohttp else _upstream_client(settings)
        options = settings.client_options()
        options.pop("proxy", None)  # the httpx client's
        options.pop("trust_env", None)
        client = AsyncClient(http_client=http_client, **options)
        gateway.client = client
        try:
            async with anyio.create_task_group() as group:
                gateway.background = group
                if gateway.handle_signals:
                    await group.start(drain_on_signals, gateway)
                yield
                group.cancel_scope.cancel()
        finally:
            gateway.client = None
            gateway.background = None
            await client.aclose()
            await http_client.aclose()  # ours: the SDK leaves a given client open
            gateway.metrics.process_stopping()

    middleware = [Middleware(CloseRefusals)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                # Browser clients (openai's JS SDK) send x-stainless-* headers too; the key
                # travels in a header, never in cookies, so any request header may be allowed.
                allow_headers=["*"],
            )
        )
    if settings.api_key is not None:
        middleware.append(Middleware(_KeyCheck, api_key=settings.api_key))
    elif not settings.no_auth:
        middleware.append(Middleware(_LoopbackOnly))
    app = _GatewayApp(
        routes=[
            Route("/v1/models", _list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", _get_model, methods=["GET"]),
            Route("/v1/chat/completions", ChatEndpoint(gateway), methods=["POST"]),
            Route("/health", _health, methods=["GET"]),
            Route("/ready", _ready, methods=["GET"]),
            Route("/metrics", _metrics, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # /health/ is a 404, not a redirect to Host's URL
    app.state.gateway = gateway
    return app


def check_settings(settings: GatewaySettings) -> None:
    """Raise :class:`~aichatonline.InvalidRequestError` for settings the SDK refuses (no I/O)."""
    AsyncClient(**settings.client_options())


def app_from_env() -> Starlette:
    """The app for a worker process started by ``aichatonline gateway --workers N``."""
    app = create_app(settings=GatewaySettings.from_env())
    app.state.gateway.handle_signals = True  # the drain on SIGTERM, as with one worker
    return app


def aiohttp_missing() -> bool:
    """Whether ``aiohttp=True`` would fail: no ``DefaultAioHttpClient``, or not its extra."""
    try:
        from .. import DefaultAioHttpClient  # type: ignore[attr-defined,unused-ignore]  # noqa: F401
    except ImportError:
        return True
    return any(importlib.util.find_spec(name) is None for name in ("aiohttp", "httpx_aiohttp"))


def _upstream_client(settings: GatewaySettings) -> Any:
    """The SDK client's httpx client: the SDK's defaults, small receive buffers (a slow
    client's stream then holds little, ``_memory.py``), the proxy of the settings."""
    from .. import DefaultAsyncHttpxClient
    from .._config import resolve_proxy

    proxy = resolve_proxy(settings.proxy, trust_env=settings.trust_env)
    return DefaultAsyncHttpxClient(
        proxy=None if proxy is None else proxy.for_httpx(),
        trust_env=settings.trust_env and proxy is None,
        socket_options=UPSTREAM_SOCKET_OPTIONS,
    )


def _aiohttp_client() -> Any:
    """``aichatonline.DefaultAioHttpClient()``, or a clear error saying what is missing."""
    try:
        from .. import DefaultAioHttpClient  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        raise InvalidRequestError(AIOHTTP_HINT, field="aiohttp") from exc
    try:
        return DefaultAioHttpClient()
    except ImportError as exc:  # the name exists, the extra (httpx-aiohttp) does not
        raise InvalidRequestError(AIOHTTP_HINT, field="aiohttp") from exc


# --------------------------------------------------------------------------- the key


class _KeyCheck:
    """401 unless ``Authorization: Bearer KEY`` matches (constant time; the key never logged)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._digest = hashlib.sha256(api_key.encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
                    break
            scheme, _, token = given.partition(b" ")
            # Hashing first makes the comparison's time independent of the key's length too.
            digest = hashlib.sha256(token.strip()).digest()
            if scheme.lower() != b"bearer" or not hmac.compare_digest(digest, self._digest):
                await _refuse(INVALID_API_KEY, scope, send)
                return
        await self.app(scope, receive, send)


class _LoopbackOnly:
    """Without an API key: 403 unless the client is on loopback, judged on each request.

    ``scope["client"]`` is the peer's address (behind a reverse proxy on this machine, the
    address uvicorn takes from ``X-Forwarded-For`` when it trusts the proxy). ``None`` (uvicorn
    on a Unix socket, which only processes of this machine can reach) counts as loopback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            client = scope.get("client")
            if client is not None and not (client and is_loopback(str(client[0]))):
                await _refuse(LOOPBACK_ONLY, scope, send)
                return
        await self.app(scope, receive, send)


async def _refuse(failure: Failure, scope: Scope, send: Send) -> None:
    record = record_of(scope)
    record.outcome = "refused"
    await failure.send(send, record.request_id)


# --------------------------------------------------------------------------- small routes


def _json(obj: dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json")


def _models() -> list[str]:
    return [*MODELS, *(alias for alias in MODEL_ALIASES if alias not in MODELS)]


def _model(name: str) -> Model:
    return Model(id=name, created=MODELS_CREATED, owned_by=OWNED_BY)


async def _list_models(request: Request) -> Response:
    return _json(ModelPage(data=[_model(name) for name in _models()]).to_dict())


async def _get_model(request: Request) -> Response:
    name = request.path_params["model_id"]
    try:
        check_model(name)
    except ValueError as exc:  # ModelNotFoundError: 404 model_not_found
        return _error(request, failure_for(exc))
    return _json(_model(name).to_dict())


async def _health(request: Request) -> Response:
    # While the worker drains, the observer answers 503 before this route is reached.
    return _json({"status": "ok"})


async def _ready(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    failure = await gateway.not_ready()
    if failure is not None:
        record_of(request.scope).outcome = "upstream_error"
        return _error(request, failure)
    return _json({"status": "ready"})


async def _metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    body, content_type = gateway.metrics.render()
    return Response(body, media_type=content_type)


def _error(request: Request, failure: Failure, headers: dict[str, str] | None = None) -> Response:
    body = failure.body(record_of(request.scope).request_id)
    all_headers = {name.decode(): value.decode() for name, value in failure.headers}
    return Response(body, failure.status, {**all_headers, **(headers or {})}, "application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, request.url.path
    if exc.status_code == 404:
        failure = Failure.invalid(404, f"Invalid URL ({method} {path})", code="unknown_url")
    elif exc.status_code == 405:
        failure = Failure.invalid(
            405, f"Method {method} is not allowed on {path}", code="method_not_allowed"
        )
    else:
        failure = Failure.invalid(exc.status_code, str(exc.detail))
    return _error(request, failure, dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(request, failure_for(exc))  # failure_for logs it
