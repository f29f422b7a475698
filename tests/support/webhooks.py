"""Sign a webhook payload exactly as Stripe does (`t=…,v1=HMAC-SHA256(secret, "t.payload")`), and make a signed
event about an object, or a `payment_intent.*` event's payload."""

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


def intent_event(stripe_intent_id: str, status: str, created: int, amount: int = 10_000) -> str:
    """A Stripe `payment_intent.*` event's payload as Stripe sends it (with a client secret the service must not
    keep); `succeeded` and `canceled` have events of their own, every other status is sent as `processing`."""
    kind = status if status in ("succeeded", "canceled") else "processing"
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": f"payment_intent.{kind}",
            "created": created,
            "data": {
                "object": {
                    "id": stripe_intent_id,
                    "object": "payment_intent",
                    "status": status,
                    "amount": amount,
                    "amount_received": amount if status == "succeeded" else 0,
                    "amount_capturable": 0,
                    "client_secret": f"{stripe_intent_id}_secret_webhookcopy{uuid.uuid4().hex[:8]}",
                }
            },
        }
    )
