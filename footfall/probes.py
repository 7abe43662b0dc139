"""A stage's operator endpoints on one port, for stages that serve no HTTP of their own (the processor):
GET /metrics (Prometheus), /healthz (the process is alive) and /readyz (can it move an event through now?)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import make_wsgi_app

Readiness = Callable[[], tuple[bool, dict[str, str]]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args) -> None:  # probes every second would flood the log
        pass


def probe_app(readiness: Readiness) -> Callable:
    metrics = make_wsgi_app()

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/readyz", "/healthz"):
            return metrics(environ, start_response)
        ready, checks = readiness() if path == "/readyz" else (True, {"status": "alive"})
        body = orjson.dumps({"ready": ready, **checks} if path == "/readyz" else checks)
        status = "200 OK" if ready else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve_probes(port: int, readiness: Readiness, host: str = "127.0.0.1") -> WSGIServer:
    """Serve the endpoints from a daemon thread (as prometheus_client's own start_http_server does)."""
    server = make_server(host, port, probe_app(readiness), _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server
