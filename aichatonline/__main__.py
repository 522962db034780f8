"""``python -m aichatonline``: the command line, as the ``aichatonline`` script runs it.

See :mod:`aichatonline._cli` (or ``python -m aichatonline --help``).
"""

from aichatonline._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
