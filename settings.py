"""The one module that reads configuration (environment, then `.env`) through python-decouple."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from decouple import AutoConfig, Csv

PROJECT_ROOT = Path(__file__).resolve().parent
# A server caller's default limit, counted across the cluster (the limits' Redis): the PRD asks for 1 000 intents/s
# and one calling service (the order service) is one caller; an intent is a create, a confirm and a read or two.
DEFAULT_SERVER_RATE_LIMIT = "5000/second"

# The platform logger's scale (DESIGN.md §Settings).
LOG_LEVELS = {
    "None": -1,
    "ProdStandard": 1,
    "DebugLight": 3,
    "DebugMedium": 10,
    "DebugHeavy": 101,
    "DebugSuperHeavy": 1001,
    "DebugEverything": 99999,
}


def _log_level(value: str) -> int:
    """Accept either the platform's level name or its number."""
    value = value.strip()
    if value in LOG_LEVELS:
        return LOG_LEVELS[value]
    return int(value)


def _optional_rate(value: str) -> int | None:
    """A rate per second, 0 for none; empty means "decided elsewhere" (None)."""
    value = str(value).strip()
    if not value:
        return None
    rate = int(value)
    if rate < 0:
        raise ValueError(f"a rate limit cannot be negative: {rate}")
    return rate


def _rate(value: str) -> int:
    """A rate per second; empty or 0: none."""
    return _optional_rate(value) or 0


def _limit(value: str) -> str:
    """A rate limit as flask-limiter writes it (`2000/second;50000/minute`), checked at start; empty: none."""
    from limits import parse_many

    value = str(value).strip()
    if value:
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit (N/second;N/minute…): {value!r}") from exc
    return value


def _caller_limits(value: str) -> dict[str, str]:
    """RATE_LIMIT_CALLERS: `name=limit` entries, comma-separated, a name of API_KEYS (`name:key`) each; an empty
    limit (`reports=`) lifts that caller's."""
    limits: dict[str, str] = {}
    for entry in (e.strip() for e in str(value).split(",")):
        if not entry:
            continue
        name, sep, limit = entry.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", name.strip()):
            raise ValueError(f"RATE_LIMIT_CALLERS entries are name=limit with an API_KEYS name, not {entry!r}")
        limits[name.strip()] = _limit(limit)
    return limits


def _queue_type(value: str) -> str:
    """A RabbitMQ queue type the Celery queues can be declared as."""
    value = value.strip().lower()
    if value not in {"classic", "quorum"}:
        raise ValueError(f"CELERY_QUEUE_TYPE is classic or quorum, not {value!r}")
    return value


def _at_least(minimum: int, name: str, why: str) -> Callable[[str], int]:
    """A whole number not below `minimum`: a smaller one is refused at start, with the reason."""

    def cast(value: str) -> int:
        number = int(str(value).strip())
        if number < minimum:
            raise ValueError(f"{name} must be at least {minimum} ({why}), not {number}")
        return number

    return cast


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _librdkafka_options(config: AutoConfig, prefix: str) -> dict[str, str]:
    """librdkafka options from variables named prefix + option, dots as underscores (`..._FETCH_WAIT_MAX_MS`)."""
    repository = getattr(getattr(config, "config", None), "repository", None)
    names = set(os.environ) | set(getattr(repository, "data", {}))
    return {
        name[len(prefix) :].lower().replace("_", "."): config(name)
        for name in sorted(names)
        if name.startswith(prefix) and len(name) > len(prefix)
    }


