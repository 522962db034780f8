"""``async with`` for what the SDK closes: the client and its streams.

One base, :class:`AsyncClosing`: ``async with x:`` gives ``x`` and ends with ``x.aclose()`` at
the block's end, however the block ends. Written once, async; ``_sync/closing.py`` is
generated from it (``with`` and ``close()``).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncClosing"]


class AsyncClosing:
    """A base whose ``async with`` block ends with :meth:`aclose`."""

    __slots__ = ()

    async def aclose(self) -> None:
        """Release what the object holds (each subclass says what)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
