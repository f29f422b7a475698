"""Logs: JSON lines with traceId/operation/door, the platform's level scale, secrets scrubbed."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest

from observability import logs as logging_setup
from settings import LOG_LEVELS, get_settings


@pytest.fixture()
def capture():
    """Configure logging as a process would, writing to a buffer."""
    stream = io.StringIO()
    saved = logging.getLogger().handlers[:], logging.getLogger().level

    def configure(level: str, node_env: str = "production") -> io.StringIO:
        settings = dataclasses.replace(get_settings(), log_stream_level=LOG_LEVELS[level], node_env=node_env)
        logging_setup.configure_logging(settings, "test")
        logging.getLogger().handlers[0].setStream(stream)  # the process's one handler, writing to our buffer
        return stream

    yield configure
    logging.getLogger().handlers[:], level = saved
    logging.getLogger().setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("level", "info", "debug"),
    [
        ("None", False, False),
        ("ProdStandard", True, False),
        ("DebugLight", True, True),
        ("DebugEverything", True, True),
    ],
)
def test_level_filtering_follows_the_platform_scale(capture, level, info, debug):
    stream = capture(level)
    log = logging.getLogger("payments.test")
    log.info("an info line")
    log.debug("a debug line")
    log.error("an error line")
    messages = [entry["message"] for entry in lines(stream)]
    assert ("an info line" in messages) is info
    assert ("a debug line" in messages) is debug
    assert ("an error line" in messages) is (level != "None")


def test_third_party_debug_needs_debug_heavy(capture):
    stream = capture("DebugLight")
    logging.getLogger("payments.test").debug("ours")
    logging.getLogger("payments.test").log(logging.DEBUG - 5, "very verbose")
    assert [e["message"] for e in lines(stream)] == ["ours"]
    stream = capture("DebugHeavy")
    logging.getLogger("payments.test").log(logging.DEBUG - 5, "very verbose")
    assert "very verbose" in [e["message"] for e in lines(stream)]


def test_json_lines_carry_time_level_logger_trace_operation_door(capture):
    stream = capture("ProdStandard")
    tokens = logging_setup.log_context(trace_id="trace-9", operation="create-refund", door="kafka")
    try:
        logging.getLogger("tasks").info("refund decided")
    finally:
        logging_setup.reset_log_context(tokens)
    entry = lines(stream)[-1]
    assert {"time", "level", "logger", "traceId", "operation", "door", "message"} <= set(entry)
    assert (entry["traceId"], entry["operation"], entry["door"], entry["level"]) == (
        "trace-9",
        "create-refund",
        "kafka",
        "INFO",
    )


def test_development_gives_readable_lines(capture):
    stream = capture("ProdStandard", node_env="development")
    logging.getLogger("payments.test").info("hello reader")
    line = stream.getvalue().strip().splitlines()[-1]
    assert "hello reader" in line and not line.startswith("{")


def test_secrets_are_scrubbed_from_messages_and_tracebacks(capture):
    stream = capture("ProdStandard")
    log = logging.getLogger("payments.test")
    log.info(
        "card %s secret %s key %s hook %s", "4242424242424242", "pi_123_secret_abc", "sk_test_abcdef", "whsec_abcdef"
    )
    try:
        raise ValueError("number=4000000000000341 cvc=123")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    for secret in ("4242424242424242", "pi_123_secret_abc", "sk_test_abcdef", "whsec_abcdef", "4000000000000341"):
        assert secret not in text
    assert "[card-number]" in text and "[client-secret]" in text


def test_stripe_sdk_debug_logs_never_pass(capture):
    stream = capture("DebugEverything")
    logging.getLogger("stripe").debug("API response body={'client_secret': 'pi_1_secret_2'}")
    assert "API response" not in stream.getvalue()


def test_a_jwt_is_scrubbed_even_without_its_bearer_prefix(capture):
    import jwt

    stream = capture("ProdStandard")
    token = jwt.encode({"sub": "someone", "exp": 4102444800}, "a-secret-of-at-least-32-bytes-long!!", algorithm="HS256")
    logging.getLogger("payments.test").info("token %s and header Bearer %s", token, token)
    text = stream.getvalue()
    assert token not in text and token.split(".")[1] not in text
    assert "[jwt]" in text and "Bearer [api-key]" in text


@pytest.mark.parametrize(
    "written",
    [
        "Ada.Lovelace@Example.com",
        '{"email":"ada+cart@shop.example.co.uk"}',
        "receipt to ada@example.com)",
        "user=ada@example.io",
    ],
)
def test_an_email_address_is_scrubbed_wherever_it_stands(capture, written):
    stream = capture("ProdStandard")
    logging.getLogger("payments.test").warning("sent: %s", written)
    line = stream.getvalue()
    assert "@example" not in line.lower() and "[email]" in line


def test_scrubbing_a_huge_value_with_no_address_takes_no_time_to_speak_of():
    """A fuzzed 500 001-character value once took minutes per log line (an unanchored `[^…]+@` rescanned the run
    from every position): the scrub is linear, so even this machine's worst day is far under the bound."""
    import time

    for text in ("x" * 500_001, "a." * 250_000 + "@", "a@" * 250_000):
        started = time.perf_counter()
        logging_setup.scrub(text)
        assert time.perf_counter() - started < 5.0  # quadratic: ~12 minutes for the first; linear: ~0.1 s


def _scrub_unguarded(text: str) -> str:
    from observability.logs import CARD_NUMBER, SECRET_PATTERNS, _mask_card

    text = CARD_NUMBER.sub(_mask_card, text)
    for pattern, replacement, _needs in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@pytest.mark.parametrize(
    "text",
    [
        '{"message": "GET /payment-intents/<payment_intent_id> 200", "traceId": "0123456789abcdef0123456789abcdef"}',
        "card 4242 4242 4242 4242 and 4000-0566-5566-5556, not 2026-12-06 10:50:01",
        "PI_1_SECRET_x pi_3Abc_secret_Def SK_TEST_abc sk_live_Key_1 rk_test_x WHSEC_x whsec_Y",
        "BEARER token1 bearer\ttoken2 eyJhbGciOi.eyJzdWIi.sig EYJx.y.z",
        '"CardNumber": "4242424242424242" "cvc": 123 CVV=999 number = 5',
        "Jo.Doe+tag@Example.COM, <a@b.co> x@y (not an address) @@ mail@host",
        "nothing to hide here at all: 12345 ids vypi_abc",
    ],
)
def test_scrub_skips_a_pattern_only_where_it_could_not_have_matched(text):
    from observability.logs import scrub

    assert scrub(text) == _scrub_unguarded(text)