# Each payment event type's topics: its own (today's kebab-case names, our payload) and the PRD's (the names the
# platform's order service subscribes to, the PRD's payload). Each setting is a comma-separated list; empty: off.
EVENT_TOPIC_SETTINGS: dict[str, tuple[tuple[str, str], tuple[str, str] | None]] = {
    "created-payment-intent": (
        ("EVENT_TOPIC_CREATED_PAYMENT_INTENT", "created-payment-intent"),
        ("EVENT_TOPIC_PAYMENT_INTENT_CREATED", "PaymentIntentCreated"),
    ),
    "succeeded-payment": (
        ("EVENT_TOPIC_SUCCEEDED_PAYMENT", "succeeded-payment"),
        ("EVENT_TOPIC_PAYMENT_SUCCEEDED", "PaymentSucceeded"),
    ),
    "failed-payment": (
        ("EVENT_TOPIC_FAILED_PAYMENT", "failed-payment"),
        ("EVENT_TOPIC_PAYMENT_FAILED", "PaymentFailed"),
    ),
    "canceled-payment": (("EVENT_TOPIC_CANCELED_PAYMENT", "canceled-payment"), None),
    "created-refund": (
        ("EVENT_TOPIC_CREATED_REFUND", "created-refund"),
        ("EVENT_TOPIC_REFUND_CREATED", "RefundCreated"),
    ),
    "refund-succeeded-payment": (
        ("EVENT_TOPIC_REFUND_SUCCEEDED_PAYMENT", "refund-succeeded-payment"),
        ("EVENT_TOPIC_REFUND_SUCCEEDED", "RefundSucceeded"),
    ),
    "failed-refund": (
        ("EVENT_TOPIC_FAILED_REFUND", "failed-refund"),
        ("EVENT_TOPIC_REFUND_FAILED", "RefundFailed"),
    ),
    "payment-status-changed": (("EVENT_TOPIC_PAYMENT_STATUS_CHANGED", "payment-status-changed"), None),
}


def _topic_list(value: str) -> tuple[str, ...]:
    """A comma-separated list of topics, each once; empty (or only commas) turns the topic off."""
    return tuple(dict.fromkeys(t.strip() for t in str(value).split(",") if t.strip()))


