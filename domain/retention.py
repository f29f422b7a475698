"""Retention, as the PRD sets it: intents and their attempts 12 months, refunds 5 years, webhook events 3 months,
idempotency records once resolved and past Stripe's 24 hours (the limits are settings: RETENTION_*).

- A payment intent goes to the archive with everything that names it: its ztracking snapshots, its attempts and its
  refunds, one JSON line per intent in `<RETENTION_ARCHIVE_DIR>/payment-intents/<YYYY-MM>.jsonl.gz` (the month it
  was created; each batch appends one gzip member, which gzip and zcat read as one stream), then it is deleted from
  the hot tables. Its receipt e-mail is not archived: personal data, needed only while Stripe may send a receipt.
- An intent is archived only when it was created and last changed before the limit, and it is settled: succeeded,
  canceled, or abandoned (waiting for a payment method, a confirmation or an action, with nothing received nor
  authorised). It is kept while any refund of it is younger than RETENTION_REFUND_YEARS or not final (refunds name
  their intent: they go together), while an attempt of it is processing, while an idempotency claim naming it is
  unresolved, and while an event of it waits in the outbox.
- Webhook events are deleted (not archived: Stripe's payloads may carry personal data, Stripe keeps the events, and
  what each did is in the intent's history), except one still being processed. Idempotency records are purged by the
  same function the janitor calls every minute (domain/idempotency.py purge_expired).
- Everything moves in batches of RETENTION_BATCH rows, each in its own short transaction, walked by key (intents by
  creation time and id on their index), within RETENTION_TIME_BUDGET_S; the rest waits for the next run.

Crash safety: each batch's lines are written and fsynced before its rows are deleted, under the rows' locks. Before
it appends, a batch writes a journal beside the month's file (`<YYYY-MM>.jsonl.gz.pending`: the file's length and
the batch's intent ids) and removes it once its delete committed. A run that finds a journal (the last one died
between the write and the commit) looks at the database: if the intents are still there, the delete never
committed, and the file is cut back to its length before the batch, so the re-run writes those lines once; if they
are gone, the lines stay. One run at a time (a database lock; a file lock on SQLite).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import gzip
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from peewee import Model, SqliteDatabase

from domain import idempotency
from models import (
    IdempotencyRecord,
    PaymentAttempt,
    PaymentEvent,
    PaymentIntent,
    Refund,
    WebhookEvent,
    ZtrackingPaymentIntent,
    database,
    utcnow,
    write_transaction,
)
from models.base import UTCDateTimeField, for_update
from observability.metrics import RETENTION_ROWS
from settings import Settings, get_settings

log = logging.getLogger("retention")

INTENTS = "payment-intents"  # the archive's folder of intents
FINAL = ("succeeded", "canceled")
# Waiting for the customer: abandoned once untouched for the retention period with nothing received nor authorised.
WAITING = ("requires_payment_method", "requires_confirmation", "requires_action")
FINAL_REFUND = ("succeeded", "failed", "canceled")
NOT_ARCHIVED = frozenset({"receipt_email"})  # personal data, needed only while Stripe may send a receipt
LOCK_NAME = "vy_finance_payments_retention"


def months_before(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day and time `months` calendar months earlier (the month's last day when it has fewer days)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    next_month = dt.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


@dataclasses.dataclass(frozen=True)
class Limits:
    """What is old enough to go, as of `now`."""

    now: dt.datetime
    intents_before: dt.datetime
    refunds_before: dt.datetime
    webhooks_before: dt.datetime
    idempotency_hours: int
    refund_years: int
    batch: int

    @classmethod
    def of(cls, settings: Settings, now: dt.datetime) -> Limits:
        return cls(
            now=now,
            intents_before=months_before(now, settings.retention_intent_months),
            refunds_before=months_before(now, 12 * settings.retention_refund_years),
            webhooks_before=now - dt.timedelta(days=settings.retention_webhook_days),
            idempotency_hours=settings.retention_idempotency_hours,
            refund_years=settings.retention_refund_years,
            batch=settings.retention_batch,
        )


@dataclasses.dataclass
class Report:
    """What a run moved (or, dry, would move)."""

    limits: Limits
    dry_run: bool
    archive_dir: str
    intents_by_month: Counter[str] = dataclasses.field(default_factory=Counter)
    history: int = 0
    attempts: int = 0
    refunds: int = 0
    kept: Counter[str] = dataclasses.field(default_factory=Counter)  # aged intents kept, by reason
    webhook_events: int = 0
    idempotency_records: int = 0
    recovered: list[str] = dataclasses.field(default_factory=list)  # journals of a run that died, settled
    complete: bool = True  # False: the time budget ran out, the rest waits for the next run
    skipped: str | None = None

    @property
    def intents(self) -> int:
        return sum(self.intents_by_month.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "intents": self.intents,
            "intentsByMonth": dict(sorted(self.intents_by_month.items())),
            "history": self.history,
            "attempts": self.attempts,
            "refunds": self.refunds,
            "kept": dict(self.kept),
            "webhookEvents": self.webhook_events,
            "idempotencyRecords": self.idempotency_records,
            "recovered": self.recovered,
            "complete": self.complete,
            "skipped": self.skipped,
        }

    def lines(self) -> list[str]:
        """The report as the operator reads it (`payments retention`)."""
        limits = self.limits
        would = "would be " if self.dry_run else ""
        head = f"retention as of {limits.now:%Y-%m-%d %H:%M} UTC" + (
            " (dry run: nothing moved)" if self.dry_run else ""
        )
        if self.skipped:
            return [head, f"skipped: {self.skipped}"]
        months = ", ".join(f"{month}: {count}" for month, count in sorted(self.intents_by_month.items()))
        lines = [
            head,
            f"payment intents created before {limits.intents_before:%Y-%m-%d}: {self.intents} {would}archived to "
            f"{Path(self.archive_dir) / INTENTS}" + (f" ({months})" if months else ""),
            f"  with {self.history} history snapshots, {self.attempts} attempts, {self.refunds} refunds",
        ]
        if self.kept:
            kept = ", ".join(f"{count} {reason}" for reason, count in sorted(self.kept.items()))
            lines.append(f"  aged payment intents kept: {kept}")
        lines.append(
            f"webhook events received before {limits.webhooks_before:%Y-%m-%d}: {self.webhook_events} {would}deleted"
        )
        lines.append(
            f"idempotency records resolved, expired and older than {limits.idempotency_hours} h: "
            f"{self.idempotency_records} {would}deleted"
        )
        lines.extend(f"recovered after an interrupted run: {name}" for name in self.recovered)
        if not self.complete:
            lines.append("time budget spent: the rest waits for the next run")
        return lines


# --- the archive -------------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, text: str) -> None:
    """Replace `path` with `text`, on disk before this returns (a crash leaves the old file or the new, whole)."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds")
    return value


