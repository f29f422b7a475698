"""The answers every door gives alike: the error envelope and the idempotency key's accepted shape."""

from __future__ import annotations

import re
from typing import Any

from errors import OperationError

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, as Stripe accepts


def error_envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{"error": {code, message, status, details}}`, as a task's envelope carries it."""
    return {"error": OperationError(code, message, details).to_error()}
