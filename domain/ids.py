"""Our own ids: a type prefix and a ULID, so ids sort by creation time (cursor pagination)."""

from ulid import ULID

PREFIXES = {
    "customer": "cus",
    "payment_intent": "pi",
    "refund": "re",
    "payment_method": "pm",
    "payment_attempt": "at",
    "operation": "op",  # a claim that creates nothing of its own (a cancel): only its Stripe keys derive from it
}


def new_id(kind: str) -> str:
    """`vy<prefix>_<ulid>`: distinct at a glance from Stripe's `pi_…`, `re_…`, `pm_…`."""
    return f"vy{PREFIXES[kind]}_{str(ULID()).lower()}"
