"""A control socket for a running ``localkube up``: other shells ask it to restart a server in place.

For: ``python -m localkube restart apiserver|etcd`` (fault injection, by hand or from tests that reuse a
running cluster). Only the process that started the servers can restart them (it owns their process groups),
so ``up`` serves one request at a time on ``control.sock`` in its cluster directory. Must not: accept
anything but a restart of a known server, or listen anywhere but that Unix socket (mode 0600).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("localkube.control")
SOCKET_NAME = "control.sock"


def serve(directory: Path, restart: Callable[[str], float]) -> threading.Thread:
    """Answer ``restart NAME`` lines with ``ok SECONDS`` or ``error MESSAGE``, in a daemon thread."""
    path = directory / SOCKET_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(1)

    def loop() -> None:
        while True:
            connection, _ = server.accept()
            with connection:
                request = connection.recv(256).decode(errors="replace").split()
                if len(request) == 2 and request[0] == "restart":
                    try:
                        answer = f"ok {restart(request[1]):.1f}"
                    except Exception as error:  # reported to the asking shell, the cluster stays up
                        answer = f"error {error}"
                else:
                    answer = "error expected: restart NAME"
                connection.sendall(answer.encode() + b"\n")

    thread = threading.Thread(target=loop, name="localkube-control", daemon=True)
    thread.start()
    return thread


def request_restart(directory: Path, name: str, *, timeout: float = 120.0) -> str:
    """Ask the ``up`` owning ``directory`` to restart ``name``; its answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(directory / SOCKET_NAME))
        client.sendall(f"restart {name}\n".encode())
        return client.recv(4096).decode(errors="replace").strip()
