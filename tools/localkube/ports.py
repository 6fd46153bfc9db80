"""Free TCP ports on 127.0.0.1 for servers that bind them a little later.

For: the cluster's servers and the test helpers (the operator's metrics port, Prometheus). A port the kernel
hands out with ``bind(port 0)`` comes from the ephemeral range, which every outgoing connection also draws
from: between choosing such a port and the server binding it, a client connection can take it, and the
server fails with "address already in use". These ports are drawn at random from below the ephemeral range
instead, where only deliberate binds land, and each is checked free by binding it once.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_FLOOR = 10000  # above the well-known and most registered service ports
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, rng: random.Random | None = None) -> list[int]:
    """``count`` distinct ports that were free a moment ago, outside the ephemeral range when there is room."""
    pick = rng or random.SystemRandom()
    ceiling = _ephemeral_start()
    chosen: list[int] = []
    tries = 200 * count if ceiling - _FLOOR >= 1000 else 0
    while len(chosen) < count and tries > 0:
        tries -= 1
        port = pick.randrange(_FLOOR, ceiling)
        if port not in chosen and _bindable(port):
            chosen.append(port)
    while len(chosen) < count:  # no room below the ephemeral range: let the kernel choose
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in chosen:
            chosen.append(port)
    return chosen


def free_port() -> int:
    return free_ports(1)[0]
