"""Celery settings: JSON only, late acks for everything that may reach Stripe, routing from the registry."""

import sys

from celery.schedules import crontab
from kombu import Exchange, Queue

from registry import OPERATIONS, QUEUES
from settings import get_settings

_settings = get_settings()
PERIODIC = ("payments.janitor", "payments.sweep-stripe-events", "payments.prune-events", "payments.retention")


broker_url = _settings.broker_url
result_backend = _settings.result_backend
broker_connection_retry_on_startup = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
timezone = "UTC"
enable_utc = True


def declared_queues(queue_type: str, delivery_limit: int) -> list[Queue]:
    """The Celery queues as the workers and doors declare them: durable, classic or quorum. A quorum queue is
    replicated over the RabbitMQ cluster (a task outlives a broker node) and counts the deliveries of each message:
    past `delivery_limit` a task that kept killing its worker is dropped as poison instead of looping for ever."""
    arguments = {"x-queue-type": "quorum", "x-delivery-limit": delivery_limit} if queue_type == "quorum" else None
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name, durable=True, queue_arguments=arguments)
        for name in QUEUES
    ]


task_queues = declared_queues(_settings.celery_queue_type, _settings.celery_delivery_limit)
# Quorum queues refuse a global QoS: Celery sees their x-queue-type and sets the prefetch per consumer instead.
worker_detect_quorum_queues = True
task_default_queue = "payments"
task_routes = {op.task_name: {"queue": op.queue, "routing_key": op.queue} for op in OPERATIONS.values()}
# The periodic tasks call Stripe: they run beside the payments.
task_routes.update({name: {"queue": "payments", "routing_key": "payments"} for name in PERIODIC})
# The operator view's Stripe probe is a read: never behind a queue of payments.
task_routes["payments.probe-stripe"] = {"queue": "reads", "routing_key": "reads"}

# Celery beat (Procfile `beat`): one scheduler per deployment.
beat_schedule = {
    "janitor": {"task": "payments.janitor", "schedule": 60.0},
    "sweep-stripe-events": {"task": "payments.sweep-stripe-events", "schedule": 300.0},
    "prune-events": {"task": "payments.prune-events", "schedule": 3600.0},
    # Daily, at a quiet hour (UTC); a run does nothing unless RETENTION_ENABLED.
    "retention": {"task": "payments.retention", "schedule": crontab(hour=3, minute=17)},
}


# A task is acknowledged only once it has finished; a worker lost mid-task gives it back to the broker.
task_acks_late = True
task_reject_on_worker_lost = True
# A late-acked task whose broker connection is lost can no longer be acked and RabbitMQ redelivers it; this copy
# goes on and the claim's execution lease makes the redelivery wait and replay its outcome (domain/idempotency.py).
# Not cancelled: killing a greenlet mid-read of a MySQL reply could leave a half-read connection for the pool.
worker_cancel_long_running_tasks_on_connection_loss = False
# One message at a time per execution slot: a slow Stripe call never sits on messages others could run.
worker_prefetch_multiplier = 1
# After a broker reconnect Celery would lower the prefetch count and raise it again with a basic.qos from each
# finishing task's greenlet, on the consumer's own socket: under gevent that is a second reader of the socket, and
# ConcurrentObjectUseError kills the worker (celery/celery#9512, celery/kombu#2463). Restored at once instead.
worker_enable_prefetch_count_reduction = False
# Greenlets of a Stripe-queue worker (the Procfile's reads worker sets its own with -c).
worker_concurrency = _settings.payments_concurrency

# The platform gateway gives up after REST_TIMEOUT; past twice that a task is stuck, not slow.
task_soft_time_limit = max(30, 2 * _settings.rest_timeout_ms // 1000)
task_time_limit = task_soft_time_limit + 30

# RabbitMQ confirms each publish, so a door knows the request is durably queued.
broker_transport_options = {
    "confirm_publish": True,
    # Redis as broker: redeliver an unacked task only after it could have finished.
    "visibility_timeout": task_time_limit * 4,
}
# Results carry a client secret in transit: the REST door deletes each once read, and one it stopped waiting
# for expires soon after the gateway would have given up.
result_expires = max(60, 2 * _settings.rest_timeout_ms // 1000)
result_extended = False
task_track_started = False
worker_send_task_events = False
worker_hijack_root_logger = False
# Workers only store results: one backend (one Redis pool) per process instead of one per greenlet, which
# opened new Redis connections for every task. Not in the doors: there a shared result pubsub loses wake-ups
# under gevent and answers stall for its 1 s poll (bench/RESULTS.md).
result_backend_thread_safe = "celery" in sys.argv[0] and "worker" in sys.argv[1:]
