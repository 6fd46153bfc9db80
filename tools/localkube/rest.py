"""A small typed JSON client for the Kubernetes API, for the launcher's checks and the fake kubelet.

For: authenticated JSON requests (GET/POST/PUT/PATCH/DELETE) and watch streams against one apiserver,
with errors as ``ApiError`` carrying the HTTP status. Must not: cache, retry or interpret objects; that is
the caller's job.

Why not the ``kubernetes`` package: localkube must start a cluster without the operator's dependencies,
and that package's generated client is only partly typed (its config loader and watch are untyped), which
would spread ``Any`` and ignores through code that mypy --strict checks.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Json = dict[str, Any]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """The apiserver answered with a non-2xx status."""

    def __init__(self, *, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Where the apiserver is and the client certificate to present to it."""

    server: str  # https://127.0.0.1:PORT
    ca_file: Path
    cert_file: Path
    key_file: Path


class Client:
    """Thread-safe: every request opens its own connection (cheap on loopback), sharing one TLS context."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(credentials.server)
        if parsed.scheme != "https" or parsed.hostname is None:
            raise ValueError(f"expected an https:// server URL, got {credentials.server!r}")
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=str(credentials.ca_file))
        self._context.load_cert_chain(str(credentials.cert_file), str(credentials.key_file))
        self._watches: set[http.client.HTTPSConnection] = set()
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Json | None = None,
        content_type: str = JSON,
        timeout: float | None = None,
    ) -> Json:
        """One request; the decoded JSON object answer ({} when empty), or ApiError."""
        data = None
        headers = {"Accept": JSON}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        raw = self._send(method, _url(path, query), data, headers, timeout)
        decoded = json.loads(raw) if raw else {}
        if not isinstance(decoded, dict):
            raise ApiError(status=200, reason="NotAnObject", message=f"{method} {path}: {raw[:200]!r}")
        return decoded

    def get_text(self, path: str, *, timeout: float | None = None) -> str:
        """A plain-text endpoint such as /readyz; ApiError on non-2xx."""
        return self._send("GET", path, None, {}, timeout).decode(errors="replace")

    def _send(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float | None
    ) -> bytes:
        conn = self._connect(timeout)
        try:
            conn.request(method, url, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            if not 200 <= response.status < 300:
                raise _error(response.status, response.reason, raw)
            return raw
        finally:
            conn.close()

    def watch(self, path: str, *, query: Mapping[str, str], read_timeout: float) -> Iterator[Json]:
        """Stream watch events (``{"type": ..., "object": ...}``) until the server ends the stream.

        ``read_timeout`` bounds the wait for one line; pass a server-side ``timeoutSeconds`` shorter than
        it so a healthy stream ends normally. ``abort_watches`` ends every open stream from another thread.
        """
        conn = self._connect(read_timeout)
        with self._lock:
            self._watches.add(conn)
        try:
            conn.request("GET", _url(path, {**query, "watch": "true"}), headers={"Accept": JSON})
            response = conn.getresponse()
            if response.status != 200:
                raise _error(response.status, response.reason, response.read())
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        finally:
            with self._lock:
                self._watches.discard(conn)
            conn.close()

    def abort_watches(self) -> None:
        """Unblock every watch stream: their reads end (empty line or OSError)."""
        with self._lock:
            conns = list(self._watches)
        for conn in conns:
            if conn.sock is not None:
                # shutdown, unlike close, wakes a reader blocked in another thread.
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=timeout or self._timeout
        )


def _url(path: str, query: Mapping[str, str] | None) -> str:
    return f"{path}?{urllib.parse.urlencode(query)}" if query else path


def _error(status: int, reason: str, raw: bytes) -> ApiError:
    message = raw.decode(errors="replace")
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict):
        # A metav1.Status: its reason (NotFound, AlreadyExists, Gone...) is more useful than the HTTP one.
        reason = str(decoded.get("reason") or reason)
        message = str(decoded.get("message") or message)
    return ApiError(status=status, reason=reason, message=message)
