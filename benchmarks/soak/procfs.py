"""What a process holds, read from Linux's ``/proc``: memory, descriptors, TCP connections.

The soak reads these for itself (the client's process) and for the gateway's processes. On a
system without ``/proc`` every function returns None and the report says n/a.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = [
    "MIB",
    "children",
    "connections_to",
    "fd_count",
    "peak_rss",
    "rss",
]

MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int | str = "self") -> int | None:
    """Resident set size in bytes (``/proc/PID/statm``)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def peak_rss() -> int:
    """This process's peak resident set size so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fd_count(pid: int | str = "self") -> int | None:
    """Open file descriptors (the listing's own descriptor included, the same every time)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The pids of a process's children (uvicorn's workers under its supervisor)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(child) for child in text.split()]
    except (OSError, ValueError):
        return []
    return found


def _socket_inodes(pid: int | str) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def connections_to(port: int, pid: int | str = "self") -> int | None:
    """TCP connections of a process whose remote end is ``port`` on this machine, any state."""
    try:
        mine = _socket_inodes(pid)
        count = 0
        for table in ("tcp", "tcp6"):
            path = Path(f"/proc/{pid}/net/{table}")
            if not path.exists():
                continue
            for line in path.read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and int(fields[9]) in mine:
                    count += 1
        return count
    except (OSError, ValueError, IndexError):
        return None
