"""Fixtures of the reliability drills: the drills' own stack of the service, and the evidence drill 11 scans.

The drills' stack runs over the machine's shared MariaDB, RabbitMQ and Redis (a database and a vhost of its own),
its own localstripe behind a Stripe-like proxy (idempotency and faults on cue), its own Tansu behind a TCP proxy
(a broker "restart"), and a fake Sentry endpoint that every drill process reports to. Drills that restart a server
start a private one (tests/support/private_servers.py). `DRILLS_FULL=1` (make drills) runs full sizes; without it
the fast subset of `make test` runs.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import stripe
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tests.conftest import LOG_DIR, RUN
from tests.drills.stack import Stack, StackConfig
from tests.support import kafka, services
from tests.support.fake_sentry import FakeSentry, fake_sentry
from tests.support.rest import BearerSession
from tests.support.stripe_proxy import StripeProxy, stripe_proxy
from tests.support.tcp_proxy import TcpProxy

FULL = bool(os.environ.get("DRILLS_FULL"))
DRILL_LOG_DIR = LOG_DIR / "drills"
DRILL_DB = f"vyp_drill_{RUN}"
DRILL_VHOST = f"vyp_drill_{RUN}"
# The drills' stacks get a Redis database of their own, claimed for this run like the suite's (tests/conftest.py):
# never another run's results or replies, and not the suite's own either (the drill stacks sharing the test
# process's database lost REST replies in drill 6's refund faults, reproduced; kept apart as before).
DRILL_REDIS_DB = services.claim_redis_db(f"{RUN}-drills")
DRILL_RESULTS = f"redis://{services.REDIS[0]}:{services.REDIS[1]}/{DRILL_REDIS_DB}"
# The drills' secrets: drill 11 looks for these exact strings everywhere the drills wrote.
STRIPE_KEY = f"sk_test_drill{RUN}key"
WEBHOOK_SECRET = f"whsec_drill{RUN}secret"
API_KEY = f"vyp-drill-key-{RUN}"
OTHER_API_KEY = f"vyp-drill-other-{RUN}"
TEST_CARDS = {"4242424242424242": "314", "5555555555554444": "2718", "4000000000000341": "1618"}
KAFKA_PARTITIONS = 2


def local_broker(vhost: str) -> str:
    """The machine's shared RabbitMQ, on one vhost."""
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


def drill_config(name: str, log_dir: Path, sentry: FakeSentry, **settings: Any) -> StackConfig:
    """A drill stack's settings: the drills' result store, Stripe key, webhook secret, API keys and Sentry unless
    `settings` name others, and whatever else `settings` name (database, broker, Stripe's address…)."""
    drills: dict[str, Any] = {
        "result_backend": DRILL_RESULTS,
        "stripe_key": STRIPE_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "api_keys": (API_KEY, OTHER_API_KEY),
        "sentry_dsn": sentry.dsn,
    }
    return StackConfig(name=name, log_dir=log_dir, **{**drills, **settings})


def size(fast: int, full: int) -> int:
    """A drill's size: `full` under DRILLS_FULL=1 (make drills), else `fast` (make test)."""
    return full if FULL else fast


@dataclass
class Evidence:
    """What drill 11 scans after every drill: logs, databases, Sentry, and the secrets to look for."""

    log_dirs: list[Path] = field(default_factory=lambda: [LOG_DIR])
    databases: list[dict[str, Any]] = field(default_factory=list)  # pymysql connect params with database
    dumps: list[Path] = field(default_factory=list)  # tables of private servers, dumped before they went
    client_secrets: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=lambda: {STRIPE_KEY, WEBHOOK_SECRET, API_KEY, OTHER_API_KEY})
    cards: dict[str, str] = field(default_factory=lambda: dict(TEST_CARDS))
    sentry: FakeSentry | None = None


EVIDENCE = Evidence()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "drill_last: runs after every other test (drill 11 scans what they wrote)")


def pytest_unconfigure(config: pytest.Config) -> None:
    services.release_redis_db(DRILL_REDIS_DB, f"{RUN}-drills")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker("drill_last")]
    if last:
        items[:] = [item for item in items if not item.get_closest_marker("drill_last")] + last