def row_of(instance: Model) -> dict[str, Any]:
    """A row as archived: every column by field name, times as ISO 8601 (UTC, microseconds)."""
    return {
        name: _plain(instance.__data__.get(name))
        for name in instance._meta.sorted_field_names
        if name not in NOT_ARCHIVED
    }


def row_from_archive(model: type[Model], data: dict[str, Any]) -> dict[str, Any]:
    """An archived row back as the model's values (times as datetimes), to compare or to restore."""
    fields = model._meta.fields
    return {
        name: dt.datetime.fromisoformat(value) if isinstance(fields[name], UTCDateTimeField) and value else value
        for name, value in data.items()
    }


def read_archive(path: Path | str) -> Iterator[dict[str, Any]]:
    """Every line of an archive file (all its gzip members), parsed."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


class MonthFile:
    """One month's archive file of a kind, appended one gzip member per batch behind a journal."""

    def __init__(self, root: Path, kind: str, month: str) -> None:
        self.path = root / kind / f"{month}.jsonl.gz"
        self.journal = self.path.with_name(self.path.name + ".pending")

    def append(self, ids: list[str], lines: list[dict[str, Any]]) -> None:
        """Journal the batch, then append its lines and fsync them: on disk before the caller deletes the rows."""
        if self.journal.exists():
            raise RuntimeError(f"{self.journal} is not settled: recover it first")
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True)
            _fsync_dir(self.path.parent.parent)  # the new folder's entry is on disk too
        offset = self.path.stat().st_size if self.path.exists() else 0
        _write_durably(self.journal, json.dumps({"offset": offset, "ids": ids}))
        text = "".join(json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n" for line in lines)
        member = gzip.compress(text.encode(), mtime=0)  # no clock in the header: the lines carry archivedAt
        with open(self.path, "ab") as handle:
            handle.write(member)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(self.path.parent)

    def done(self) -> None:
        """The batch's rows are deleted (committed): its lines are the only copy now."""
        self.journal.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    def recover(self) -> bool:
        """Settle the journal of a batch that died between its write and its commit; True if there was one."""
        if not self.journal.exists():
            return False
        journal = json.loads(self.journal.read_text())
        ids: list[str] = journal["ids"]
        stored = PaymentIntent.select().where(PaymentIntent.id.in_(ids)).exists() if ids else False
        if stored and self.path.exists():
            # The delete never committed: the rows are still here, so their lines go (the re-run writes them once).
            with open(self.path, "r+b") as handle:
                handle.truncate(journal["offset"])
                handle.flush()
                os.fsync(handle.fileno())
            if journal["offset"] == 0:
                self.path.unlink()
        self.done()
        log.warning("retention: settled %s (%s)", self.journal.name, "lines removed" if stored else "lines kept")
        return True


def recover_all(root: Path) -> list[str]:
    """Settle every journal a dead run left under the archive directory."""
    settled = []
    for journal in sorted(root.glob("*/*.jsonl.gz.pending")):
        month = journal.name.removesuffix(".jsonl.gz.pending")
        if MonthFile(root, journal.parent.name, month).recover():
            settled.append(str(journal.relative_to(root)))
    return settled


# --- intents -----------------------------------------------------------------------------------------------------


def _settled() -> Any:
    """Intents nothing more will happen to: final, or abandoned with nothing received nor authorised."""
    abandoned = (
        PaymentIntent.status.in_(WAITING)
        & (PaymentIntent.amount_received == 0)
        & (PaymentIntent.amount_capturable == 0)
    )
    return PaymentIntent.status.in_(FINAL) | abandoned


def _aged(limits: Limits) -> Any:
    return (PaymentIntent.created_at < limits.intents_before) & (PaymentIntent.updated_at < limits.intents_before)


def _next_aged(limits: Limits, after: tuple[dt.datetime, str] | None) -> list[PaymentIntent]:
    """The next batch of aged, settled intents after the key `after`, by creation time then id (their index)."""
    query = PaymentIntent.select(PaymentIntent.id, PaymentIntent.created_at).where(_aged(limits), _settled())
    if after is not None:
        created, ident = after
        query = query.where(
            (PaymentIntent.created_at > created) | ((PaymentIntent.created_at == created) & (PaymentIntent.id > ident))
        )
    return list(query.order_by(PaymentIntent.created_at, PaymentIntent.id).limit(limits.batch))


def _unresolved_claims() -> set[str]:
    """Intents (and refunds, attempts) named by an idempotency claim not resolved yet: its work may still act."""
    named: set[str] = set()
    query = IdempotencyRecord.select(IdempotencyRecord.resource_id, IdempotencyRecord.request).where(
        IdempotencyRecord.state.in_(("in_flight", "retryable"))
    )
    for record in query:
        named.add(record.resource_id)
        if isinstance(record.request, dict) and isinstance(record.request.get("paymentIntentId"), str):
            named.add(record.request["paymentIntentId"])
    return named


def _unpublished(ids: list[str]) -> set[str]:
    """Intents with an event still waiting in the outbox (read on the outbox's shard index)."""
    shards = [row.shard for row in PaymentEvent.select(PaymentEvent.shard).distinct()]
    if not shards:
        return set()
    query = PaymentEvent.select(PaymentEvent.payment_intent_id).where(
        PaymentEvent.shard.in_(shards), PaymentEvent.published_at.is_null(), PaymentEvent.payment_intent_id.in_(ids)
    )
    return {row.payment_intent_id for row in query}


def _blocked(ids: list[str], limits: Limits) -> dict[str, str]:
    """Why each of these intents must stay, if it must."""
    reasons: dict[str, str] = {}
    claimed = _unresolved_claims()
    for refund in Refund.select(Refund.id, Refund.payment_intent_id, Refund.status, Refund.created_at).where(
        Refund.payment_intent_id.in_(ids)
    ):
        if refund.created_at >= limits.refunds_before:
            reasons[refund.payment_intent_id] = f"with a refund younger than {limits.refund_years} years"
        elif refund.status not in FINAL_REFUND:
            reasons.setdefault(refund.payment_intent_id, "with a refund not final")
        if refund.id in claimed:
            reasons.setdefault(refund.payment_intent_id, "with an unresolved idempotency claim")
    processing = PaymentAttempt.select(PaymentAttempt.payment_intent_id).where(
        PaymentAttempt.payment_intent_id.in_(ids), PaymentAttempt.status == "processing"
    )
    for attempt in processing:
        reasons.setdefault(attempt.payment_intent_id, "with an attempt processing")
    for ident in ids:
        if ident in claimed:
            reasons.setdefault(ident, "with an unresolved idempotency claim")
    for ident in _unpublished(ids):
        reasons.setdefault(ident, "with an event not yet published")
    return reasons


def _children(ids: list[str]) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, list[Any]]]:
    """The history snapshots, attempts and refunds of these intents, each intent's in order."""
    history: dict[str, list[Any]] = {ident: [] for ident in ids}
    attempts: dict[str, list[Any]] = {ident: [] for ident in ids}
    refunds: dict[str, list[Any]] = {ident: [] for ident in ids}
    for snapshot in (
        ZtrackingPaymentIntent.select()
        .where(ZtrackingPaymentIntent.payment_intent_id.in_(ids))
        .order_by(ZtrackingPaymentIntent.payment_intent_id, ZtrackingPaymentIntent.ztracking_version)
    ):
        history[snapshot.payment_intent_id].append(snapshot)
    for attempt in (
        PaymentAttempt.select()
        .where(PaymentAttempt.payment_intent_id.in_(ids))
        .order_by(PaymentAttempt.payment_intent_id, PaymentAttempt.attempt_number)
    ):
        attempts[attempt.payment_intent_id].append(attempt)
    for refund in (
        Refund.select().where(Refund.payment_intent_id.in_(ids)).order_by(Refund.payment_intent_id, Refund.created_at)
    ):
        refunds[refund.payment_intent_id].append(refund)
    return history, attempts, refunds


