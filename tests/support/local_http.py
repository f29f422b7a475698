"""A stand-in HTTP server on a free 127.0.0.1 port, served from a daemon thread for the length of a `with`.

The fake Sentry, the Stripe proxy and the scripted Stripe each answer in their own way; starting, naming and
stopping the server is the same for all three.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that does not print a line per request (pytest's output stays readable)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[int]:
    """Serve `handler` on a free 127.0.0.1 port; yields the port, and stops the server on leaving."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
