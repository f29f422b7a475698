"""Peewee models, the database binding, migrations and the seed."""

from models.base import bind_database, database, unit_of_work, utcnow, write_transaction
from models.currencies import Currency
from models.customers import Customer
from models.idempotency import IdempotencyRecord
from models.ops_audit import OpsAudit
from models.payment_attempts import PaymentAttempt
from models.payment_events import OutboxLease, OutboxPublisher, PaymentEvent
from models.payment_intents import PaymentIntent, ZtrackingPaymentIntent
from models.payment_methods import PaymentMethod
from models.refunds import Refund
from models.webhook_events import WebhookEvent

ALL_MODELS = [
    Currency,
    Customer,
    PaymentIntent,
    ZtrackingPaymentIntent,
    Refund,
    PaymentMethod,
    WebhookEvent,
    IdempotencyRecord,
    PaymentAttempt,
    PaymentEvent,
    OutboxPublisher,
    OutboxLease,
    OpsAudit,
]

__all__ = [
    "ALL_MODELS",
    "Currency",
    "Customer",
    "IdempotencyRecord",
    "OpsAudit",
    "OutboxLease",
    "OutboxPublisher",
    "PaymentAttempt",
    "PaymentEvent",
    "PaymentIntent",
    "PaymentMethod",
    "Refund",
    "WebhookEvent",
    "ZtrackingPaymentIntent",
    "bind_database",
    "database",
    "unit_of_work",
    "utcnow",
    "write_transaction",
]
