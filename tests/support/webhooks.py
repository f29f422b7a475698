"""Sign a webhook payload exactly as Stripe does (`t=…,v1=HMAC-SHA256(secret, "t.payload")`)."""

from __future__ import annotations

import hashlib
import hmac
import time


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