def _event_topic_settings(config: AutoConfig) -> dict[str, dict]:
    """event_routes and event_topics from the EVENT_TOPIC_* settings (a topic named twice for a type: once)."""
    routes: dict[str, tuple[tuple[str, str], ...]] = {}
    first: dict[str, str] = {}
    for event_type, (own, platform) in EVENT_TOPIC_SETTINGS.items():
        own_topics = _topic_list(config(own[0], default=own[1]))
        platform_topics = _topic_list(config(platform[0], default=platform[1])) if platform else ()
        chosen: dict[str, str] = {}
        for topic in own_topics:
            chosen.setdefault(topic, "service")
        for topic in platform_topics:
            chosen.setdefault(topic, "platform")
        routes[event_type] = tuple(chosen.items())
        first[event_type] = own_topics[0] if own_topics else ""
    return {"event_routes": routes, "event_topics": first}


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; built only by `load_settings`. Secrets stay out of its repr (Sentry, logs)."""

    app_port: int
    node_env: str
    kafka_broker: str
    kafka_group: str
    log_stream_level: int
    sentry_dsn: str = field(repr=False)
    stripe_secret_key: str = field(repr=False)
    stripe_webhook_secret: str = field(repr=False)
    stripe_api_base: str
    stripe_timeout_s: float
    # Calls per second paced across every worker (stripe_pacing.py); None: Stripe's default for the key's mode.
    stripe_rate_limit: int | None
    stripe_endpoint_rate_limit: int  # calls per second to one Stripe resource (Stripe's default 25); 0: not paced
    tidb_host: str
    tidb_port: int
    tidb_user: str
    tidb_password: str = field(repr=False)
    tidb_database: str
    tidb_enable_ssl: bool
    tidb_ca_path: str
    db_pool_size: int
    sqlite_path: str
    auto_seed: bool
    celery_broker_url: str = field(repr=False)
    celery_result_backend: str = field(repr=False)
    api_keys: tuple[str, ...] = field(repr=False)
    rest_timeout_ms: int
    idempotency_ttl_s: int
    task_max_retries: int
    payments_concurrency: int
    # RabbitMQ queue type of the Celery queues: "classic", or "quorum" (replicated across the broker's nodes), and
    # how often a quorum queue delivers one message before dropping it as poison.
    celery_queue_type: str
    celery_delivery_limit: int
    metrics_port: int
    local_redis_port: int
    local_kafka_port: int
    local_stripe_port: int
    kafka_topic_partitions: int
    kafka_topic_replication: int
    kafka_consume_batch: int
    kafka_delivery_timeout_s: float
    # librdkafka options from KAFKA_OPT_* (every client), KAFKA_CONSUMER_OPT_* and KAFKA_PRODUCER_OPT_*.
    kafka_options: dict[str, str]
    kafka_consumer_options: dict[str, str]
    kafka_producer_options: dict[str, str]
    # Payment events (domain/payment_events.py): where each type is published, and the outbox's publishing.
    # event_routes: type → ((topic, dialect), …), every topic its row goes to ("service": our payload, "platform":
    # the PRD's event); event_topics: type → its first own-dialect topic ("" when off), for a reader of one topic.
    event_routes: dict[str, tuple[tuple[str, str], ...]]
    event_topics: dict[str, str]
    outbox_shards: int
    outbox_batch: int
    outbox_retention_days: int
    # The Socket.IO door (socket_door/): where it listens, which browsers may connect, its customer tokens.
    socket_host: str
    socket_port: int
    socket_transports: tuple[str, ...]
    socket_allowed_origins: tuple[str, ...]
    socket_token_secret: str = field(repr=False)
    socket_token_ttl_s: int
    stripe_publishable_key: str
    # Rate limits (api/limits.py, the socket door): per caller, scoped by kind; Stripe's webhooks per source; ""
    # turns one off. A server caller (API key, OAuth2 client) has RATE_LIMIT_SERVER or its own RATE_LIMIT_CALLERS
    # entry; a customer token (a browser, socket door) RATE_LIMIT_CUSTOMER.
    rate_limit_server: str
    rate_limit_customer: str
    rate_limit_callers: dict[str, str]
    rate_limit_webhooks: str
    rate_limit_storage: str = field(repr=False)
    # OAuth2 bearer tokens (JWT) of the REST door (doors/oauth.py), beside API keys; off while no key source is set.
    oauth_issuer: str
    oauth_audience: str
    oauth_jwks_url: str
    oauth_jwks_file: str
    oauth_hs256_secret: str = field(repr=False)
    oauth_leeway_s: int
    # The platform's dialect (doors/platform.py): the key of the hash that names a customer known only by e-mail,
    # and whether the REST door takes creates priced by the caller's items.
    customer_email_key: str = field(repr=False)
    rest_item_priced_creates: bool = True
    # Retention (domain/retention.py, beat daily and `payments retention`): what is archived or deleted, when.
    retention_enabled: bool = False
    retention_archive_dir: str = str(PROJECT_ROOT / "var" / "archive")
    retention_intent_months: int = 12
    retention_refund_years: int = 5
    retention_webhook_days: int = 90
    retention_idempotency_hours: int = 24
    retention_batch: int = 500
    retention_time_budget_s: int = 1800
    # The operator page's own people (api/ops_auth.py): `name:<werkzeug password hash>:act|read` entries; API
    # callers' page scopes (`caller name=ops:act|ops:read`; unlisted: ops:read); the secret signing its session.
    ops_users: tuple[str, ...] = field(default=(), repr=False)
    ops_key_scopes: tuple[str, ...] = ()
    ops_secret: str = field(default="", repr=False)

    @property
    def published_event_topics(self) -> list[str]:
        """Every topic a payment event is published to (each once, in the settings' order)."""
        return list(dict.fromkeys(topic for routes in self.event_routes.values() for topic, _ in routes))

    @property
    def uses_sqlite(self) -> bool:
        """The zero-setup database stands in while TIDB_HOST is empty."""
        return not self.tidb_host

    @property
    def broker_url(self) -> str:
        # Empty means the zero-setup local Redis that `make run` starts (so `payments` beside it reaches it too).
        return self.celery_broker_url or f"redis://127.0.0.1:{self.local_redis_port}/0"

    @property
    def result_backend(self) -> str:
        if self.celery_result_backend:
            return self.celery_result_backend
        if not self.celery_broker_url:
            return f"redis://127.0.0.1:{self.local_redis_port}/1"  # as `make run` sets it
        # A Redis broker doubles as the result store; AMQP needs one named.
        return self.broker_url if self.broker_url.startswith("redis") else "rpc://"

    @property
    def redis_url(self) -> str | None:
        """The service's Redis (the result store's, else the broker's), shared by its web processes for rate-limit
        counts and Socket.IO's queue; None when it runs without Redis."""
        for url in (self.result_backend, self.broker_url):
            if url.startswith(("redis://", "rediss://", "unix://")):
                return url
        return None

    @property
    def stripe_api_url(self) -> str:
        """STRIPE_API_BASE; empty: Stripe's own API when a secret key is set, else `make run`'s localstripe (no key
        never reaches real Stripe)."""
        if self.stripe_api_base:
            return self.stripe_api_base
        return "https://api.stripe.com" if self.stripe_secret_key else f"http://127.0.0.1:{self.local_stripe_port}"

    @property
    def stripe_calls_per_s(self) -> int:
        """STRIPE_RATE_LIMIT, else Stripe's default for the key's mode: 100/s live, 25/s test; 0: not paced."""
        if self.stripe_rate_limit is not None:
            return self.stripe_rate_limit
        return 100 if self.stripe_api_key.startswith(("sk_live_", "rk_live_")) else 25

    @property
    def stripe_api_key(self) -> str:
        # A syntactically valid test key for the zero-setup localstripe.
        return self.stripe_secret_key or "sk_test_local_stand_in"


def load_settings() -> Settings:
    """Read every setting from the environment, then `.env` in the working directory or the project."""
    search = os.getcwd() if Path(os.getcwd(), ".env").exists() else str(PROJECT_ROOT)
    config = AutoConfig(search_path=search)
    return Settings(
        app_port=config("APP_PORT", default=8080, cast=int),
        node_env=config("NODE_ENV", default="production"),
        kafka_broker=config("KAFKA_BROKER", default=""),
        kafka_group=config("KAFKA_GROUP", default="vy-finance-payments"),
        log_stream_level=config("LOG_STREAM_LEVEL", default="1", cast=_log_level),
        sentry_dsn=config("SENTRY_DNS", default=""),
        stripe_secret_key=config("STRIPE_SECRET_KEY", default=""),
        stripe_webhook_secret=config("STRIPE_WEBHOOK_SECRET", default=""),
        stripe_api_base=config("STRIPE_API_BASE", default=""),
        stripe_timeout_s=config("STRIPE_TIMEOUT_S", default=20.0, cast=float),
        stripe_rate_limit=config("STRIPE_RATE_LIMIT", default="", cast=_optional_rate),
        stripe_endpoint_rate_limit=config(
            "STRIPE_ENDPOINT_RATE_LIMIT", default="25", cast=lambda v: _optional_rate(v) or 0
        ),
        tidb_host=config("TIDB_HOST", default=""),
        tidb_port=config("TIDB_PORT", default=4000, cast=int),
        tidb_user=config("TIDB_USER", default="root"),
        tidb_password=config("TIDB_PASSWORD", default=""),
        tidb_database=config("TIDB_DATABASE", default="payments"),
        tidb_enable_ssl=config("TIDB_ENABLE_SSL", default="false", cast=_bool),
        tidb_ca_path=config("TIDB_CA_PATH", default=""),
        db_pool_size=config("DB_POOL_SIZE", default=64, cast=int),
        sqlite_path=config("SQLITE_PATH", default=str(PROJECT_ROOT / "var" / "payments.sqlite3")),
        auto_seed=config("AUTO_SEED", default="false", cast=_bool),
        celery_broker_url=config("CELERY_BROKER_URL", default=""),
        celery_result_backend=config("CELERY_RESULT_BACKEND", default=""),
        api_keys=tuple(k for k in config("API_KEYS", default="", cast=Csv()) if k),
        rest_timeout_ms=config("REST_TIMEOUT", default=45000, cast=int),
        idempotency_ttl_s=config("IDEMPOTENCY_TTL_S", default=86400, cast=int),
        task_max_retries=config("TASK_MAX_RETRIES", default=5, cast=int),
        payments_concurrency=config("PAYMENTS_CONCURRENCY", default=128, cast=int),
        celery_queue_type=config("CELERY_QUEUE_TYPE", default="classic", cast=_queue_type),
        celery_delivery_limit=config("CELERY_DELIVERY_LIMIT", default=10, cast=int),
        metrics_port=config("METRICS_PORT", default=0, cast=int),
        local_redis_port=config("LOCAL_REDIS_PORT", default=6391, cast=int),
        local_kafka_port=config("LOCAL_KAFKA_PORT", default=9092, cast=int),
        local_stripe_port=config("LOCAL_STRIPE_PORT", default=8420, cast=int),
        kafka_topic_partitions=config("KAFKA_TOPIC_PARTITIONS", default=3, cast=int),
        kafka_topic_replication=config("KAFKA_TOPIC_REPLICATION", default=-1, cast=int),
        kafka_consume_batch=config("KAFKA_CONSUME_BATCH", default=100, cast=int),
        kafka_delivery_timeout_s=config("KAFKA_DELIVERY_TIMEOUT_S", default=10.0, cast=float),
        kafka_options=_librdkafka_options(config, "KAFKA_OPT_"),
        kafka_consumer_options=_librdkafka_options(config, "KAFKA_CONSUMER_OPT_"),
        kafka_producer_options=_librdkafka_options(config, "KAFKA_PRODUCER_OPT_"),
        **_event_topic_settings(config),
        outbox_shards=config("OUTBOX_SHARDS", default=16, cast=int),
        outbox_batch=config("OUTBOX_BATCH", default=200, cast=int),
        outbox_retention_days=config("OUTBOX_RETENTION_DAYS", default=7, cast=int),
        socket_host=config("SOCKET_HOST", default="0.0.0.0"),  # noqa: S104 (reached from outside its container)
        socket_port=config("SOCKET_PORT", default=8090, cast=int),
        socket_transports=tuple(config("SOCKET_TRANSPORTS", default="websocket", cast=Csv())),
        socket_allowed_origins=tuple(o for o in config("SOCKET_ALLOWED_ORIGINS", default="", cast=Csv()) if o),
        socket_token_secret=config("SOCKET_TOKEN_SECRET", default=""),
        socket_token_ttl_s=config("SOCKET_TOKEN_TTL_S", default=900, cast=int),
        stripe_publishable_key=config("STRIPE_PUBLISHABLE_KEY", default=""),
        # RATE_LIMIT was the one limit of every caller: where a deployment still sets it, it stays the servers'.
        rate_limit_server=_limit(
            config("RATE_LIMIT_SERVER", default=config("RATE_LIMIT", default=DEFAULT_SERVER_RATE_LIMIT))
        ),
        rate_limit_customer=config("RATE_LIMIT_CUSTOMER", default="20/second;600/minute", cast=_limit),
        rate_limit_callers=config("RATE_LIMIT_CALLERS", default="", cast=_caller_limits),
        rate_limit_webhooks=config("RATE_LIMIT_WEBHOOKS", default="200/second"),
        rate_limit_storage=config("RATE_LIMIT_STORAGE", default=""),
        oauth_issuer=config("OAUTH_ISSUER", default=""),
        oauth_audience=config("OAUTH_AUDIENCE", default=""),
        oauth_jwks_url=config("OAUTH_JWKS_URL", default=""),
        oauth_jwks_file=config("OAUTH_JWKS_FILE", default=""),
        oauth_hs256_secret=config("OAUTH_HS256_SECRET", default=""),
        oauth_leeway_s=config("OAUTH_LEEWAY_S", default=30, cast=int),
        customer_email_key=config("CUSTOMER_EMAIL_KEY", default=""),
        rest_item_priced_creates=config("REST_ITEM_PRICED_CREATES", default="true", cast=_bool),
        retention_enabled=config("RETENTION_ENABLED", default="false", cast=_bool),
        retention_archive_dir=config("RETENTION_ARCHIVE_DIR", default=str(PROJECT_ROOT / "var" / "archive")),
        retention_intent_months=config(
            "RETENTION_INTENT_MONTHS", default=12, cast=_at_least(1, "RETENTION_INTENT_MONTHS", "a month")
        ),
        retention_refund_years=config(
            "RETENTION_REFUND_YEARS", default=5, cast=_at_least(1, "RETENTION_REFUND_YEARS", "a year")
        ),
        retention_webhook_days=config(
            "RETENTION_WEBHOOK_DAYS",
            default=90,
            cast=_at_least(30, "RETENTION_WEBHOOK_DAYS", "Stripe keeps events 30 days: a sweep would fetch them back"),
        ),
        retention_idempotency_hours=config(
            "RETENTION_IDEMPOTENCY_HOURS",
            default=24,
            cast=_at_least(24, "RETENTION_IDEMPOTENCY_HOURS", "Stripe keeps an idempotency key 24 hours"),
        ),
        retention_batch=config("RETENTION_BATCH", default=500, cast=_at_least(1, "RETENTION_BATCH", "a row")),
        retention_time_budget_s=config(
            "RETENTION_TIME_BUDGET_S", default=1800, cast=_at_least(1, "RETENTION_TIME_BUDGET_S", "a second")
        ),
        ops_users=tuple(u for u in config("OPS_USERS", default="", cast=Csv()) if u),
        ops_key_scopes=tuple(s for s in config("OPS_KEY_SCOPES", default="", cast=Csv()) if s),
        ops_secret=config("OPS_SECRET", default=""),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


def reload_settings() -> Settings:
    """Forget the cached settings (tests change the environment between runs)."""
    get_settings.cache_clear()
    return get_settings()
