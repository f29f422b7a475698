"""Logging for every process: JSON lines with traceId, secrets scrubbed, the platform's level scale."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from settings import Settings

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
operation_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("operation", default=None)
door_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("door", default=None)

_NOT_IN_ADDRESS = r"\s@\"'<>(),;:\[\]=/\\"
EMAIL_PATTERN = (
    rf"(?<![^{_NOT_IN_ADDRESS}])[^{_NOT_IN_ADDRESS}]{{1,64}}@(?:[A-Za-z0-9-]{{1,63}}\.){{1,8}}[A-Za-z]{{2,24}}\b"
)

# What must never be written: card numbers, client secrets, Stripe keys, webhook secrets, bearer tokens, and the
# e-mail addresses of the people who pay (personal data: domain/personal_data.py).
CARD_NUMBER = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# Each pattern with the words one of which it cannot match without (lower-cased): a line holding none of them
# skips the pattern, so an ordinary line costs a few substring tests instead of eight regex scans (0.14 ms a line).
SECRET_PATTERNS = [
    (re.compile(r"\b(pi|seti)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"), "[client-secret]", ("_secret_",)),
    (re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9_]+"), "[stripe-key]", ("k_test_", "k_live_")),
    (re.compile(r"\bwhsec_[A-Za-z0-9_]+"), "[webhook-secret]", ("whsec_",)),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1[api-key]", ("bearer",)),
    # A JWT without its "Bearer" (an access token, a customer token): its header always starts `eyJ` (`{"`).
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[jwt]", ("eyj",)),
    (
        re.compile(r"(?i)(\"?(?:cvc|cvv|card_?number|number)\"?\s*[:=]\s*\"?)[^\s\"',}]+"),
        r"\1[redacted]",
        ("cvc", "cvv", "number"),
    ),
    # Linear on any input: a match starts only where a run of address characters starts (the lookbehind), and
    # every part is bounded; an unanchored `[^…]+@` rescanned each long run from every position (quadratic).
    (re.compile(EMAIL_PATTERN), "[email]", ("@",)),
]
_DIGITS = str.maketrans("", "", "0123456789")
CARD_MIN_DIGITS = 13  # CARD_NUMBER's shortest match


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    # Only numbers that pass the Luhn check are cards; timestamps and amounts stay readable.
    return "[card-number]" if _luhn_valid(digits) else match.group(0)


def scrub(text: str) -> str:
    """The text with every secret-looking value replaced."""
    if len(text) - len(text.translate(_DIGITS)) >= CARD_MIN_DIGITS:
        text = CARD_NUMBER.sub(_mask_card, text)
    lowered = text.lower()
    for pattern, replacement, needs in SECRET_PATTERNS:
        if any(word in lowered for word in needs):
            text = pattern.sub(replacement, text)
            lowered = text.lower()  # the next guards test the text as it is now
    return text


def platform_to_python_level(platform_level: int) -> int:
    """The platform writes a message when its level is at or below the setting; map that onto Python's."""
    if platform_level < 0:
        return logging.CRITICAL + 10  # None: nothing
    if platform_level < 3:
        return logging.INFO  # ProdStandard
    if platform_level < 101:
        return logging.DEBUG  # DebugLight, DebugMedium
    return logging.DEBUG - 5  # DebugHeavy and above: everything, third-party debug included


class ContextFilter(logging.Filter):
    """Stamp traceId/operation/door on each record and scrub secrets from its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.traceId = trace_id_var.get()
        record.operation = operation_var.get()
        record.door = door_var.get()
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record.msg, record.args = scrub(message), None
        return True


class ScrubbingJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure_logging(settings: Settings, process: str) -> None:
    """Install the one handler of this process (web, worker, relay, cli)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if settings.node_env == "development":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(traceId)s] %(message)s"))
    else:
        handler.setFormatter(
            ScrubbingJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(traceId)s %(operation)s %(door)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"process": process},
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(platform_to_python_level(settings.log_stream_level))
    # The Stripe SDK logs request and response bodies at debug: never let them through.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    # Celery logs every task's arguments and result (payment payloads) at info: only from DebugHeavy on.
    verbose = settings.log_stream_level >= 101
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def log_context(**values: Any) -> list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]]:
    """Set traceId/operation/door for the current unit of work; undo with `reset_log_context`."""
    variables = {"trace_id": trace_id_var, "operation": operation_var, "door": door_var}
    return [(variables[name], variables[name].set(value)) for name, value in values.items()]


def reset_log_context(tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]]) -> None:
    for var, token in reversed(tokens):
        var.reset(token)
