"""The OpenAI-compatible gateway, used by the ``openai`` package.

    pip install ".[gateway]" openai
    python examples/gateway_openai.py

Starts ``aichatonline gateway`` in a child process (in front of ``AICHATONLINE_BASE_URL``
when it is set, else of the bundled local server: no network), waits for the line that
says where it listens, talks to it with ``openai.OpenAI``, and stops it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator

import openai


@contextlib.contextmanager
def gateway() -> Iterator[str]:
    """A running gateway on a free port; yields its OpenAI base URL (``.../v1``)."""
    where = [] if os.environ.get("AICHATONLINE_BASE_URL") else ["--local"]
    command = [sys.executable, "-m", "aichatonline", "gateway", "--port", "0", *where]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stderr is not None
        for line in child.stderr:  # "aichatonline gateway: serving on http://HOST:PORT/v1"
            found = re.search(r"serving on (http://\S+/v1)", line)
            if found:
                # Keep reading its stderr, so that a full pipe never stalls the gateway.
                threading.Thread(target=child.stderr.read, daemon=True).start()
                yield found.group(1)
                break
        else:
            raise RuntimeError(f"the gateway did not start (exit code {child.wait()})")
    finally:
        child.terminate()
        child.wait(timeout=30)


def main(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused")  # no key on loopback
    print([model.id for model in client.models.list()])

    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )
    print(completion.choices[0].message.content)

    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count to 3"}], stream=True
    )
    for chunk in stream:
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    print()

    try:
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "Hi"}])
    except openai.NotFoundError as exc:  # the gateway's 404 model_not_found, as OpenAI's
        print(f"{exc.status_code}: {exc.body}")


if __name__ == "__main__":
    with gateway() as url:
        main(url)
