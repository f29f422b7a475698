"""`payments`: the operator's command — schema, webhook replay, intent history, readiness."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from settings import get_settings


def _bind() -> None:
    from models import bind_database

    bind_database(get_settings())


@click.group(help="Operate vy-finance-payments. Settings come from the environment and .env, as for the service.")
@click.version_option(package_name="vy-finance-payments", prog_name="payments")
def main() -> None:
    from logging_setup import configure_logging

    configure_logging(get_settings(), "cli")


@main.command(help="Apply pending schema migrations (idempotent); with --seed, also fill reference data.")
@click.option("--seed/--no-seed", default=False, help="Fill the currency reference table too.")
def migrate(seed: bool) -> None:
    from models.schema import migrate as run_migrations
    from models.schema import seed as run_seed

    _bind()
    applied = run_migrations()
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (schema is current)'}")
    if seed:
        click.echo(f"currencies seeded: {run_seed()}")


@main.command(help="Show a payment intent's history (every ztracking snapshot, oldest first).")
@click.argument("payment_intent_id")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
def history(payment_intent_id: str, as_json: bool) -> None:
    from domain.context import OperationContext
    from domain.errors import OperationError
    from domain.payment_intents import get_payment_intent_history
    from domain.schemas import GetPaymentIntentInput, parse_input
    from models import unit_of_work

    _bind()
    ctx = OperationContext(trace_id="cli", scoped_key="cli", owner="cli")
    try:
        with unit_of_work():
            rows = get_payment_intent_history(
                ctx, parse_input(GetPaymentIntentInput, {"paymentIntentId": payment_intent_id})
            )
    except OperationError as exc:
        click.echo(f"{exc.code}: {exc.message}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'version':>7}  {'date (UTC)':<24}  {'status':<24}  {'received':>9}  {'refunded':>9}  cause")
    for row in rows:
        click.echo(
            f"{row['ztrackingVersion']:>7}  {row['versionDate']:<24}  {row['status']:<24}  "
            f"{row['amountReceived']:>9}  {row['amountRefunded']:>9}  {row['cause']}"
        )


@main.group(help="Stored Stripe webhook events.")
def webhooks() -> None:
    pass


@webhooks.command("replay", help="Apply a stored event again (safe: a stale or repeated event changes nothing).")
@click.argument("event_id")
def replay(event_id: str) -> None:
    from domain.errors import OperationError
    from domain.webhooks import replay_event
    from models import unit_of_work

    _bind()
    try:
        with unit_of_work():
            status = replay_event(event_id)
    except OperationError as exc:
        click.echo(f"{exc.code}: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"{event_id}: {status}")


@webhooks.command("sweep", help="Fetch Stripe's events of the last HOURS and ingest those no webhook delivered.")
@click.option("--hours", default=1.0, show_default=True, help="How far back to look (Stripe keeps events 30 days).")
def sweep(hours: float) -> None:
    from domain.webhooks import sweep_events
    from models import unit_of_work

    _bind()
    with unit_of_work():
        recovered = sweep_events(window_s=int(hours * 3600))
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


@main.command(help="Check every dependency: database, Celery broker, a worker, Stripe, Kafka. Exit 1 if any fails.")
def check() -> None:
    from observability.ops import readiness

    _bind()
    failed = 0
    for name, answer in readiness().items():
        failed += not answer["ok"]
        click.echo(f"{name:<9} {'ok' if answer['ok'] else 'FAILED'}  {answer['detail']}".rstrip())
    try:
        backlog, oldest = _outbox_backlog()
        click.echo(f"{'events':<9} {backlog} waiting to be published, the oldest {oldest:.0f} s old")
    except Exception as exc:  # the database check above already says why
        click.echo(f"{'events':<9} backlog unknown ({type(exc).__name__})")
    sys.exit(1 if failed else 0)


def _outbox_backlog() -> tuple[int, float]:
    from event_publisher.publisher import outbox_backlog
    from models import unit_of_work

    with unit_of_work():
        return outbox_backlog()


@main.group(help="The payment events outbox (published by `python -m event_publisher`).")
def events() -> None:
    pass


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