def archive_line(
    intent: PaymentIntent, history: list[Any], attempts: list[Any], refunds: list[Any], archived_at: dt.datetime
) -> dict[str, Any]:
    """One intent and everything that names it, as one JSON line."""
    return {
        "archivedAt": archived_at.isoformat(timespec="microseconds"),
        "paymentIntent": row_of(intent),
        "history": [row_of(row) for row in history],
        "attempts": [row_of(row) for row in attempts],
        "refunds": [row_of(row) for row in refunds],
    }


def _delete_intents(ids: list[str], expected: tuple[int, int, int]) -> None:
    """Delete the intents and what names them; refuse (roll back) if a row appeared that was not archived."""
    deleted = (
        ZtrackingPaymentIntent.delete().where(ZtrackingPaymentIntent.payment_intent_id.in_(ids)).execute(),  # type: ignore[misc]
        PaymentAttempt.delete().where(PaymentAttempt.payment_intent_id.in_(ids)).execute(),  # type: ignore[misc]
        Refund.delete().where(Refund.payment_intent_id.in_(ids)).execute(),  # type: ignore[misc]
    )
    if deleted != expected:
        raise RuntimeError(f"retention: rows changed under the batch (deleted {deleted}, archived {expected})")
    PaymentIntent.delete().where(PaymentIntent.id.in_(ids)).execute()  # type: ignore[misc]


