"""One Celery task per registry operation, named `payments.<operation>` and routed to its queue."""

from __future__ import annotations

from registry import OPERATIONS, Operation
from tasks.app import app
from tasks.base import OperationTask, max_retries


def _register(operation: Operation) -> OperationTask:
    task_class = type(
        f"Task_{operation.name.replace('-', '_')}",
        (OperationTask,),
        {"operation": operation, "name": operation.task_name, "max_retries": max_retries(), "queue": operation.queue},
    )
    return app.register_task(task_class())


TASKS: dict[str, OperationTask] = {name: _register(op) for name, op in OPERATIONS.items()}
