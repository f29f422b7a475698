"""The service as the drills run it: worker, gunicorn and relay processes over servers a drill names.

A `Stack` is one set of settings (database, broker, result store, Stripe, Kafka, keys) and the processes started
with them; every process runs in its own process group, logs to the drills' log directory (scanned for secrets by
drill 11) and is stopped when the stack closes. The test process talks to a stack the way callers do: HTTP to the
API, Kafka to the relay, and — for Celery-level drills — a client Celery app on the stack's broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import requests

from tests.support import services
from tests.support.kafka import FAST_CONSUMER, RelayProcess

# Settings read by settings.py: a child gets exactly the stack's, never the pytest process's own.
SETTING_PREFIXES = (
    "TIDB_",
    "CELERY_",
    "STRIPE_",
    "KAFKA_",
    "SENTRY_",
    "API_KEYS",
    "REST_TIMEOUT",
    "TASK_MAX_RETRIES",
    "AUTO_SEED",
    "LOG_STREAM_LEVEL",
    "NODE_ENV",
    "DB_POOL_SIZE",
    "PAYMENTS_CONCURRENCY",
    "METRICS_PORT",
    "IDEMPOTENCY_TTL_S",
    "APP_PORT",
    "PROMETHEUS_MULTIPROC_DIR",
    "EVENT_TOPIC_",
    "OUTBOX_",
)


@dataclass
class StackConfig:
    """Where a stack's processes find their servers and which secrets they hold."""

    name: str
    log_dir: Path
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_name: str = ""
    broker_url: str = ""
    result_backend: str = ""
    stripe_api_base: str = ""
    stripe_key: str = ""
    webhook_secret: str = ""
    api_keys: tuple[str, ...] = ()
    kafka_broker: str = ""
    kafka_group: str = ""
    kafka_partitions: int = 2
    sentry_dsn: str = ""
    task_max_retries: int = 3
    stripe_timeout_s: float = 5.0
    rest_timeout_ms: int = 45000
    # The drills' stand-ins enforce no rate limit (but drill 22's): paced far above their pace; "": the key's default.
    stripe_rate_limit: str = "1000"
    stripe_endpoint_rate_limit: str = "500"
    extra: dict[str, str] = field(default_factory=dict)

    def environment(self, **overrides: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
        env = {
            **base,
            "NODE_ENV": "test",
            "LOG_STREAM_LEVEL": "DebugEverything",  # the most the service ever writes: what drill 11 scans
            "TIDB_HOST": self.db_host,
            "TIDB_PORT": str(self.db_port),
            "TIDB_USER": "root",
            "TIDB_PASSWORD": "",
            "TIDB_DATABASE": self.db_name,
            "TIDB_ENABLE_SSL": "false",
            "AUTO_SEED": "true",
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": self.result_backend,
            "STRIPE_API_BASE": self.stripe_api_base,
            "STRIPE_SECRET_KEY": self.stripe_key,
            "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
            "STRIPE_TIMEOUT_S": str(self.stripe_timeout_s),
            "STRIPE_RATE_LIMIT": self.stripe_rate_limit,
            "STRIPE_ENDPOINT_RATE_LIMIT": self.stripe_endpoint_rate_limit,
            "API_KEYS": ",".join(self.api_keys),
            "REST_TIMEOUT": str(self.rest_timeout_ms),
            "TASK_MAX_RETRIES": str(self.task_max_retries),
            "SENTRY_DNS": self.sentry_dsn,
            # The machine's MariaDB is shared: a drill process keeps to 30 connections (tasks queue for one).
            "DB_POOL_SIZE": "30",
        }
        if self.kafka_broker:
            env.update(
                {
                    "KAFKA_BROKER": self.kafka_broker,
                    "KAFKA_GROUP": self.kafka_group or f"vyp-{self.name}",
                    "KAFKA_TOPIC_PARTITIONS": str(self.kafka_partitions),
                    "KAFKA_DELIVERY_TIMEOUT_S": "10",
                    **{f"KAFKA_CONSUMER_OPT_{k.upper().replace('.', '_')}": v for k, v in FAST_CONSUMER.items()},
                }
            )
        env.update(self.extra)
        env.update(overrides)
        return env


class Stack:
    """The processes of one stack; `close()` stops every one of them."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.procs: dict[str, subprocess.Popen] = {}
        self.log_paths: dict[str, Path] = {}
        self.api_url = ""
        self.relay: RelayProcess | None = None
        self._client_app: Any = None
        self._worker_args: dict[str, tuple[str, int, dict[str, str]]] = {}
        self.worker_restarts = 0
        config.log_dir.mkdir(parents=True, exist_ok=True)

    # -- processes
    def _spawn(self, role: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log_path = self.config.log_dir / f"{self.config.name}-{role}.log"
        proc = services.spawn(argv, log_path, env)
        self.procs[role] = proc
        self.log_paths[role] = log_path
        return proc

    def start_worker(
        self,
        role: str = "worker",
        queues: str = "payments,payment-methods,webhooks,reads",
        concurrency: int = 50,
        **env: str,
    ) -> subprocess.Popen:
        # The drills' workers keep Celery's heartbeat, as they always ran (the suite's go without).
        argv = services.worker_argv(queues, concurrency, f"{self.config.name}-{role}", heartbeat=True)
        self._worker_args[role] = (queues, concurrency, env)
        return self._spawn(role, argv, self.config.environment(**env))

    def supervise_worker(self, role: str = "worker") -> bool:
        """What a process supervisor does: start the worker again if it died; True if it had to."""
        proc = self.procs.get(role)
        if proc is not None and proc.poll() is None:
            return False
        self.stop(role)
        queues, concurrency, env = self._worker_args[role]
        self.start_worker(role, queues, concurrency, **env)
        self.worker_restarts += 1
        if self.api_url:
            self.wait_ready()
        return True

    def start_api(self, role: str = "api", **env: str) -> str:
        port = services.free_port()
        # As the Procfile runs it, but on 127.0.0.1 only (gunicorn.conf.py binds every interface).
        argv = services.api_argv(bind=f"127.0.0.1:{port}")
        self._spawn(role, argv, self.config.environment(APP_PORT=str(port), **env))
        url = f"http://127.0.0.1:{port}"
        services.wait_until(lambda: requests.get(f"{url}/healthz", timeout=1).ok, 60, f"{role} of {self.config.name}")
        if role == "api":
            self.api_url = url
        return url

    def start_publisher(self, role: str = "publisher", **env: str) -> subprocess.Popen:
        """The payment events publisher (Procfile `publisher`)."""
        return self._spawn(role, [services.PYTHON, "-m", "event_publisher"], self.config.environment(**env))

    def start_relay(self, **env: str) -> RelayProcess:
        if self.relay is None:
            # Its own directory: RelayProcess numbers its logs relay-1.log, relay-2.log… per instance.
            relay_dir = self.config.log_dir / f"{self.config.name}-relay"
            relay_dir.mkdir(parents=True, exist_ok=True)
            self.relay = RelayProcess(relay_dir)
        self.relay.start(self.config.environment(**env))
        return self.relay

    def wait_ready(self, timeout: float = 90) -> None:
        """/readyz answers 200: database, broker and a worker answer."""
        services.wait_until(
            lambda: requests.get(f"{self.api_url}/readyz", timeout=5).status_code == 200,
            timeout,
            f"{self.config.name} ready",
            0.25,
        )

    def alive(self) -> dict[str, bool]:
        alive = {role: proc.poll() is None for role, proc in self.procs.items()}
        if self.relay is not None:
            alive["relay"] = self.relay.running
        return alive

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[role]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)

    def stop(self, role: str, timeout: float = 30) -> None:
        proc = self.procs.pop(role, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop(timeout=20)
            self.relay.kill()
        for role in list(self.procs):
            self.stop(role)
        if self._client_app is not None:
            with contextlib.suppress(Exception):
                self._client_app.close()

    # -- talking to it
    def celery(self) -> Any:
        """A client Celery app on this stack's broker and result store (the registry's routes)."""
        if self._client_app is None:
            from celery import Celery

            # CELERY_BROKER_URL / CELERY_RESULT_BACKEND in this process's environment (the suite's) would win over
            # broker_url and result_backend: the write/read URLs and a backend given by URL are not overridden.
            app = Celery(f"drill-client-{self.config.name}", set_as_current=False)
            app.backend_cls = self.config.result_backend
            app.config_from_object("celeryconfig")
            app.conf.update(
                broker_url=self.config.broker_url,
                broker_write_url=self.config.broker_url,
                broker_read_url=self.config.broker_url,
                result_backend=self.config.result_backend,
                broker_connection_retry_on_startup=True,
                broker_connection_timeout=5,
                redis_socket_timeout=5,
                redis_socket_connect_timeout=5,
            )
            self._client_app = app
        return self._client_app

    def send(self, operation: str, payload: Any, meta: dict[str, Any], task_id: str | None = None) -> Any:
        """Publish an operation's task as a door does (same name, queue and arguments); returns its AsyncResult."""
        from registry import OPERATIONS

        op = OPERATIONS[operation]
        return self.celery().send_task(
            op.task_name, args=[payload, meta], queue=op.queue, routing_key=op.queue, task_id=task_id
        )

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        conn = pymysql.connect(
            host=self.config.db_host, port=self.config.db_port, user="root", password="", database=self.config.db_name
        )
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                # Identifier columns are VARBINARY (compared byte for byte): read them back as the text they hold.
                rows = [tuple(v.decode() if isinstance(v, bytes) else v for v in row) for row in cur.fetchall()]
            conn.commit()  # a drill's own write (staging a state) must stay
            return rows
        finally:
            conn.close()

    def log_text(self) -> str:
        texts = [p.read_text(errors="replace") for p in self.log_paths.values() if p.exists()]
        return "\n".join(texts)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    services.wait_until(predicate, timeout, what, interval)


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)
