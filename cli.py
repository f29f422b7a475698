"""`payments`: the operator's command — schema, webhook replay, intent history, readiness, retention."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from settings import get_settings


def _bind() -> None:
    from models import bind_database

    bind_database(get_settings())


def _group(name: str, help: str) -> click.Group:
    """A group of sub-commands of `payments` (it does nothing of its own)."""
    group = click.Group(name, help=help)
    main.add_command(group)
    return group


@contextmanager
def _operation() -> Iterator[None]:
    """The database bound and one unit of work around a domain call; a refusal (OperationError) ends the command
    with its code and message on stderr and exit status 1."""
    from errors import OperationError
    from models import unit_of_work

    _bind()
    try:
        with unit_of_work():
            yield
    except OperationError as exc:
        click.echo(f"{exc.code}: {exc.message}", err=True)
        sys.exit(1)


@click.group(help="Operate vy-finance-payments. Settings come from the environment and .env, as for the service.")
@click.version_option(package_name="vy-finance-payments", prog_name="payments")
def main() -> None:
    from observability.logs import configure_logging

    configure_logging(get_settings(), "cli")


@main.command(help="Apply pending schema migrations (idempotent); with --seed, also fill reference data.")
@click.option("--seed/--no-seed", default=False, help="Fill the currency reference table too.")
@click.option(
    "--rebuild-tables",
    is_flag=True,
    help="Every other process of the service is stopped: a migration may rebuild tables that hold rows (TiDB).",
)
def migrate(seed: bool, rebuild_tables: bool) -> None:
    from models.schema import migrate as run_migrations
    from models.schema import seed as run_seed

    _bind()
    applied = run_migrations(rebuild_tables=rebuild_tables)
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (schema is current)'}")
    if seed:
        click.echo(f"currencies seeded: {run_seed()}")


@main.command(help="Show a payment intent's history (every ztracking snapshot, oldest first).")
@click.argument("payment_intent_id")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
def history(payment_intent_id: str, as_json: bool) -> None:
    from domain.context import OperationContext
    from domain.payment_intents import get_payment_intent_history
    from domain.schemas import GetPaymentIntentInput, parse_input

    ctx = OperationContext(trace_id="cli", scoped_key="cli", owner="cli")
    with _operation():
        rows = get_payment_intent_history(
            ctx, parse_input(GetPaymentIntentInput, {"paymentIntentId": payment_intent_id})
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'version':>7}  {'date (UTC)':<24}  {'status':<24}  {'received':>9}  {'refunded':>9}  cause")
    for row in rows:
        click.echo(
            f"{row['ztrackingVersion']:>7}  {row['versionDate']:<24}  {row['status']:<24}  "
            f"{row['amountReceived']:>9}  {row['amountRefunded']:>9}  {row['cause']}"
        )


webhooks = _group("webhooks", "Stored Stripe webhook events.")


@webhooks.command("replay", help="Apply a stored event again (safe: a stale or repeated event changes nothing).")
@click.argument("event_id")
def replay(event_id: str) -> None:
    from domain.webhooks import replay_event

    with _operation():
        status = replay_event(event_id)
    click.echo(f"{event_id}: {status}")


@webhooks.command("sweep", help="Fetch Stripe's events of the last HOURS and ingest those no webhook delivered.")
@click.option("--hours", default=1.0, show_default=True, help="How far back to look (Stripe keeps events 30 days).")
def sweep(hours: float) -> None:
    from domain.webhooks import events_since, ingest_missing
    from models import unit_of_work

    _bind()
    with (
        unit_of_work(),
        click.progressbar(
            events_since(window_s=int(hours * 3600)), label="Stripe's events checked", show_pos=True, file=sys.stderr
        ) as events,
    ):
        recovered = ingest_missing(events)
    click.echo(f"events recovered: {recovered}")


@main.command(
    help="Run one janitor pass now: settle operations nobody is finishing by what Stripe did (beat runs it every "
    "minute); it never sends Stripe anything new."
)
def janitor() -> None:
    from domain import janitor as janitor_module
    from models import unit_of_work

    _bind()
    with unit_of_work():
        counts = janitor_module.run()
    for outcome, count in counts.items():
        click.echo(f"{outcome}: {count}")


@main.command(
    help="Archive and delete what the retention settings say is old enough (beat runs it daily when "
    "RETENTION_ENABLED): intents with their history, attempts and refunds to RETENTION_ARCHIVE_DIR, then aged webhook "
    "events and resolved idempotency records. --dry-run says what it would move and changes nothing."
)
@click.option("--dry-run", is_flag=True, help="Count what would be archived or deleted, per kind and month.")
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="With --dry-run: count as if it were this time, UTC (e.g. 2027-01-01T00:00); default now.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def retention(dry_run: bool, as_of: dt.datetime | None, as_json: bool) -> None:
    from domain import retention as retention_module
    from models import unit_of_work

    if as_of is not None and not dry_run:
        raise click.UsageError("--as-of only goes with --dry-run: a real run moves what is old enough now")
    _bind()
    with unit_of_work():
        report = retention_module.run(as_of, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(1 if report.skipped else 0)


@main.command(help="Check every dependency: database, Celery broker, a worker, Stripe, Kafka. Exit 1 if any fails.")
def check() -> None:
    from operations.view import readiness

    _bind()
    failed = 0
    for name, answer in readiness(stripe_directly=True).items():
        failed += not answer["ok"]
        click.echo(f"{name:<9} {'ok' if answer['ok'] else 'FAILED'}  {answer['detail']}".rstrip())
    try:
        backlog, oldest = _outbox_backlog()
        click.echo(f"{'events':<9} {backlog} waiting to be published, the oldest {oldest:.0f} s old")
    except Exception as exc:  # the database check above already says why
        click.echo(f"{'events':<9} backlog unknown ({type(exc).__name__})")
    sys.exit(1 if failed else 0)


@webhooks.command("unmatched", help="Stored events that name a payment the service does not know (yet).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def unmatched(as_json: bool) -> None:
    from models import WebhookEvent, unit_of_work, utcnow

    _bind()
    with unit_of_work():
        rows = list(
            WebhookEvent.select()
            .where(WebhookEvent.status == "unmatched")
            .order_by(WebhookEvent.received_at)
            .limit(200)
        )
        now = utcnow()
    found = [
        {"eventId": r.id, "type": r.type, "object": r.object_id, "ageS": round((now - r.received_at).total_seconds())}
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for row in found:
        click.echo(f"{row['eventId']}  {row['type']:<32} {row['object'] or '-':<32} {row['ageS']} s ago")
    click.echo(
        f"{len(found)} unmatched; `payments webhooks replay <event id>` applies one again once its payment exists"
    )


@main.command("ops-user", help="Print an OPS_USERS entry for NAME (the password asked twice, stored only as its hash).")
@click.argument("name")
@click.option("--role", type=click.Choice(["act", "read"]), default="read", show_default=True, help="act: may act.")
@click.password_option(help="The password (asked when not given).")
def ops_user(name: str, role: str, password: str) -> None:
    from werkzeug.security import generate_password_hash

    from doors.auth import CALLER_NAME

    if not CALLER_NAME.fullmatch(name):
        raise click.BadParameter("a letter, then letters, digits, _ . - (at most 64)", param_hint="NAME")
    click.echo(f"{name}:{generate_password_hash(password)}:{role}")


claims = _group("claims", "Idempotency claims: the requests being run, and those nobody is finishing.")


@claims.command("stuck", help="Claims nobody is finishing (the janitor's backlog), oldest first. Exit 1 if any.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def claims_stuck(as_json: bool) -> None:
    from models import unit_of_work, utcnow
    from operations.view import claims as read_claims

    _bind()
    with unit_of_work():
        found = read_claims(utcnow(), shown=1000)
    stuck = found["abandoned"]
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
    else:
        for row in stuck["rows"]:
            stripe = "Stripe called" if row["stripeCalled"] else "Stripe not called"
            click.echo(
                f"{row['operation']:<24} {row['resourceId']:<34} {row['state']:<10} attempts {row['attempts']:<3} "
                f"{stripe:<17} {row['age_s']:.0f} s old"
            )
        click.echo(f"{stuck['count']} stuck, {found['in_flight']['count']} in flight; `payments janitor` settles them")
    sys.exit(1 if stuck["count"] else 0)


dlq = _group("dlq", "Dead-lettered Kafka requests (`<topic>-dlq`): what the relay could not read.")


@dlq.command("list", help="The dead letters of TOPIC (a request topic, e.g. create-payment-intent).")
@click.argument("topic")
def dlq_list(topic: str) -> None:
    from messaging.dead_letters import dead_letters, headers_of
    from observability.logs import scrub

    messages = dead_letters(topic)
    for message in messages:
        headers = headers_of(message)
        reason = headers.get("dlq-reason", b"?").decode(errors="replace")
        key = (message.key() or b"").decode(errors="replace")
        value = scrub((message.value() or b"").decode(errors="replace"))[:160]
        click.echo(f"{message.partition()}:{message.offset():<8} {reason:<18} key={key!r} {value}")
    click.echo(f"{len(messages)} dead letters on {topic}-dlq")


@dlq.command("replay", help="Send dead letters of TOPIC back to it after a fix: --offset P:O (repeatable) or --all.")
@click.argument("topic")
@click.option("--offset", "offsets", multiple=True, help="PARTITION:OFFSET of one dead letter, from `dlq list`.")
@click.option("--all", "everything", is_flag=True, help="Every dead letter of the topic.")
def dlq_replay(topic: str, offsets: tuple[str, ...], everything: bool) -> None:
    from messaging.dead_letters import dead_letters, replay

    if not offsets and not everything:
        raise click.UsageError("name the dead letters: --offset PARTITION:OFFSET (repeatable), or --all")
    wanted = {tuple(int(part) for part in item.split(":", 1)) for item in offsets}
    chosen = [m for m in dead_letters(topic) if everything or (m.partition(), m.offset()) in wanted]
    if not everything and len(chosen) != len(wanted):
        raise click.UsageError(f"no such dead letter on {topic}-dlq: {sorted(wanted)}")
    with click.progressbar(chosen, label=f"replaying to {topic}", file=sys.stderr) as messages:
        failed = replay(topic, messages)
    click.echo(f"{len(chosen) - len(failed)} sent back to {topic}" + (f"; failed: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


def _outbox_backlog() -> tuple[int, float]:
    from event_publisher.publisher import outbox_backlog
    from models import unit_of_work

    with unit_of_work():
        return outbox_backlog()


events = _group("events", "The payment events outbox (published by `python -m event_publisher`).")


@events.command(name="backlog", help="How many events wait to be published, and how old the oldest is.")
def events_backlog() -> None:
    _bind()
    backlog, oldest = _outbox_backlog()
    click.echo(f"waiting: {backlog}")
    click.echo(f"oldest:  {oldest:.0f} s")


@events.command(name="replay", help="Publish again the events of a window (for a consumer that lost its data).")
@click.option("--since", required=True, type=click.DateTime(), help="Start of the window, UTC (e.g. 2026-12-01T08:00).")
@click.option("--until", type=click.DateTime(), default=None, help="End of the window, UTC (default: now).")
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
def events_replay(since: dt.datetime, until: dt.datetime | None, types: tuple[str, ...]) -> None:
    from domain.payment_events import TYPES, replay
    from models import unit_of_work, write_transaction

    unknown = sorted(set(types) - set(TYPES))
    if unknown:
        raise click.BadParameter(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(TYPES)}")
    _bind()
    with unit_of_work(), write_transaction():
        count = replay(since, until, types)
    click.echo(f"events queued to be published again: {count}")


if __name__ == "__main__":
    main()