def _archive_batch(candidates: list[str], limits: Limits, root: Path, report: Report) -> None:
    """Archive then delete one batch, in one short transaction holding the intents' row locks."""
    files: list[MonthFile] = []
    by_month: dict[str, list[PaymentIntent]] = {}
    counts = (0, 0, 0)
    try:
        with write_transaction():
            locked = list(
                for_update(
                    PaymentIntent.select()
                    .where(PaymentIntent.id.in_(candidates), _aged(limits), _settled())
                    .order_by(PaymentIntent.created_at, PaymentIntent.id)
                )
            )
            blocked = _blocked([intent.id for intent in locked], limits)
            report.kept.update(blocked.values())
            going = [intent for intent in locked if intent.id not in blocked]
            if not going:
                return
            ids = [intent.id for intent in going]
            history, attempts, refunds = _children(ids)
            for intent in going:
                by_month.setdefault(f"{intent.created_at:%Y-%m}", []).append(intent)
            for month, intents in sorted(by_month.items()):
                month_file = MonthFile(root, INTENTS, month)
                files.append(month_file)
                lines = [archive_line(i, history[i.id], attempts[i.id], refunds[i.id], limits.now) for i in intents]
                month_file.append([i.id for i in intents], lines)
            counts = (
                sum(map(len, history.values())),
                sum(map(len, attempts.values())),
                sum(map(len, refunds.values())),
            )
            _delete_intents(ids, counts)
    except Exception:
        for month_file in files:
            month_file.recover()  # rolled back: the rows are here, so their lines go
        raise
    for month_file in files:
        month_file.done()
    for month, intents in by_month.items():
        report.intents_by_month[month] += len(intents)
    report.history += counts[0]
    report.attempts += counts[1]
    report.refunds += counts[2]


