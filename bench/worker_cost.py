"""What one create costs the payments worker's own code, in process: `python -m bench.worker_cost [--creates N]`.

The create-payment-intent task (W1's request: a seeded customer's default card, `confirm: true`) run through
Celery's `apply` in this process against the benchmark's Stripe stand-in answering at once, on a database of its
own: CPU time of this process per create (process_time, so a busy shared machine stretches wall time, not this),
best of interleaved rounds. What the broker, the door and the reply add is not in it; the bench's W1/W2 phases
measure those end to end. `--profile FILE` writes the functions with the most CPU time (cProfile on process_time)
for FINDINGS.md; py-spy can be pointed at this process as well (`py-spy record -p PID`).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.stack import Processes, clean_environment, database_env, mariadb_database, start_fake_stripe


def _creates(rows: dict[str, list[str]], count: int, run: str, start: int, operation: str = "create") -> float:
    """CPU ms per task over `count` tasks run one after the other: W1's creates, W3's (cart), or R1's reads."""
    from doors.platform import translate
    from settings import get_settings
    from stand_ins.demo import checkout_body
    from tasks.operations import TASKS

    task = TASKS["get-payment-intent" if operation == "read" else "create-payment-intent"]
    customers, intents, settings = rows["customers"], rows["intents"], get_settings()
    began = time.process_time()
    for i in range(start, start + count):
        body: dict[str, Any]
        if operation == "create":
            body = {"customerId": customers[i % len(customers)], "amount": 1000 + i % 500, "currency": "usd"}
            body["confirm"] = True
        elif operation == "cart":  # W3's: the web app's cart, a person never seen before (a new Stripe Customer)
            body = translate("create-payment-intent", checkout_body(f"cost.{run}.{i}@example.com"), settings)
        else:
            body = {"paymentIntentId": intents[i % len(intents)]}
        meta = {"idempotencyKey": f"cost-{run}-{i}", "traceId": f"t{i}", "door": "rest"}
        envelope = task.apply(args=[body, meta]).get()
        if "response" not in envelope:
            raise RuntimeError(f"a {operation} failed: {envelope.get('error')}")
    return (time.process_time() - began) * 1000 / count


def measure(
    creates: int = 300, rounds: int = 3, profile: Path | None = None, operation: str = "create"
) -> dict[str, Any]:
    """Best-of-rounds CPU per task (`create`, `cart` or `read`); with `profile`, the top functions by CPU time of
    one more round."""
    with tempfile.TemporaryDirectory() as logs, mariadb_database(f"vyp_cost_{uuid.uuid4().hex[:8]}") as database:
        processes = Processes(Path(logs))
        try:
            stripe_base = start_fake_stripe(processes, clean_environment(), 0)
            os.environ.update(
                {
                    **database_env(database),
                    "STRIPE_API_BASE": stripe_base,
                    "STRIPE_SECRET_KEY": "sk_test_worker_cost",
                    "STRIPE_RATE_LIMIT": "0",
                    "LOG_STREAM_LEVEL": "ProdStandard",
                }
            )
            return _measure(creates, rounds, profile, operation)
        finally:
            processes.stop_all()


def _measure(creates: int, rounds: int, profile: Path | None, operation: str) -> dict[str, Any]:
    from bench.seed import seed_rows
    from models import bind_database
    from settings import get_settings

    settings = get_settings()
    rows = seed_rows(settings, 20, 200)
    bind_database(settings)
    run = uuid.uuid4().hex[:6]
    _creates(rows, 30, run, 0, operation)  # warm: connections, caches, imports
    figures = [_creates(rows, creates, run, 1000 + r * creates, operation) for r in range(rounds)]
    top = ""
    if profile is not None:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        _creates(rows, creates, run, 100_000, operation)
        profiler.disable()
        profiler.dump_stats(profile.with_suffix(".prof"))  # for pstats' callers and callees
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=out).sort_stats("cumtime").print_stats(60)
        profile.write_text(out.getvalue())
        top = str(profile)
    return {
        "operation": operation,
        "tasks_per_round": creates,
        "cpu_ms_per_task": round(min(figures), 3),
        "rounds": [round(f, 3) for f in figures],
        "profile": top,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write cProfile's top functions (CPU time) here")
    parser.add_argument(
        "--operation", choices=("create", "cart", "read"), default="create", help="W1's create, W3's, or R1's get"
    )
    args = parser.parse_args()
    print(json.dumps(measure(args.creates, args.rounds, args.profile, args.operation)))


if __name__ == "__main__":
    main()