def dump_tables(params: dict[str, Any]) -> str:
    """Every row of every table of one database, as text."""
    import pymysql

    conn = pymysql.connect(**params)
    chunks = []
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            for (table,) in cur.fetchall():
                cur.execute(f"SELECT * FROM `{table}`")
                for row in cur.fetchall():
                    chunks.append(f"{table}: " + " | ".join(str(v) for v in row))
    finally:
        conn.close()
    return "\n".join(chunks)


@pytest.fixture(scope="session")
def drill_log_dir() -> Path:
    DRILL_LOG_DIR.mkdir(parents=True, exist_ok=True)
    return DRILL_LOG_DIR


@pytest.fixture(scope="session")
def sentry() -> Iterator[FakeSentry]:
    with fake_sentry() as fake:
        EVIDENCE.sentry = fake
        yield fake


@pytest.fixture(scope="session")
def drill_localstripe(drill_log_dir: Path) -> Iterator[str]:
    """The drills' own localstripe: its objects are counted by the drills alone."""
    port = services.free_port()
    with services.localstripe(port, drill_log_dir / "localstripe.log") as base:
        yield base


@pytest.fixture(scope="session")
def stripe_api(drill_localstripe: str) -> stripe.StripeClient:
    """Stripe as the drills see it (straight to localstripe): makes pm_… as Stripe.js does, counts objects."""
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": drill_localstripe})


@pytest.fixture(scope="session")
def proxy(drill_localstripe: str) -> Iterator[StripeProxy]:
    with stripe_proxy(drill_localstripe) as running:
        yield running


@pytest.fixture(scope="session")
def drill_database() -> Iterator[str]:
    services.create_mariadb_database(DRILL_DB)
    EVIDENCE.databases.append({**services.MARIADB, "database": DRILL_DB})
    yield DRILL_DB
    services.drop_mariadb_database(DRILL_DB)


@pytest.fixture(scope="session")
def drill_vhost() -> Iterator[str]:
    vhost = services.create_rabbit_vhost(DRILL_VHOST)
    yield vhost
    services.delete_rabbit_vhost(vhost)


@dataclass
class KafkaSetup:
    address: str  # what clients bootstrap from (the proxy)
    proxy: TcpProxy
    collector: kafka.Collector
    gateway: kafka.Gateway


QUIET = 2  # librdkafka's syslog level: the drills' own clients say nothing of the outages the drills cause


class QuietCollector(kafka.Collector):
    """tests/support/kafka.py's Collector, with its consumer's librdkafka log lines off."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collector-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "log_level": QUIET,
                **kafka.FAST_CONSUMER,
            }
        )
        metadata = self._consumer.list_topics(timeout=10)
        self._consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata.topics[t].partitions]
        )
        self._by_key = defaultdict(list)
        self._all = []
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="kafka-collector", daemon=True)
        self._thread.start()


@pytest.fixture(scope="session")
def drill_kafka(drill_log_dir: Path) -> Iterator[KafkaSetup]:
    """Tansu behind a TCP proxy (advertised), with the door's topics; a collector reads every answer."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from messaging.config import door_topics

    with kafka.tansu_behind_proxy(drill_log_dir / "tansu.log") as (address, tcp):
        admin = AdminClient({"bootstrap.servers": address})  # kept alive until its futures are done
        futures = admin.create_topics([NewTopic(t, KAFKA_PARTITIONS) for t in door_topics()])
        for future in futures.values():
            future.result(10)
        from registry import OPERATIONS

        answers = [t for op in OPERATIONS.values() for t in (op.response_topic, f"{op.name}-dlq")]
        collector = QuietCollector(address, answers)
        try:
            gateway = kafka.Gateway(address, collector)
            gateway.producer = Producer({"bootstrap.servers": address, "linger.ms": 1, "log_level": QUIET})
            yield KafkaSetup(address, tcp, collector, gateway)
            gateway.producer.flush(5)
            del gateway.producer  # librdkafka stops retrying the broker once its producer is gone
        finally:
            collector.close()


