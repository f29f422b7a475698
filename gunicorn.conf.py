"""gunicorn for the REST door: gevent workers, so each holds many requests waiting on their Celery results."""

import os
import shutil
import tempfile
from typing import Any

from settings import get_settings

_settings = get_settings()

bind = f"0.0.0.0:{_settings.app_port}"
worker_class = "gevent"
workers = 2  # one per core: a request mostly waits, it does not compute
worker_connections = 1000
# Longer than REST_TIMEOUT, so the door answers 504 itself before gunicorn kills the worker.
timeout = _settings.rest_timeout_ms // 1000 + 30
graceful_timeout = 30
keepalive = 5
accesslog = None  # request lines come from the app's own JSON logs

control_socket_disable = True  # several gunicorns may share a host; nothing here uses gunicorn's control socket

_metrics_dirs: list[str] = []


def on_starting(server: Any) -> None:
    """Give this master's workers one directory where their metrics meet (prometheus_client reads it)."""
    _metrics_dirs.append(tempfile.mkdtemp(prefix="vy-payments-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dirs[-1]


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    for path in _metrics_dirs:
        shutil.rmtree(path, ignore_errors=True)
