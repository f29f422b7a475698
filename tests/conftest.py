"""Fixtures: real MariaDB, RabbitMQ, Redis, localstripe and a real Celery worker process.

Each run gets its own MariaDB database, RabbitMQ vhost and Redis database, so runs never see each other's data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.support import services

RUN = services.run_id()
DB_NAME = f"vyp_test_{RUN}"
VHOST = f"vyp_test_{RUN}"
LOCALSTRIPE_PORT = services.free_port()
WORKER_METRICS_PORT = services.free_port()
# Secrets the service must never write anywhere; the scans look for these exact strings.
STRIPE_KEY = f"sk_test_vyp{RUN}key"
WEBHOOK_SECRET = f"whsec_vyp{RUN}secret"
API_KEY = f"vyp-api-key-{RUN}"
LOG_DIR = Path(os.environ.get("VYP_TEST_LOG_DIR", f"/tmp/vyp-test-{RUN}"))

# The run's own Redis database (results, REST replies), claimed in pytest_configure like its database and vhost.
REDIS_URL = ""

_created: dict[str, str] = {}

# The doors' stacks every folder shares (one Tansu, one relay, one REST door per run).
pytest_plugins = ["tests.support.stacks"]


def pytest_configure(config: pytest.Config) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    services.create_mariadb_database(DB_NAME)
    _created["db"] = DB_NAME
    _created["vhost"] = services.create_rabbit_vhost(VHOST)
    global REDIS_URL
    _created["redis"] = str(services.claim_redis_db(RUN))
    REDIS_URL = f"redis://{services.REDIS[0]}:{services.REDIS[1]}/{_created['redis']}"
    os.environ.update(
        {
            "NODE_ENV": "test",
            "TIDB_HOST": "127.0.0.1",
            "TIDB_PORT": "3306",
            "TIDB_USER": "root",
            "TIDB_PASSWORD": "",
            "TIDB_DATABASE": DB_NAME,
            "TIDB_ENABLE_SSL": "false",
            "AUTO_SEED": "true",
            "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{_created['vhost']}",
            "CELERY_RESULT_BACKEND": REDIS_URL,
            "STRIPE_API_BASE": f"http://127.0.0.1:{LOCALSTRIPE_PORT}",
            "STRIPE_SECRET_KEY": STRIPE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "API_KEYS": API_KEY,
            "LOG_STREAM_LEVEL": "DebugEverything",
            "TASK_MAX_RETRIES": "3",
            # The suite (fuzzing, drills) is one caller sending thousands of requests: the limits are tested on
            # their own (tests/api/test_rate_limits.py), with their own settings.
            "RATE_LIMIT_SERVER": "100000/second",
            "RATE_LIMIT_CUSTOMER": "100000/second",
            "RATE_LIMIT_WEBHOOKS": "100000/second",
            # The suite's localstripe enforces no rate limit: the pacing runs on every call, far above its pace
            # (drill 22 paces against a stand-in that refuses, with the test mode's default).
            "STRIPE_RATE_LIMIT": "1000",
            "STRIPE_ENDPOINT_RATE_LIMIT": "500",
        }
    )
    import settings
    import stripe_client

    settings.reload_settings()
    stripe_client.reset_client()


def pytest_unconfigure(config: pytest.Config) -> None:
    if "db" in _created:
        services.drop_mariadb_database(_created["db"])
    services.delete_rabbit_vhost(_created.get("vhost", ""))
    if "redis" in _created:
        services.release_redis_db(int(_created["redis"]), RUN)


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with services.localstripe(LOCALSTRIPE_PORT, LOG_DIR / "localstripe.log") as base:
        yield base


@pytest.fixture(scope="session")
def stripe_api(localstripe_url: str) -> stripe.StripeClient:
    """The test's own Stripe client: plays Stripe.js (makes pm_…) and counts objects at Stripe."""
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": localstripe_url})


@pytest.fixture(scope="session")
def mariadb() -> Iterator[Any]:
    """The run's MariaDB database, migrated and seeded."""
    import models
    from models.schema import migrate, seed
    from settings import get_settings

    db = models.bind_database(get_settings())
    migrate(db)
    seed(db)
    yield db
    db.close_all()


@pytest.fixture(params=["mariadb", "sqlite"])
def domain_db(request: pytest.FixtureRequest, tmp_path: Path, mariadb: Any, localstripe_url: str) -> Iterator[Any]:
    """Domain tests run on both databases: TiDB's protocol (MariaDB) and the zero-setup SQLite."""
    import dataclasses

    import models
    from models.schema import migrate, seed
    from settings import get_settings

    if request.param == "mariadb":
        models.database.initialize(mariadb)
        db = mariadb
    else:
        settings = dataclasses.replace(get_settings(), tidb_host="", sqlite_path=str(tmp_path / "payments.sqlite3"))
        db = models.bind_database(settings)
        migrate(db)
        seed(db)
    with models.unit_of_work():
        yield db
    if request.param == "sqlite":
        db.close()
        models.database.initialize(mariadb)


@pytest.fixture(scope="session")
def worker(localstripe_url: str, mariadb: Any) -> Iterator[Path]:
    """A real Celery worker process consuming every queue; yields its log file."""
    from tasks.app import app

    log_path = LOG_DIR / "worker.log"
    proc = services.start_worker(
        {"METRICS_PORT": str(WORKER_METRICS_PORT)}, log_path, "payments,payment-methods,webhooks,reads", f"test-{RUN}"
    )
    try:
        services.wait_until(lambda: proc.poll() is None and app.control.ping(timeout=1.0), 60, "celery worker")
        yield log_path
    finally:
        services.stop(proc)
        assert proc.returncode is not None


@pytest.fixture()
def dispatch(worker: Path) -> Callable[..., dict[str, Any]]:
    """Send an operation through the broker to the worker and wait for its envelope."""
    from tasks.operations import TASKS

    def send(operation: str, payload: Any, *, key: str | None = None, trace_id: str | None = None) -> dict[str, Any]:
        meta = {"idempotencyKey": key, "traceId": trace_id, "door": "test"}
        return TASKS[operation].apply_async(args=[payload, meta]).get(timeout=90)

    return send


def make_card(stripe_api: stripe.StripeClient, number: str = "4242424242424242") -> str:
    """What Stripe.js does in the browser: turn a card into a `pm_…` (the service never sees the number)."""
    method = stripe_api.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    return method.id
