"""Retention (domain/retention.py): a month of aged rows archived, read back identical, deleted from the hot tables;
what must stay, stays; a dry run changes nothing; a crash between the archive's write and the delete duplicates
nothing. `now` is injected (years before the suite's own rows, which stay young to it)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from peewee import Model

from domain import retention
from models.idempotency import IdempotencyRecord
from models.payment_attempts import PaymentAttempt
from models.payment_events import PaymentEvent
from models.payment_intents import PaymentIntent, ZtrackingPaymentIntent
from models.refunds import Refund
from models.webhook_events import WebhookEvent
from observability.metrics import RETENTION_ROWS
from settings import get_settings

NOW = dt.datetime(2024, 6, 15, 12, 0)  # the run's "now": 2023-06-15 is the intents' limit, 2019-06-15 the refunds'
MARCH = [dt.datetime(2023, 3, day, 10, 30, 15, 123456 + day) for day in range(1, 29, 4)]  # a month of aged rows
YOUNG = dt.datetime(2024, 1, 10, 9, 0)
OLD_AGE = dt.datetime(2025, 1, 1)  # every row these tests make is older; the rest of the suite's are younger


class Killed(BaseException):
    """A process killed mid-run (SIGKILL, a hard time limit): no handler runs, the transaction is rolled back."""


@pytest.fixture()
def settings(domain_db: Any, tmp_path: Path) -> Any:
    """Retention on, archiving under the test's folder, in batches of 3 (a month takes several)."""
    yield dataclasses.replace(
        get_settings(), retention_enabled=True, retention_archive_dir=str(tmp_path / "archive"), retention_batch=3
    )
    # Rows this module made and kept: never seen by the next test (MariaDB's database is the session's).
    for model, column in (
        (ZtrackingPaymentIntent, ZtrackingPaymentIntent.version_date),
        (PaymentAttempt, PaymentAttempt.created_at),
        (Refund, Refund.created_at),
        (PaymentIntent, PaymentIntent.created_at),
        (WebhookEvent, WebhookEvent.received_at),
        (IdempotencyRecord, IdempotencyRecord.created_at),
        (PaymentEvent, PaymentEvent.occurred_at),
    ):
        model.delete().where(column < OLD_AGE).execute()  # type: ignore[misc]


def month_file(settings: Any, month: str) -> Path:
    return Path(settings.retention_archive_dir) / retention.INTENTS / f"{month}.jsonl.gz"


def make_intent(
    created: dt.datetime,
    status: str = "succeeded",
    *,
    updated: dt.datetime | None = None,
    received: int | None = None,
    versions: int = 2,
    attempts: tuple[str, ...] = ("succeeded",),
    refunds: tuple[tuple[dt.datetime, str], ...] = (),
) -> str:
    """An intent as the service leaves it, with its history snapshots, attempts and refunds, made at `created`."""
    ident = f"vypi_rt{uuid.uuid4().hex[:20]}"
    amount_received = (1000 if status == "succeeded" else 0) if received is None else received
    columns = {
        "customer_id": "rt-customer",
        "stripe_customer_id": "cus_rt",
        "stripe_payment_intent_id": f"pi_rt{uuid.uuid4().hex[:16]}",
        "amount": 1000,
        "amount_received": amount_received,
        "currency": "eur",
        "status": status,
        "capture_method": "automatic",
        "metadata": {"orderRef": "r-1"},
        "items": [{"id": "sku-1", "quantity": 2, "priceCents": 500, "currency": "eur"}],
        "order_id": f"order-{ident[-6:]}",
        "created_at": created,
        "updated_at": updated or created + dt.timedelta(minutes=5),
    }
    PaymentIntent.create(id=ident, ztracking_version=versions, receipt_email="payer@example.com", **columns)
    for version in range(1, versions + 1):
        ZtrackingPaymentIntent.create(
            payment_intent_id=ident,
            ztracking_version=version,
            version_date=created + dt.timedelta(minutes=version),
            cause=f"test:{version}",
            **columns,
        )
    for number, attempt_status in enumerate(attempts, start=1):
        PaymentAttempt.create(
            id=f"vyat_rt{uuid.uuid4().hex[:20]}",
            payment_intent_id=ident,
            attempt_number=number,
            operation="confirm",
            status=attempt_status,
            created_at=created + dt.timedelta(minutes=number),
            updated_at=created + dt.timedelta(minutes=number + 1),
        )
    for refund_created, refund_status in refunds:
        Refund.create(
            id=f"vyre_rt{uuid.uuid4().hex[:20]}",
            payment_intent_id=ident,
            stripe_refund_id=f"re_rt{uuid.uuid4().hex[:16]}",
            amount=300,
            currency="eur",
            status=refund_status,
            created_at=refund_created,
            updated_at=refund_created,
        )
    return ident


