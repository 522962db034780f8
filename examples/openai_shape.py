"""OpenAI's shape: ``client.chat.completions.create(...)`` and its objects.

    python examples/openai_shape.py

Runs against ``AICHATONLINE_BASE_URL`` when it is set, else against the bundled local
server, started here: no network.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import aichatonline
from aichatonline import Client
from aichatonline.testing import LocalServer


@contextlib.contextmanager
def service() -> Iterator[str | None]:
    """The base URL to use: None (the client reads AICHATONLINE_BASE_URL), or a local server's."""
    if os.environ.get("AICHATONLINE_BASE_URL"):
        yield None
    else:
        with LocalServer() as server:
            yield server.base_url


def main(base_url: str | None) -> None:
    messages = [{"role": "user", "content": "Say hello"}]
    with Client(base_url=base_url) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            temperature=0.2,  # accepted, ignored
        )
        print(completion.choices[0].message.content)
        print(json.dumps(completion.to_dict())[:120], "...")  # exactly OpenAI's JSON

        with client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True
        ) as chunks:
            for chunk in chunks:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()

        for refused in ({"model": "gpt-5"}, {"n": 2}, {"tools": [{"type": "function"}]}):
            arguments = {"model": "gpt-4o-mini", "messages": messages, **refused}
            try:
                client.chat.completions.create(**arguments)
            except aichatonline.InvalidRequestError as exc:  # ModelNotFoundError is one too
                print(f"{type(exc).__name__} ({exc.field}): {exc}")


if __name__ == "__main__":
    with service() as url:
        main(url)
