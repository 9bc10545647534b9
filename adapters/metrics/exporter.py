"""The small HTTP server each role runs on its ``--metrics-port``: ``/metrics``, ``/healthz``, ``/readyz``.

* ``/metrics``: the process's registry (:mod:`adapters.metrics.instruments`) in Prometheus' text format.
* ``/healthz``: 200 while the process serves at all (a liveness probe: restart it if this fails).
* ``/readyz``: 200 if every readiness check passes, else 503; the JSON body names each check's
  answer and, for a role that elects a leader, whether this process leads or stands by (a standby is
  ready: it takes over on its own). A balancer or an orchestrator routes only to ready processes.

A ``ThreadingHTTPServer`` in a daemon thread: it serves beside any role (asyncio or threads)
without touching the role's loop. The API serves the same three paths on its own app
(:func:`health_body`, ``adapters/api/app.py``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.metrics.checks import Check
from adapters.metrics.instruments import REGISTRY

log = logging.getLogger("chargeledger.metrics")


def health_body(checks: Mapping[str, Check],
                state: Callable[[], dict[str, Any]] | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of ``/readyz``: every check run now; 503 if any fails."""
    results = {}
    for name, check in checks.items():
        try:
            ok, detail = check()
        except Exception as error:  # noqa: BLE001 - a check that breaks says not ready, and why
            ok, detail = False, f"{type(error).__name__}: {error}"
        results[name] = {"ok": ok, "detail": detail}
    ready = all(r["ok"] for r in results.values())
    body: dict[str, Any] = {"ready": ready, "checks": results}
    if state is not None:
        body.update(state())
    return (200 if ready else 503), body


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (port 0: a free one, see ``port``)."""

    def __init__(self, host: str, port: int, checks: Mapping[str, Check] | None = None,
                 state: Callable[[], dict[str, Any]] | None = None) -> None:
        self.checks = dict(checks or {})
        self.state = state
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self.answer(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
                elif path == "/healthz":
                    self.answer(200, "application/json", b'{"alive": true}')
                elif path == "/readyz":
                    status, body = health_body(server.checks, server.state)
                    self.answer(status, "application/json", json.dumps(body).encode())
                else:
                    self.answer(404, "text/plain", b"not found: /metrics, /healthz, /readyz\n")

            def answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        log.info("metrics on http://%s:%s/metrics (/healthz, /readyz)", self.host, self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
