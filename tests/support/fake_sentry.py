"""A local Sentry ingest endpoint: takes every envelope the SDK sends (SENTRY_DNS pointed here) and keeps it as text.

Sentry cannot be run on this machine; what a process would send it is the thing to inspect, so a tiny HTTP server
that answers 200 and stores the decompressed bodies stands in for it.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.local_http import QuietHandler, serving


@dataclass
class FakeSentry:
    dsn: str = ""
    envelopes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.envelopes)

    def events(self) -> int:
        """Envelopes holding an error event (not sessions or client reports)."""
        with self.lock:
            return sum('"type":"event"' in e.replace(" ", "") for e in self.envelopes)


def _decode(body: bytes, encoding: str) -> str:
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    return body.decode("utf-8", "replace")


@contextmanager
def fake_sentry() -> Iterator[FakeSentry]:
    """Serve on a free 127.0.0.1 port; `.dsn` is what SENTRY_DNS should hold."""
    sentry = FakeSentry()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                text = _decode(body, (self.headers.get("Content-Encoding") or "").lower())
            except (OSError, zlib.error):
                text = body.decode("utf-8", "replace")
            with sentry.lock:
                sentry.envelopes.append(f"{self.path}\n{text}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    with serving(Handler, "fake-sentry") as port:
        sentry.dsn = f"http://drillpublickey@127.0.0.1:{port}/1"
        yield sentry
