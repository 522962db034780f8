"""The I/O layer, written once, async: clients, streams, tokens, the transport over httpx.

Everything here runs on asyncio or trio, over an ``httpx.AsyncClient``. ``aichatonline/_sync/``
is its blocking twin, generated from these files by ``scripts/unasync.py`` (CI checks it is
up to date); what the two really do differently is paired in
``aichatonline/_synchronization.py``.
"""