def _count_batch(candidates: list[str], limits: Limits, report: Report) -> None:
    """What `_archive_batch` would move, read without a lock or a write."""
    rows = list(
        PaymentIntent.select(PaymentIntent.id, PaymentIntent.created_at).where(PaymentIntent.id.in_(candidates))
    )
    blocked = _blocked([row.id for row in rows], limits)
    report.kept.update(blocked.values())
    going = [row for row in rows if row.id not in blocked]
    for row in going:
        report.intents_by_month[f"{row.created_at:%Y-%m}"] += 1
    ids = [row.id for row in going]
    if ids:
        report.history += (
            ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id.in_(ids)).count()
        )
        report.attempts += PaymentAttempt.select().where(PaymentAttempt.payment_intent_id.in_(ids)).count()
        report.refunds += Refund.select().where(Refund.payment_intent_id.in_(ids)).count()


def archive_intents(limits: Limits, root: Path, report: Report, deadline: float) -> None:
    """Walk the aged intents batch by batch; keep the rest, counted by why."""
    after: tuple[dt.datetime, str] | None = None
    while True:
        if time.monotonic() >= deadline:
            report.complete = False
            return
        batch = _next_aged(limits, after)
        if not batch:
            break
        after = (batch[-1].created_at, batch[-1].id)
        ids = [row.id for row in batch]
        if report.dry_run:
            _count_batch(ids, limits, report)
        else:
            _archive_batch(ids, limits, root, report)
        if len(batch) < limits.batch:
            break
    report.kept.update(_count_kept(limits))


def _count_kept(limits: Limits) -> Counter[str]:
    """Aged intents that stay, by why: not settled, or changed within the period (blocked ones are counted apart)."""
    kept: Counter[str] = Counter()
    created_aged = PaymentIntent.created_at < limits.intents_before
    not_settled = PaymentIntent.select().where(created_aged, ~_settled()).count()
    changed = (
        PaymentIntent.select()
        .where(created_aged, _settled(), PaymentIntent.updated_at >= limits.intents_before)
        .count()
    )
    if not_settled:
        kept["not in a final state"] = not_settled
    if changed:
        kept["changed within the period"] = changed
    return kept


