"""``aichatonline.testing``: a faithful local AiChatOnline server and a forward proxy for tests.

Everything here runs on loopback in a background thread and needs only the standard library,
so it serves sync code, asyncio and trio alike, in this project's tests, its benchmarks, the
CLI demo and users' own test suites::

    from aichatonline.testing import Fault, LocalServer

    with LocalServer(pieces=3) as server:
        server.inject(Fault(status=503, retry_after="1"))  # the next chat request gets a 503
        ...  # point a client at server.base_url

- ``LocalServer``: the server (token endpoint, streaming chat endpoint, request recording,
  fault injection by ``inject()``, ``always`` or an ``X-Fault`` request header).
  The header takes ``Fault`` field names separated by ``;``, booleans by bare name, so a
  server started with ``python -m aichatonline.testing`` can be driven from ``curl``::

      curl -N -H 'UniqueId: TOKEN' -H 'X-Fault: drop_after=3; trickle' \
           -d '{"conversationId": "x", "prompt": "Hi"}' URL/aichatonline/api/chat/gpt
- ``ServerOptions``: how the server answers (pieces, piece size, delay, token lifetime, ...),
  taken as ``options=`` or as keyword arguments by ``LocalServer``, ``run_server`` and
  ``spawn_server``, and as flags by ``python -m aichatonline.testing``.
- ``Fault``: one scripted misbehaviour (status, Cloudflare page, drop, stall, malformed lines,
  in-band error, trickle, token expiry, variant answer).
- ``FaultMix``: faults at fixed rates for soak tests (``ServerOptions(fault_mix=...)``, the
  ``--fault-mix`` flag), seeded and dealt once per ``conversationId``, on its first request
  only, so retries succeed and a client knows in advance which streams meet which fault::

      mix = FaultMix(drop=0.01, rate_limit=0.005, stall=0.001, stall_seconds=3, seed=7)
      with LocalServer(fault_mix=mix, record_requests=False) as server:
          ...  # server.mixed_faults counts what was dealt; mix.kind_for(id) says what
- ``reply_for`` / ``pieces_for``: the deterministic answer, to compare a client's result with.
- ``spawn_server`` / ``run_server``: the server in a child process, or in the foreground
  (``python -m aichatonline.testing``).
- ``ForwardProxy``: an HTTP (absolute-form and CONNECT) or SOCKS5 proxy, optionally with
  credentials.

The pytest plugin (``aichatonline.testing.pytest_plugin``, registered automatically) provides
the ``aichatonline_server``, ``aichatonline_base_url`` and ``aichatonline_env`` fixtures.

The names are loaded on first use, so importing this package (as the pytest plugin does in
every test run) costs nothing until a server is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._answers import pieces_for, reply_for
    from ._faults import Fault
    from ._http import RecordedRequest
    from ._mix import FaultMix
    from ._options import ServerOptions
    from ._process import SpawnedServer, run_server, spawn_server
    from ._proxy import ForwardProxy
    from ._server import CHAT_PATH, TOKEN_PATH, LocalServer

__all__ = [
    "CHAT_PATH",
    "TOKEN_PATH",
    "Fault",
    "FaultMix",
    "ForwardProxy",
    "LocalServer",
    "RecordedRequest",
    "ServerOptions",
    "SpawnedServer",
    "pieces_for",
    "reply_for",
    "run_server",
    "spawn_server",
]

_EXPORTS = {
    "._answers": ["pieces_for", "reply_for"],
    "._faults": ["Fault"],
    "._http": ["RecordedRequest"],
    "._mix": ["FaultMix"],
    "._options": ["ServerOptions"],
    "._process": ["SpawnedServer", "run_server", "spawn_server"],
    "._proxy": ["ForwardProxy"],
    "._server": ["CHAT_PATH", "TOKEN_PATH", "LocalServer"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
