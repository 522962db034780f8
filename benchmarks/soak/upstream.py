"""The bundled server in a child process that says what it did: the soaks' upstream.

``python -m benchmarks.soak.upstream [server options]`` runs ``aichatonline.testing``'s
``LocalServer`` with the options of ``python -m aichatonline.testing`` (``--fault-mix``,
``--piece-size``, ...), prints its base URL, then answers each line on its standard input
with one line of JSON: the faults its mix dealt by kind, the tokens it issued, the answers
its clients abandoned before their end, and its open connections. It stops when its standard
input closes, so it never outlives the soak that started it.

Why a process of its own: the measured process then holds the client alone (its memory, its
descriptors, its connections), and client and server get a core each on a 2-core machine.
(``aichatonline.testing.spawn_server`` runs the same server the same way, without the
report.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from aichatonline.testing import LocalServer, ServerOptions

__all__ = ["Upstream", "main"]


class Upstream:
    """``python -m benchmarks.soak.upstream`` as a child process; ``stats()`` asks it."""

    def __init__(self, options: ServerOptions) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "benchmarks.soak.upstream", *options.to_argv()]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root
        )
        self._stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        self._stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        line = self._stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the upstream server did not start (it said {line!r})")
        self.base_url = line
        self.port = int(line.rsplit(":", 1)[1])

    def stats(self) -> dict[str, Any]:
        """What the server has done so far (see the module docstring)."""
        self._stdin.write("stats\n")
        self._stdin.flush()
        report: dict[str, Any] = json.loads(self._stdout.readline())
        return report

    def stop(self) -> None:
        if self.process.poll() is None:
            self._stdin.close()  # the server stops at the end of its input
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout.close()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak.upstream")
    ServerOptions.add_arguments(parser)
    options = ServerOptions.from_namespace(parser.parse_args(argv))
    with LocalServer(options=options, record_requests=False) as server:
        print(server.base_url, flush=True)
        for _ in sys.stdin:
            report = {
                "mixed_faults": server.mixed_faults,
                "tokens_issued": server.tokens_issued,
                "disconnects": server.disconnects,
                "open_connections": server.open_connections,
            }
            print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