# --- webhook events ----------------------------------------------------------------------------------------------


def _aged_events(limits: Limits) -> Any:
    # One still being processed stays: whatever stopped it is for an operator to see.
    return (WebhookEvent.received_at < limits.webhooks_before) & (WebhookEvent.status != "received")


def delete_webhook_events(limits: Limits, report: Report, deadline: float) -> None:
    """Delete aged webhook events, a batch per short transaction (walked on their arrival index)."""
    if report.dry_run:
        report.webhook_events = WebhookEvent.select().where(_aged_events(limits)).count()
        return
    while True:
        if time.monotonic() >= deadline:
            report.complete = False
            return
        ids = [
            row.id
            for row in WebhookEvent.select(WebhookEvent.id)
            .where(_aged_events(limits))
            .order_by(WebhookEvent.received_at)
            .limit(limits.batch)
        ]
        if not ids:
            return
        with write_transaction():
            gone = WebhookEvent.delete()  # type: ignore[misc]  # types-peewee: delete is a Self-typed class attribute
            report.webhook_events += gone.where(WebhookEvent.id.in_(ids), _aged_events(limits)).execute()
        if len(ids) < limits.batch:
            return


# --- the run -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_run() -> Iterator[bool]:
    """Whether this run holds the retention lock (never waits: another run is doing the work)."""
    db = database.obj
    if isinstance(db, SqliteDatabase):
        with open(f"{os.path.abspath(db.database)}.retention.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    held = db.execute_sql("SELECT GET_LOCK(%s, 0)", (LOCK_NAME,)).fetchone()[0] == 1
    try:
        yield held
    finally:
        if held:
            db.execute_sql("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))


def run(now: dt.datetime | None = None, *, dry_run: bool = False, settings: Settings | None = None) -> Report:
    """One retention run (call in a unit of work, outside any transaction): archive and delete what is old enough,
    or with `dry_run` count what would go and change nothing."""
    settings = settings or get_settings()
    limits = Limits.of(settings, now or utcnow())
    root = Path(settings.retention_archive_dir)
    report = Report(limits=limits, dry_run=dry_run, archive_dir=str(root))
    if not dry_run and not settings.retention_enabled:
        report.skipped = "RETENTION_ENABLED is off (turn it on once RETENTION_ARCHIVE_DIR is durable storage)"
        return report
    deadline = time.monotonic() + settings.retention_time_budget_s
    with _one_run() if not dry_run else contextlib.nullcontext(True) as held:
        if not held:
            report.skipped = "another retention run is in progress"
            return report
        if not dry_run:
            root.mkdir(parents=True, exist_ok=True)
            report.recovered = recover_all(root)
        archive_intents(limits, root, report, deadline)
        delete_webhook_events(limits, report, deadline)
        report.idempotency_records = _idempotency(limits, dry_run, deadline)
        if time.monotonic() >= deadline:
            report.complete = False
        if not dry_run:
            _count_moved(report)
    log.info("retention %s: %s", "dry run" if dry_run else "run", report.as_dict())
    return report


def _count_moved(report: Report) -> None:
    for table, action, rows in (
        ("payment_intent", "archived", report.intents),
        ("ztracking_payment_intent", "archived", report.history),
        ("payment_attempt", "archived", report.attempts),
        ("refund", "archived", report.refunds),
        ("webhook_event", "deleted", report.webhook_events),
        ("idempotency_record", "deleted", report.idempotency_records),
    ):
        RETENTION_ROWS.labels(table, action).inc(rows)


def _idempotency(limits: Limits, dry_run: bool, deadline: float) -> int:
    if dry_run:
        return idempotency.count_purgeable(limits.now, hours=limits.idempotency_hours)
    return idempotency.purge_expired(limits.now, hours=limits.idempotency_hours, batch=limits.batch, until=deadline)


def archived_ids(paths: Iterable[Path]) -> list[str]:
    """The intent ids in these archive files, in file order (what an audit or a restore reads first)."""
    return [line["paymentIntent"]["id"] for path in paths for line in read_archive(path)]
