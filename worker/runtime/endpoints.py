"""The worker's HTTP port: /metrics for Prometheus, /healthz and /readyz for orchestrators.

A thread of its own, like prometheus_client's server: a scrape or a probe is answered even
while the event loop is busy, and /healthz can tell that the loop itself has stalled.
"""

from __future__ import annotations

import errno
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.errors import ConfigurationError
from worker.runtime.health import Health

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"


def serve_endpoints(port: int, health: Health, host: str = "0.0.0.0") -> ThreadingHTTPServer | None:
    """Serve the three paths on `port` in a daemon thread; 0 serves nothing."""
    if not port:
        return None
    try:
        server = ThreadingHTTPServer((host, port), _handler(health))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"metrics port {port} is already in use (another worker on this host?): "
                "set PW_METRICS_PORT to a free port, or to 0 to serve no metrics"
            ) from exc
        raise ConfigurationError(f"cannot serve metrics on port {port}: {exc}") from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="endpoints", daemon=True).start()
    return server


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == METRICS_PATH:
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif path == HEALTH_PATH:
                alive = health.alive()
                self._json(200 if alive else 503, {"alive": alive})
            elif path == READY_PATH:
                self._json(200 if health.ready() else 503, health.report())
            else:
                self._json(404, {"paths": [HEALTH_PATH, READY_PATH, METRICS_PATH]})

        def _json(self, status: int, body: dict[str, object]) -> None:
            self._send(status, orjson.dumps(body), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would drown the worker's own log."""

    return Handler
