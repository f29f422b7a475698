"""The service's Celery app (tasks.app) with its janitor pass made to fail with an OperationError, as a pass that
meets a refusal does: `celery -A tests.support.failing_janitor worker` runs it under a real worker
(tests/test_errors_pickle.py)."""

from __future__ import annotations

from typing import NoReturn

from domain import janitor
from errors import OperationError
from tasks.app import app

REFUSAL = "The janitor could not settle vypi_failing_janitor."


def _refuse() -> NoReturn:
    raise OperationError("invalid_state", REFUSAL, {"id": "vypi_failing_janitor"})


janitor.run = _refuse  # type: ignore[assignment]

__all__ = ["REFUSAL", "app"]
