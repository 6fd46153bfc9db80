"""Ports for servers that bind later: distinct, free, and away from the ports outgoing connections take."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from localkube import ports


def _ephemeral() -> range:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_ports_are_distinct_and_bindable() -> None:
    chosen = ports.free_ports(20)
    assert len(set(chosen)) == 20
    for port in chosen:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_ports_come_from_below_the_ephemeral_range() -> None:
    ephemeral = _ephemeral()
    chosen = ports.free_ports(50)
    assert all(10000 <= port < ephemeral.start for port in chosen), chosen


def test_a_port_in_use_is_never_chosen() -> None:
    # The same seed draws the same candidates: hold the first one, and the next call must pass it by.
    first = ports.free_ports(1, rng=random.Random(7))[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        again = ports.free_ports(1, rng=random.Random(7))[0]
    assert again != first