def stored(model: type[Model], column: Any, ident: str, order: Any) -> list[dict[str, Any]]:
    return [dict(row.__data__) for row in model.select().where(column == ident).order_by(order)]


def everything_of(ident: str) -> dict[str, Any]:
    """What the hot tables hold of an intent, as the archive should give it back (without its receipt e-mail)."""
    intent = PaymentIntent.get_by_id(ident).__data__
    return {
        "paymentIntent": {k: v for k, v in intent.items() if k != "receipt_email"},
        "history": stored(
            ZtrackingPaymentIntent,
            ZtrackingPaymentIntent.payment_intent_id,
            ident,
            ZtrackingPaymentIntent.ztracking_version,
        ),
        "attempts": stored(PaymentAttempt, PaymentAttempt.payment_intent_id, ident, PaymentAttempt.attempt_number),
        "refunds": stored(Refund, Refund.payment_intent_id, ident, Refund.created_at),
    }


def read_back(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "paymentIntent": retention.row_from_archive(PaymentIntent, line["paymentIntent"]),
        "history": [retention.row_from_archive(ZtrackingPaymentIntent, row) for row in line["history"]],
        "attempts": [retention.row_from_archive(PaymentAttempt, row) for row in line["attempts"]],
        "refunds": [retention.row_from_archive(Refund, row) for row in line["refunds"]],
    }


def still_stored(ident: str) -> bool:
    return PaymentIntent.select().where(PaymentIntent.id == ident).exists()


def test_a_month_of_aged_intents_is_archived_read_back_identical_and_gone_from_the_hot_tables(settings):
    aged = [make_intent(created, versions=3, attempts=("failed", "succeeded")) for created in MARCH]
    young = make_intent(YOUNG)
    before = {ident: everything_of(ident) for ident in aged}

    archived_before = RETENTION_ROWS.labels("payment_intent", "archived")._value.get()

    report = retention.run(NOW, settings=settings)

    assert report.intents_by_month == {"2023-03": len(aged)} and report.complete and report.skipped is None
    assert RETENTION_ROWS.labels("payment_intent", "archived")._value.get() == archived_before + len(aged)
    assert (report.history, report.attempts, report.refunds) == (3 * len(aged), 2 * len(aged), 0)
    lines = list(retention.read_archive(month_file(settings, "2023-03")))
    assert [line["paymentIntent"]["id"] for line in lines] == aged  # each once, in creation order
    assert {line["paymentIntent"]["id"]: read_back(line) for line in lines} == before
    assert all("receipt_email" not in line["paymentIntent"] for line in lines)  # personal data is not archived
    for ident in aged:
        assert not still_stored(ident)
        assert not ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == ident).exists()
        assert not PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == ident).exists()
    assert still_stored(young) and len(everything_of(young)["history"]) == 2  # younger than 12 months: untouched
    assert not list(Path(settings.retention_archive_dir).rglob("*.pending"))  # every batch settled


