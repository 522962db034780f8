"""``create_app(...)``: the gateway as an ASGI application (Starlette), for any ASGI server.

Layers, outermost first: ``Connection: close`` on refusals (``_refusals.py``), CORS (only
with ``cors_origins``), the API-key check (with an ``api_key``) or else the loopback check
(without one, unless ``no_auth``), then Starlette's router (which never redirects: a URL
built from the ``Host`` header would be the client's to choose). ``/health`` passes both
checks, for load balancers::

    GET  /v1/models              the provider's models and aliases (a ModelPage)
    GET  /v1/models/{id}         one of them, or 404 model_not_found
    POST /v1/chat/completions    see ``_chat.py``
    GET  /health                 {"status": "ok"}

Any other path is a 404 and another method a 405, as OpenAI error objects. The lifespan makes
the worker's one SDK ``AsyncClient`` at startup and closes it at shutdown, so each worker
process (``--workers N``, gunicorn's uvicorn workers) has its own pool and token cache.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

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
from .._openai import check_model
from ..types import Model, ModelPage
from . import _log_escape
from ._chat import ChatEndpoint, Gateway
from ._errors import INVALID_API_KEY, LOOPBACK_ONLY, Failure, failure_for
from ._refusals import CloseRefusals
from ._settings import (
    API_KEY_ENV,
    DEFAULT_BUFFER_CHARS,
    DEFAULT_MAX_BODY_BYTES,
    GatewaySettings,
    connection_options,
    is_loopback,
)
from ._settings import DEFAULT_MAX_CONCURRENCY as _MAX_CONCURRENCY
from ._sse import dumps

__all__ = ["app_from_env", "create_app"]

#: ``created`` of the models we list: gpt-4o-mini's release (2024-07-18), as OpenAI lists it.
MODELS_CREATED = 1721172741
OWNED_BY = "aichatonline"
_OPEN_PATHS = frozenset({"/health"})


def create_app(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    proxy: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    max_concurrency: int = _MAX_CONCURRENCY,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    buffer_chars: int = DEFAULT_BUFFER_CHARS,
    cors_origins: Sequence[str] = (),
    trust_env: bool = True,
    no_auth: bool = False,
    header_timeout: float | None = None,
    keep_alive_timeout: float | None = None,
    max_connections: int | None = None,
    forwarded_allow_ips: Sequence[str] | str | None = None,
    settings: GatewaySettings | None = None,
) -> Starlette:
    """The OpenAI-compatible gateway as an ASGI app: ``uvicorn --factory
    aichatonline.gateway:create_app`` (configured by the environment) or your own call.

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
    - ``header_timeout``, ``keep_alive_timeout``, ``max_connections``,
      ``forwarded_allow_ips``: the connection limits ``aichatonline gateway`` serves with
      (see docs/gateway.md; defaults: ``$AICHATONLINE_GATEWAY_HEADER_TIMEOUT`` and the other
      ``AICHATONLINE_GATEWAY_*`` variables, else 10 s, 5 s, sized from the descriptor
      limit, nobody). They belong to the server, not the app: under another server, set
      its own.
    - ``settings``: all of the above as one :class:`GatewaySettings` (the arguments are
      then ignored).

    Bad settings raise :class:`~aichatonline.InvalidRequestError` now, before any I/O.
    """
    if settings is None:
        if api_key is None:
            api_key = os.environ.get(API_KEY_ENV) or None
        settings = GatewaySettings(
            api_key=api_key,
            base_url=base_url,
            proxy=proxy,
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_body_bytes=max_body_bytes,
            buffer_chars=buffer_chars,
            cors_origins=tuple(cors_origins),
            trust_env=trust_env,
            no_auth=no_auth,
            **connection_options(
                header_timeout=header_timeout,
                keep_alive_timeout=keep_alive_timeout,
                max_connections=max_connections,
                forwarded_allow_ips=forwarded_allow_ips,
            ),
        )
    AsyncClient(**settings.client_options())  # check the SDK settings now (no I/O yet)
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _log_escape.install()  # once the server configured its logging, under any server
        client = AsyncClient(**settings.client_options())
        gateway.client = client
        try:
            yield
        finally:
            gateway.client = None
            await client.aclose()

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
    app = Starlette(
        routes=[
            Route("/v1/models", _list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", _get_model, methods=["GET"]),
            Route("/v1/chat/completions", ChatEndpoint(gateway), methods=["POST"]),
            Route("/health", _health, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # /health/ is a 404, not a redirect to Host's URL
    app.state.gateway = gateway
    return app


def app_from_env() -> Starlette:
    """The app for a worker process started by ``aichatonline gateway --workers N``."""
    return create_app(settings=GatewaySettings.from_env())


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
                await INVALID_API_KEY.send(send)
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
                await LOOPBACK_ONLY.send(send)
                return
        await self.app(scope, receive, send)


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
        failure = failure_for(exc)
        return _json(failure.error.to_dict(), failure.status)
    return _json(_model(name).to_dict())


async def _health(request: Request) -> Response:
    return _json({"status": "ok"})


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
    headers = dict(exc.headers or {})
    return Response(failure.body(), exc.status_code, headers, media_type="application/json")


async def _server_error(request: Request, exc: Exception) -> Response:
    failure = failure_for(exc)  # logs it
    return Response(failure.body(), failure.status, media_type="application/json")
