"""The benchmark suite of the aichatonline SDK: ``python -m benchmarks`` from the repo root.

It measures, in one run on one machine, how fast the SDK moves streamed text
from the service to the caller, against the reference ways of doing the same
(the raw-socket floors, the original provider's aiohttp code, aiohttp with a reused
session, httpx, openai), and what the OpenAI-compatible gateway adds on top of it:

- ``server``     a fast loopback server for the protocol, run in its own process
- ``answers``    its precomputed answers, in several line shapes
- ``chat``       what every stack sends, and the shape of a stack
- ``stacks``     the SDK's stacks, and every stack by name
- ``references`` the reference stacks (raw-socket floors, httpx, aiohttp, openai, gateway)
- ``gateway``    the gateway in its own process, and a lean SSE client for it
- ``worker``     one measurement in a fresh interpreter (RSS, orjson blocked, ...)
- ``drains``     the loop that drains every stack's stream
- ``profilers``  cProfile, pyinstrument or tracemalloc around a worker's timed section
- ``scenarios``  the six scenarios' sizes, and how runs are driven
- ``rows``       which stacks each scenario runs, in which settings
- ``report``     the tables
- ``targets``    the targets, PASS/MISS
- ``soak``       the reliability soak, ``python -m benchmarks soak`` (streams under faults)

This package imports nothing heavy at import time: the server process and the
workers import only what they use. See ``benchmarks/README.md``.
"""
