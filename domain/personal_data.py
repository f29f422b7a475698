"""Personal data the platform sends (an e-mail address, a name, a postal address): named by keyed hashes.

The address goes to Stripe (its Customer, the receipt) and onto the intent's row for its receipt, nowhere else: not
into logs, metrics, Sentry, events or the stored idempotency request, where a keyed hash stands for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from settings import get_settings

# Without CUSTOMER_EMAIL_KEY (development): a fixed key, so `make run` names the same customer on every start.
_DEVELOPMENT_KEY = b"vy-finance-payments:customer-email:development"
EMAIL_CUSTOMER_PREFIX = "email:"


def _key() -> bytes:
    return get_settings().customer_email_key.encode("utf-8") or _DEVELOPMENT_KEY


def normalised_email(email: str) -> str:
    """Compared lower-cased and trimmed: Ada@Example.com and ada@example.com are one person."""
    return email.strip().lower()


def digest(value: Any) -> str:
    """A keyed hash of any JSON value: tells two values apart without revealing either."""
    body = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hmac.new(_key(), body.encode("utf-8"), hashlib.sha256).hexdigest()


def email_customer_id(email: str) -> str:
    """Our customer id for a person the platform names only by e-mail: one per address, whatever its case."""
    return f"{EMAIL_CUSTOMER_PREFIX}{digest(normalised_email(email))[:40]}"
