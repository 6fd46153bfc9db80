"""The operator's HTTP endpoint: /metrics (Prometheus), /healthz (liveness) and /readyz (readiness).

Served from a daemon thread, so a busy or blocked event loop never delays a scrape or a probe, and a probe
can tell that the loop is wedged. Reads only what the metrics registry and ``HealthState`` hold.

Liveness fails (503, and the kubelet restarts the pod) when the event loop has not beaten for
``LOOP_STALL`` seconds, or one worker has held one task for ``WORKER_STALL`` seconds: every API call has a
timeout (``kube.TIMEOUTS``) and a few retries, so a reconcile that takes that long is stuck, not slow.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from cronlet._controller.metrics import Metrics

LOOP_STALL = 30.0
WORKER_STALL = 300.0
BEAT_EVERY = 1.0


class HealthState:
    """What the probes report: ``alive()`` (liveness) and ``ready`` (listed and scheduling)."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        loop_stall: float = LOOP_STALL,
        worker_stall: float = WORKER_STALL,
    ) -> None:
        self.ready = False
        self._monotonic = monotonic
        self._loop_stall = loop_stall
        self._worker_stall = worker_stall
        self._beat = monotonic()
        self._busy_since: Callable[[], float | None] = lambda: None

    def watch_workers(self, busy_since: Callable[[], float | None]) -> None:
        """Where to ask since when the longest-held task is held (``WorkQueue.busy_since``)."""
        self._busy_since = busy_since

    def beat(self) -> None:
        self._beat = self._monotonic()

    async def beat_forever(self) -> None:
        """Run on the event loop: a loop that stops beating is blocked."""
        while True:
            self.beat()
            await asyncio.sleep(BEAT_EVERY)

    def problem(self) -> str | None:
        """Why the operator is not alive, or None when it is."""
        now = self._monotonic()
        if now - self._beat > self._loop_stall:
            return f"the event loop has not run for {now - self._beat:.0f} s"
        held = self._busy_since()
        if held is not None and now - held > self._worker_stall:
            return f"a worker has been reconciling one task for {now - held:.0f} s"
        return None

    def alive(self) -> bool:
        return self.problem() is None


def serve(*, metrics: Metrics, health: HealthState, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start the HTTP endpoint in a daemon thread and return the server (``shutdown()`` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, ctype, code = b"not found\n", "text/plain", 404
            if self.path.startswith("/metrics"):
                body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                problem = health.problem()
                body, code = (b"ok\n", 200) if problem is None else (f"not alive: {problem}\n".encode(), 503)
            elif self.path.startswith("/readyz"):
                body, code = (b"ready\n", 200) if health.ready else (b"not ready\n", 503)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="cronlet-http", daemon=True).start()
    return server
