"""The benchmark suite of the aichatonline SDK: ``python -m benchmarks`` from the repo root.

It measures, in one run on one machine, how fast the SDK moves streamed text
from the service to the caller, against the reference ways of doing the same
(the raw-socket floors, the original provider's aiohttp code, aiohttp with a reused
session, httpx, openai), and what the OpenAI-compatible gateway adds on top of it:

- ``server``    a fast loopback server for the protocol, run in its own process
- ``stacks``    the SDK and the reference stacks, each turning a chat into pieces
- ``gateway``   the gateway in its own process, and a lean SSE client for it
- ``worker``    one measurement in a fresh interpreter (RSS, orjson blocked, ...)
- ``scenarios`` the six scenarios, their sizes, and how runs are driven
- ``report``    the tables, the targets, PASS/MISS

This package imports nothing heavy at import time: the server process and the
workers import only what they use. See ``benchmarks/README.md``.
"""