def test_an_intent_goes_with_its_refunds_only_once_every_refund_is_past_five_years(settings):
    with_old_refunds = make_intent(
        dt.datetime(2019, 3, 2, 8, 0),
        refunds=((dt.datetime(2019, 3, 20), "succeeded"), (dt.datetime(2019, 4, 1), "failed")),
    )
    with_young_refund = make_intent(MARCH[0], refunds=((dt.datetime(2023, 4, 2), "succeeded"),))
    with_one_young_refund = make_intent(
        dt.datetime(2019, 2, 2),
        refunds=((dt.datetime(2019, 2, 10), "succeeded"), (dt.datetime(2019, 7, 1), "succeeded")),
    )
    with_pending_refund = make_intent(dt.datetime(2019, 1, 5), refunds=((dt.datetime(2019, 1, 9), "pending"),))
    before = everything_of(with_old_refunds)

    report = retention.run(NOW, settings=settings)

    (line,) = retention.read_archive(month_file(settings, "2019-03"))
    assert read_back(line) == before and len(line["refunds"]) == 2 and report.refunds == 2
    assert not still_stored(with_old_refunds)
    assert not Refund.select().where(Refund.payment_intent_id == with_old_refunds).exists()
    for kept in (with_young_refund, with_one_young_refund, with_pending_refund):
        assert still_stored(kept) and Refund.select().where(Refund.payment_intent_id == kept).exists()
    assert report.kept["with a refund younger than 5 years"] == 2
    assert report.kept["with a refund not final"] == 1
    assert not month_file(settings, "2019-02").exists() and not month_file(settings, "2019-01").exists()


def test_an_intent_not_settled_or_still_in_use_is_kept(settings):
    authorised = make_intent(MARCH[0], "requires_capture", received=0)
    processing = make_intent(MARCH[1], "processing", received=0)
    abandoned = make_intent(MARCH[2], "requires_payment_method", received=0, attempts=("failed",))
    changed_lately = make_intent(MARCH[3], updated=dt.datetime(2024, 2, 1))
    attempt_open = make_intent(MARCH[4], attempts=("succeeded", "processing"))
    claimed = make_intent(MARCH[5])
    unpublished = make_intent(MARCH[6])
    IdempotencyRecord.create(
        key_hash=uuid.uuid4().hex * 2,
        operation="create-refund",
        fingerprint="f" * 64,
        state="in_flight",
        owner="task-rt",
        resource_id=f"vyre_rt{uuid.uuid4().hex[:20]}",
        trace_id="trace-rt",
        request={"paymentIntentId": claimed, "amount": 100},
        locked_until=NOW + dt.timedelta(minutes=5),
        expires_at=NOW + dt.timedelta(hours=24),
        created_at=NOW - dt.timedelta(minutes=1),
        updated_at=NOW - dt.timedelta(minutes=1),
    )
    PaymentEvent.create(
        event_id=f"vyev_rt{uuid.uuid4().hex[:20]}",
        type="succeeded-payment",
        payment_intent_id=unpublished,
        shard=3,
        version=2,
        payload={"paymentIntentId": unpublished},
        occurred_at=MARCH[6],
    )

    report = retention.run(NOW, settings=settings)

    assert [line["paymentIntent"]["id"] for line in retention.read_archive(month_file(settings, "2023-03"))] == [
        abandoned  # waiting for a card for 15 months with nothing received: abandoned, archived
    ]
    for kept in (authorised, processing, changed_lately, attempt_open, claimed, unpublished):
        assert still_stored(kept)
    assert report.kept == {
        "not in a final state": 2,
        "changed within the period": 1,
        "with an attempt processing": 1,
        "with an unresolved idempotency claim": 1,
        "with an event not yet published": 1,
    }


def idempotency_record(state: str, updated: dt.datetime, expires: dt.datetime) -> int:
    record = IdempotencyRecord.create(
        key_hash=uuid.uuid4().hex * 2,
        operation="create-payment-intent",
        fingerprint="f" * 64,
        state=state,
        owner="task-rt",
        resource_id=f"vypi_rt{uuid.uuid4().hex[:20]}",
        trace_id="trace-rt",
        outcome={"response": {}} if state == "completed" else None,
        locked_until=updated,
        expires_at=expires,
        created_at=updated - dt.timedelta(minutes=1),
        updated_at=updated,
    )
    return record.id


def webhook_event(received: dt.datetime, status: str) -> str:
    ident = f"evt_rt{uuid.uuid4().hex[:20]}"
    WebhookEvent.create(
        id=ident, type="payment_intent.succeeded", event_created=0, payload="{}", status=status, received_at=received
    )
    return ident


