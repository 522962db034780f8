"""``stream(keep_text=False)``: the stream keeps the length and a hash of its text, not the text.

What it promises, on the blocking client, asyncio and trio: the pieces are exactly those of
a stream that keeps its text, a dropped answer is resumed exactly (the re-sent prefix is
checked against the hash), ``text`` is a clear error, and an interrupted stream says how
much it delivered (``StreamInterrupted.delivered``) with ``partial=""``.
"""

from __future__ import annotations

import pytest

from aichatonline import InvalidRequestError, StreamInterrupted
from aichatonline.testing import Fault, LocalServer
from tests.faces import Api, backend_of
from tests.helpers import PROMPT

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


async def test_a_lean_stream_gives_the_same_pieces(
    api: Api, client: object, server: LocalServer
) -> None:
    stream = client.stream(PROMPT, keep_text=False)  # type: ignore[attr-defined]
    assert await api.drain(stream) == server.pieces_for(PROMPT)
    assert stream.completed
    with pytest.raises(InvalidRequestError, match="keep_text"):
        stream.text  # noqa: B018 - the property is the test


async def test_a_lean_stream_resumes_a_dropped_answer_exactly(
    api: Api, client: object, server: LocalServer
) -> None:
    server.inject(Fault(drop_after=3), Fault(drop_after=5))
    stream = client.stream(PROMPT, keep_text=False)  # type: ignore[attr-defined]
    assert await api.drain(stream) == server.pieces_for(PROMPT)
    assert stream.retries == 2


async def test_a_lean_stream_that_cannot_resume_says_how_much_it_delivered(
    api: Api, client: object, server: LocalServer
) -> None:
    server.inject(Fault(drop_after=3), Fault(variant=True))  # the re-sent answer differs
    stream = client.stream(PROMPT, keep_text=False)  # type: ignore[attr-defined]
    pieces, error = await api.collect(stream)
    assert isinstance(error, StreamInterrupted), repr(error)
    assert error.partial == ""
    assert error.delivered == len("".join(pieces)) == len("".join(server.pieces_for(PROMPT)[:3]))


async def test_keep_text_must_be_a_bool(client: object) -> None:
    with pytest.raises(InvalidRequestError, match="keep_text"):
        client.stream(PROMPT, keep_text="no")  # type: ignore[attr-defined]
