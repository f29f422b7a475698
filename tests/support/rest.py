"""A requests session against one API: paths after its base URL, a bearer key, and a timeout unless told."""

from __future__ import annotations

from typing import Any

import requests


class BearerSession(requests.Session):
    """HTTP to one API with a bearer key (None: anonymous); every request waits 90 s at most unless told."""

    def __init__(self, base: str, key: str | None) -> None:
        super().__init__()
        self.base = base
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", 90)
        return super().request(method, self.base + url, *args, **kwargs)
