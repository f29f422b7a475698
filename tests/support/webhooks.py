"""Sign a webhook payload exactly as Stripe does (`t=…,v1=HMAC-SHA256(secret, "t.payload")`), and make a signed
event about an object."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signed_event(event_type: str, obj: dict, secret: str, created: int | None = None) -> dict:
    """process-stripe-webhook's input for one event about `obj`, signed as Stripe signs it."""
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
    }
    payload = json.dumps(event)
    return {"payload": payload, "signature": sign(payload, secret)}
