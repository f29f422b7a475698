"""A local HTTP server that answers Stripe-shaped errors on cue: the outage localstripe cannot play."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support.local_http import QuietHandler, serving

EMPTY_LIST = {"object": "list", "data": [], "has_more": False}
# (status, body) or (status, body, headers)
Answer = tuple[int, dict] | tuple[int, dict, dict[str, str]]


@contextmanager
def scripted_stripe(
    answers: list[Answer], gets: Callable[[str, list[dict]], Answer] | None = None
) -> Iterator[tuple[str, list[dict]]]:
    """Serve `answers` in order to POST/DELETE requests (then repeat the last); a GET (a look-up) is answered by
    `gets(path, seen)`, by default an empty list. Yields (base URL, requests seen)."""
    seen: list[dict] = []
    posts: list[int] = []

    class Handler(QuietHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request: dict[str, Any] = {
                "method": self.command,
                "path": self.path,
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "body": self.rfile.read(length).decode(),
            }
            seen.append(request)
            if self.command == "GET":
                answer = gets(self.path, seen) if gets else (200, EMPTY_LIST)
            else:
                posts.append(1)
                answer = answers[min(len(posts) - 1, len(answers) - 1)]
            status, body = answer[0], answer[1]
            headers = answer[2] if len(answer) > 2 else {}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

    with serving(Handler, "scripted-stripe") as port:
        yield f"http://127.0.0.1:{port}", seen


@contextmanager
def service_stripe(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Iterator[Callable[[str], None]]:
    """Yields `point(base)`: the service's Stripe client then calls `base`, with these other settings (e.g.
    STRIPE_TIMEOUT_S); on leaving, the settings and the client are the environment's again."""
    import settings as service_settings
    import stripe_client

    def point(base: str) -> None:
        for name, value in {"STRIPE_API_BASE": base, **settings}.items():
            monkeypatch.setenv(name, value)
        service_settings.reload_settings()
        stripe_client.reset_client()

    yield point
    monkeypatch.undo()
    service_settings.reload_settings()
    stripe_client.reset_client()
