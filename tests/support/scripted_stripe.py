"""A local HTTP server that answers Stripe-shaped errors on cue: the outage localstripe cannot play."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def scripted_stripe(answers: list[tuple[int, dict]]) -> Iterator[tuple[str, list[dict]]]:
    """Serve `answers` in order (status, body), then repeat the last; yields (base URL, requests seen)."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append(
                {
                    "path": self.path,
                    "idempotency_key": self.headers.get("Idempotency-Key"),
                    "body": self.rfile.read(length).decode(),
                }
            )
            status, body = answers[min(len(seen) - 1, len(answers) - 1)]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
