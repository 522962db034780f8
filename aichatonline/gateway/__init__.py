"""``aichatonline.gateway``: an OpenAI-compatible HTTP gateway to AiChatOnline, through the SDK.

Every OpenAI client and tool (openai-python, LangChain's ``ChatOpenAI``, LlamaIndex, editors'
assistants, curl) can talk to the service through it: ``GET /v1/models``, ``GET
/v1/models/{id}``, ``POST /v1/chat/completions`` (streamed and not), and for those who run
it ``GET /health``, ``GET /ready`` and ``GET /metrics``. It needs the ``gateway`` extra
(Starlette, uvicorn, prometheus_client)::

    pip install "aichatonline[gateway]"
    aichatonline gateway --local                    # try it on the bundled server
    uvicorn --factory aichatonline.gateway:create_app --workers 4

The package is split by concern: ``_app`` (``create_app``: routes, API key, CORS,
lifespan), ``_chat`` (the chat endpoint), ``_sse`` (events and the bounded pipe),
``_errors`` (OpenAI error objects and statuses), ``_observe`` (request ids, access lines,
per-request metrics), ``_metrics`` (Prometheus), ``_worker`` (one worker's state:
readiness and the drain), ``_settings``, ``_logs`` and ``_run`` (uvicorn, workers, their
logging), ``_connections`` (deadlines, the connection budget and closes, on uvicorn's
protocol), ``_descriptors``, ``_refusals`` (``Connection: close``), ``_log_escape`` and
``_cli`` (the ``aichatonline gateway`` command). Importing this package imports neither
Starlette nor uvicorn; ``create_app`` does, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._app import create_app
    from ._settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]

__getattr__, __dir__ = lazy_exports(
    __name__, {"._app": ["create_app"], "._settings": ["GatewaySettings"]}, __all__
)
