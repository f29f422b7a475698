"""gunicorn for the REST door: gevent workers, so each holds many requests waiting on their Celery results."""

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
