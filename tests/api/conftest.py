"""The REST door under a real WSGI server (gunicorn, gevent), in front of the real worker (its `api_url`, `client`
and `anonymous` fixtures: tests/support/stacks.py, shared by every folder)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import requests

from tests.conftest import API_KEY, LOG_DIR
from tests.support import services
from tests.support.rest import BearerSession


@contextlib.contextmanager
def running_api(log_name: str, **env: str) -> Iterator[str]:
    port = services.free_port()
    proc = services.start_api(env, LOG_DIR / log_name, port)
    base = f"http://127.0.0.1:{port}"
    try:
        services.wait_until(lambda: requests.get(f"{base}/healthz", timeout=1).ok, 60, "gunicorn")
        yield base
    finally:
        services.stop(proc)


class Client(BearerSession):
    """requests against the API with the test's bearer key."""

    def __init__(self, base: str, key: str | None = API_KEY) -> None:
        super().__init__(base, key)