def test_webhook_events_past_90_days_and_resolved_claims_past_24_hours_are_deleted_the_rest_kept(settings):
    events = {
        "aged": webhook_event(dt.datetime(2024, 3, 1), "processed"),
        "aged expired": webhook_event(dt.datetime(2024, 2, 1), "expired"),
        "aged still received": webhook_event(dt.datetime(2024, 2, 1), "received"),
        "young": webhook_event(dt.datetime(2024, 3, 30), "processed"),
    }
    day_ago = NOW - dt.timedelta(hours=25)
    records = {
        "resolved long ago": idempotency_record("completed", day_ago, day_ago + dt.timedelta(hours=1)),
        "resolved within 24 h": idempotency_record(
            "completed", NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=1)
        ),  # its own window is past (a short IDEMPOTENCY_TTL_S) but Stripe's is not
        "in flight": idempotency_record("in_flight", day_ago, day_ago + dt.timedelta(hours=1)),
        "retryable": idempotency_record("retryable", day_ago, day_ago + dt.timedelta(hours=1)),
        "not expired": idempotency_record("completed", day_ago, NOW + dt.timedelta(hours=1)),
    }

    report = retention.run(NOW, settings=settings)

    assert {name for name, ident in events.items() if WebhookEvent.get_or_none(WebhookEvent.id == ident)} == {
        "aged still received",
        "young",
    }
    left = {name for name, ident in records.items() if IdempotencyRecord.get_or_none(IdempotencyRecord.id == ident)}
    assert left == {"resolved within 24 h", "in flight", "retryable", "not expired"}
    assert (report.webhook_events, report.idempotency_records) == (2, 1)


def test_a_dry_run_changes_nothing_and_counts_what_the_run_then_moves(settings):
    aged = [make_intent(created) for created in MARCH[:4]]
    kept = make_intent(MARCH[4], refunds=((dt.datetime(2023, 5, 1), "succeeded"),))
    event = webhook_event(dt.datetime(2024, 1, 1), "processed")

    dry = retention.run(NOW, dry_run=True, settings=settings)

    assert all(still_stored(ident) for ident in [*aged, kept]) and WebhookEvent.get_or_none(WebhookEvent.id == event)
    assert not Path(settings.retention_archive_dir).exists()  # not even the folder
    assert (dry.intents_by_month, dry.history, dry.attempts, dry.webhook_events) == ({"2023-03": 4}, 8, 4, 1)
    assert dry.kept == {"with a refund younger than 5 years": 1}
    assert "2023-03: 4" in "\n".join(dry.lines()) and "would be archived" in "\n".join(dry.lines())

    real = retention.run(NOW, settings=settings)

    assert dataclasses.replace(real, dry_run=True) == dry  # the same counts, moved
    assert not any(still_stored(ident) for ident in aged) and still_stored(kept)


def test_a_run_killed_between_the_archive_write_and_the_delete_leaves_no_duplicate_line(settings, monkeypatch):
    aged = [make_intent(created) for created in MARCH]
    before = {ident: everything_of(ident) for ident in aged}
    real_delete = retention._delete_intents
    calls = []

    def killed_on_second_batch(ids: list[str], expected: tuple[int, int, int]) -> None:
        calls.append(ids)
        if len(calls) == 2:
            raise Killed  # the second batch's lines are written and fsynced, its delete never runs
        real_delete(ids, expected)

    monkeypatch.setattr(retention, "_delete_intents", killed_on_second_batch)
    with pytest.raises(Killed):
        retention.run(NOW, settings=settings)
    monkeypatch.setattr(retention, "_delete_intents", real_delete)

    path = month_file(settings, "2023-03")
    journal = path.with_name(path.name + ".pending")
    written = [line["paymentIntent"]["id"] for line in retention.read_archive(path)]
    assert journal.exists() and written == aged[:6]  # two batches written, one deleted
    assert [still_stored(ident) for ident in aged] == [False] * 3 + [True] * 4

    report = retention.run(NOW, settings=settings)

    assert report.recovered == [f"{retention.INTENTS}/2023-03.jsonl.gz.pending"] and not journal.exists()
    lines = list(retention.read_archive(path))
    assert [line["paymentIntent"]["id"] for line in lines] == aged  # each once
    assert {line["paymentIntent"]["id"]: read_back(line) for line in lines} == before
    assert not any(still_stored(ident) for ident in aged)


