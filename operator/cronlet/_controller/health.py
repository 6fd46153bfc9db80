"""The operator's HTTP endpoint: /metrics (Prometheus), /healthz (liveness) and /readyz (readiness).

Served from a daemon thread, so a busy event loop never delays a scrape or a probe. Reads only what the
metrics registry and ``HealthState`` hold.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from cronlet._controller.metrics import Metrics


class HealthState:
    """What the probes report: ``alive`` (liveness) and ``ready`` (listed and scheduling)."""

    def __init__(self) -> None:
        self.alive = True
        self.ready = False


def serve(*, metrics: Metrics, health: HealthState, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start the HTTP endpoint in a daemon thread and return the server (``shutdown()`` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, ctype, code = b"not found\n", "text/plain", 404
            if self.path.startswith("/metrics"):
                body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                body, code = (b"ok\n", 200) if health.alive else (b"not alive\n", 503)
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