@pytest.fixture(scope="session")
def stack(
    drill_log_dir: Path,
    drill_database: str,
    drill_vhost: str,
    proxy: StripeProxy,
    drill_kafka: KafkaSetup,
    sentry: FakeSentry,
) -> Iterator[Stack]:
    """The drills' service: one worker on every queue, gunicorn, the relay — Stripe through the proxy."""
    config = drill_config(
        "drills",
        drill_log_dir,
        sentry,
        db_name=drill_database,
        broker_url=local_broker(drill_vhost),
        stripe_api_base=proxy.url,
        kafka_broker=drill_kafka.address,
        kafka_group=f"vyp-drills-{RUN}",
        kafka_partitions=KAFKA_PARTITIONS,
        task_max_retries=3,
        stripe_timeout_s=4.0,
    )
    running = Stack(config)
    try:
        running.start_worker(concurrency=60)
        running.start_api()
        running.wait_ready()
        running.start_relay()
        yield running
    finally:
        running.close()


@contextmanager
def database_of_its_own(label: str) -> Iterator[Any]:
    """A migrated, seeded database for one drill module: the janitor works on every claim it finds, and there it
    finds only that drill's (give it to the service with a module's `service_database` fixture)."""
    import dataclasses

    import models
    from models.schema import migrate, seed
    from settings import get_settings

    name = f"vyp_{label}_{RUN}"
    services.create_mariadb_database(name)
    db = models.base.make_database(dataclasses.replace(get_settings(), tidb_database=name))
    migrate(db)
    seed(db)
    try:
        yield db
    finally:
        db.close_all()
        # Drill 11 scans what the drill wrote: the tables are kept as a dump, since the database goes now.
        DRILL_LOG_DIR.mkdir(parents=True, exist_ok=True)
        dump = DRILL_LOG_DIR / f"tables-{label}-{RUN}.txt"
        dump.write_text(dump_tables({**services.MARIADB, "database": name}))
        EVIDENCE.dumps.append(dump)
        services.drop_mariadb_database(name)


def service_database_of_its_own(label: str) -> Any:
    """A module's `service_database` fixture: a database of the module's own (database_of_its_own), made once for
    the module, that the in-process service then works on."""

    @pytest.fixture(scope="module", name="service_database")
    def own_database() -> Iterator[Any]:
        with database_of_its_own(label) as db:
            yield db

    return own_database


@pytest.fixture()
def service_database(mariadb: Any) -> Any:
    """The database the in-process service works on (a drill may give it one of its own)."""
    return mariadb


@pytest.fixture()
def service(
    proxy: StripeProxy, service_database: Any, mariadb: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StripeProxy]:
    """The service's own code in this process (domain functions, the janitor), its Stripe client pointed at the
    drills' faithful Stripe with a 1 s timeout; yields the proxy, to add faults and read what it saw."""
    import models
    import settings
    import stripe_client

    monkeypatch.setenv("STRIPE_API_BASE", proxy.url)
    monkeypatch.setenv("STRIPE_TIMEOUT_S", "1")
    settings.reload_settings()
    stripe_client.reset_client()
    models.database.initialize(service_database)
    proxy.clear()
    try:
        with models.unit_of_work():
            yield proxy
    finally:
        proxy.clear()
        models.database.initialize(mariadb)
        monkeypatch.undo()
        settings.reload_settings()
        stripe_client.reset_client()


class Api(BearerSession):
    """HTTP to a stack's API with the drills' bearer key."""

    def __init__(self, base: str, key: str | None = API_KEY) -> None:
        super().__init__(base, key)


@pytest.fixture()
def api(stack: Stack) -> Api:
    return Api(stack.api_url)


def make_card(stripe_api: stripe.StripeClient, number: str = "4242424242424242") -> str:
    """What Stripe.js does in the browser: the card goes to Stripe, the service gets a `pm_…`."""
    method = stripe_api.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": TEST_CARDS.get(number, "123")},
        }
    )
    return method.id
