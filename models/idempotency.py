"""Idempotency records: one per (scoped) key, with Stripe's replay semantics."""

from peewee import AutoField, CharField, IntegerField

from models.base import BaseModel, JSONField, UTCDateTimeField, utcnow


class IdempotencyRecord(BaseModel):
    id = AutoField()  # peewee's implicit key, declared so the type checker knows it
    # sha256 of the scoped key, so any caller key fits one fixed-width unique index.
    key_hash = CharField(max_length=64, unique=True)
    operation = CharField(max_length=64)
    fingerprint = CharField(max_length=64)  # sha256 of the operation and its canonical request
    state = CharField(max_length=16, index=True)  # in_flight | completed | retryable (indexed: migration 011)
    owner = CharField(max_length=255)  # the Celery task id executing it; a redelivery has the same id
    # The one execution running it now (a redelivery shares the owner, not this), live while its heartbeat renews
    # execution_until; NULL between a task's retries, so the owner's next execution takes it at once.
    execution_token = CharField(max_length=32, null=True)
    execution_until = UTCDateTimeField(null=True)
    resource_id = CharField(max_length=40)  # our id for what it creates, fixed before Stripe is called
    trace_id = CharField(max_length=128)  # the first attempt's: Stripe parameters must not differ on retry
    outcome = JSONField(null=True)  # the stored response or error, never a client secret
    request = JSONField(null=True)  # the canonical request, so the janitor can finish an abandoned one
    stripe_params = JSONField(null=True)  # what the first attempt sent to Stripe: a retry sends the same
    # Set (committed) before the first Stripe call that may move money: the janitor resolves only such claims.
    stripe_started_at = UTCDateTimeField(null=True)
    # Why the last Stripe answer left the outcome unknown (a 5xx, an idempotency_error), until it is looked up.
    stripe_unknown = CharField(max_length=32, null=True)
    # The round of derived Stripe keys: a new round only once Stripe's own answer proved the old key cannot act.
    stripe_step = IntegerField(default=1)

    attempts = IntegerField(default=1)
    locked_until = UTCDateTimeField()
    expires_at = UTCDateTimeField(index=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
