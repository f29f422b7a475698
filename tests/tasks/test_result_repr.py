"""Celery formats a task's result for its success line; ours pays for that only when the line is logged."""

from __future__ import annotations

import logging

import pytest
from celery.utils.saferepr import saferepr


@pytest.fixture()
def trace_logger():
    logger = logging.getLogger("celery.app.trace")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_a_result_is_formatted_to_a_few_characters_when_celery_does_not_log_it(trace_logger):
    from tasks.operations import TASKS

    trace_logger.setLevel(logging.WARNING)
    task = TASKS["create-payment-intent"]
    envelope = {"response": {"id": "vypi_x", "metadata": {f"k{i}": "v" * 20 for i in range(50)}}}
    assert len(saferepr(envelope, task.resultrepr_maxsize)) < 20


def test_a_result_is_formatted_in_full_when_debug_heavy_logging_shows_it(trace_logger):
    from tasks.operations import TASKS

    trace_logger.setLevel(logging.INFO)
    assert TASKS["get-refund"].resultrepr_maxsize == 1024  # Celery's own default