def test_a_run_killed_after_the_delete_committed_keeps_the_lines_it_wrote(settings, monkeypatch):
    aged = [make_intent(created) for created in MARCH[:3]]
    real_done = retention.MonthFile.done

    def killed(self: retention.MonthFile) -> None:
        raise Killed  # the rows are deleted (committed), the journal not yet removed

    monkeypatch.setattr(retention.MonthFile, "done", killed)
    with pytest.raises(Killed):
        retention.run(NOW, settings=settings)
    monkeypatch.setattr(retention.MonthFile, "done", real_done)
    assert not any(still_stored(ident) for ident in aged)

    report = retention.run(NOW, settings=settings)

    assert report.recovered and report.intents == 0
    assert retention.archived_ids([month_file(settings, "2023-03")]) == aged  # the only copy: kept, once


def test_nothing_moves_while_retention_is_off(settings):
    aged = make_intent(MARCH[0])
    report = retention.run(NOW, settings=dataclasses.replace(settings, retention_enabled=False))
    assert report.skipped and "RETENTION_ENABLED" in report.lines()[-1]
    assert still_stored(aged) and not Path(settings.retention_archive_dir).exists()


@pytest.mark.parametrize(
    ("moment", "months", "expected"),
    [
        (dt.datetime(2024, 6, 15, 12), 12, dt.datetime(2023, 6, 15, 12)),
        (dt.datetime(2024, 3, 31), 1, dt.datetime(2024, 2, 29)),
        (dt.datetime(2024, 1, 31), 60, dt.datetime(2019, 1, 31)),
        (dt.datetime(2024, 2, 29), 12, dt.datetime(2023, 2, 28)),
    ],
)
def test_months_before_counts_calendar_months(moment, months, expected):
    assert retention.months_before(moment, months) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("RETENTION_IDEMPOTENCY_HOURS", "23"), ("RETENTION_WEBHOOK_DAYS", "29"), ("RETENTION_BATCH", "0")],
)
def test_a_limit_below_its_floor_is_refused_at_start(monkeypatch, name, value):
    import settings as settings_module

    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        settings_module.load_settings()


def test_a_run_stops_between_batches_when_its_time_budget_is_spent_and_the_next_run_goes_on(settings, monkeypatch):
    aged = [make_intent(created) for created in MARCH]
    clock = iter(range(0, 10_000, 1))  # each look at the clock: one second later

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return float(next(clock))

    monkeypatch.setattr(retention, "time", Clock)
    first = retention.run(NOW, settings=dataclasses.replace(settings, retention_time_budget_s=2))
    monkeypatch.undo()

    assert not first.complete and first.intents == 3  # one batch of three, then the budget was spent
    assert "time budget spent" in first.lines()[-1]
    assert [still_stored(ident) for ident in aged] == [False] * 3 + [True] * 4
    second = retention.run(NOW, settings=settings)
    assert second.complete and second.intents == 4
    assert retention.archived_ids([month_file(settings, "2023-03")]) == aged


def test_a_second_run_while_one_holds_the_lock_moves_nothing(settings, domain_db):
    import fcntl

    from peewee import SqliteDatabase

    from models.base import make_database

    aged = make_intent(MARCH[0])
    if isinstance(domain_db, SqliteDatabase):
        holder = open(f"{domain_db.database}.retention.lock", "w")  # another process's run
        fcntl.flock(holder, fcntl.LOCK_EX)
        release = holder.close
    else:
        other = make_database(get_settings())  # another process's connection
        other.connect()
        assert other.execute_sql("SELECT GET_LOCK(%s, 0)", (retention.LOCK_NAME,)).fetchone()[0] == 1

        def release() -> None:
            other.execute_sql("SELECT RELEASE_LOCK(%s)", (retention.LOCK_NAME,))
            other.close()

    try:
        report = retention.run(NOW, settings=settings)
    finally:
        release()
    assert report.skipped == "another retention run is in progress" and still_stored(aged)
    assert retention.run(NOW, settings=settings).intents == 1  # the lock given back: the next run goes
