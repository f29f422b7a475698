"""Bursts above Stripe's rate limit (issue 27): the stand-in refuses above L calls/s, the service paces at L.

The load offers `BURST_FACTOR` x L creates a second (create-payment-intent + confirm through the REST door, as W1
sends them, each under its own Idempotency-Key) for `BURST_S` seconds, then waits until every request is answered
(at most `DRAIN_BOUND_S`). What passes: every request answered, 201, with an intent of its own, and the stand-in
made one PaymentIntent per intent of ours (never two keys for one). Counted beside it: the 429s the stand-in sent
(against drill 22's bound, which a burst on a saturated machine can pass: the service's calls leave late and
bunched), the retries they cost and the tasks re-queued for the pace; the time to drain is from the burst's first
request to its last answer. The `+unpaced` phase is the control: the same burst with the service's limiter off
(STRIPE_RATE_LIMIT=0), where the stand-in's 429s show.

As a process of its own: `python -m bench.bursts < spec.json > result.json` (run by the orchestrator, bench/run.py).
The pure parts (figures, verdict, table) are tested in tests/bench/test_bench_bursts.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import requests

from bench import fake_stripe
from bench.load import Requests, Step, arrivals, check_loopback, percentile
from bench.workloads import Phase

if TYPE_CHECKING:
    from bench.run import Run

BURST = "burst"  # the phases' workload name: `--only burst` keeps both, `--only burst+unpaced` the control
BURST_LIMIT = 25  # calls/s: the stand-in's limit and the service's STRIPE_RATE_LIMIT (Stripe's test-mode default)
BURST_FACTOR = 4  # offered creates/s over the limit
BURST_S = 3.0
DRAIN_BOUND_S = 120.0  # a request not answered by then counts as unanswered
# The smoke run checks the harness only, in its service phase (unpaced, the stand-in unlimited): a few creates.
SMOKE_BURST_RATE, SMOKE_BURST_S = 8.0, 1.0
WARM_RATE, WARM_S = 5.0, 2.0  # before a measured burst: below any pace
PACED = (("STRIPE_RATE_LIMIT", str(BURST_LIMIT)),)
UNPACED = (("STRIPE_RATE_LIMIT", "0"),)


def phases(broker: str) -> list[Phase]:
    """The burst with the service's limiter on, then the control with it off (each its own processes)."""
    return [
        Phase(f"service-{broker}-burst", "service", (BURST,), broker, PACED),
        Phase(f"service-{broker}-burst-unpaced", "service", (BURST,), broker, UNPACED, "+unpaced"),
    ]


def is_burst(phase: Phase) -> bool:
    return BURST in phase.workloads


def stripe_429_bound(offered: int) -> int:
    """How many 429s may reach the stand-in while the service paces (drill 22's bound): clock jitter between the
    service's Redis clock and the stand-in's bucket, not a burst let through."""
    return max(2, offered // 50)


# --- the load (its own process) ----------------------------------------------------------------------------------


async def send(spec: dict[str, Any]) -> dict[str, Any]:
    """Open-loop creates at the spec's rate for its duration; every request's [sent s, answered s, status, id or
    error code], times from the first request's scheduled start."""
    import aiohttp

    base = spec["base_url"]
    check_loopback(base)
    made = Requests({**spec, "request": "create-payment-intent"})
    step = Step(spec["rate"], spec["duration_s"])
    records: list[list[Any]] = []
    timeout = aiohttp.ClientTimeout(total=spec["drain_bound_s"])
    connector = aiohttp.TCPConnector(limit=2000, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, record: list[Any]) -> None:
            method, path, headers, body, _ = made.rest(i)
            try:
                async with session.request(method, base + path, headers=headers, data=body) as response:
                    payload = await response.read()
                    record[1] = time.monotonic() - step.monotonic_start
                    record[2] = response.status
                    try:
                        answer = json.loads(payload)
                        record[3] = answer["id"] if response.status == 201 else answer["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        record[3] = None
                    record[4] = response.headers.get("Idempotent-Replayed") == "true"
            except TimeoutError:
                record[3] = "timeout"
            except aiohttp.ClientError as exc:
                record[3] = type(exc).__name__

        tasks = []
        async for outcome in arrivals(step):
            record = [outcome.scheduled - step.monotonic_start, None, None, None, False]
            records.append(record)
            tasks.append(asyncio.create_task(one(len(records) - 1, record)))
        if tasks:
            await asyncio.wait(tasks, timeout=spec["drain_bound_s"] + 1)
    return {"wall_start": step.wall_start, "wall_end": time.time(), "requests": records}


# --- the figures (pure) ------------------------------------------------------------------------------------------


def figures(records: list[list[Any]], drain_bound_s: float) -> dict[str, Any]:
    """Offered, answered, status counts, duplicates, time to drain and latency, from the load's records."""
    offered = len(records)
    answered = [r for r in records if r[1] is not None]
    statuses = Counter("no answer" if r[2] is None else str(r[2]) for r in records)
    errors = Counter(f"{r[2] or ''} {r[3]}".strip() for r in records if r[2] != 201)
    ids = [r[3] for r in records if r[2] == 201]
    latencies = sorted((r[1] - r[0]) * 1000 for r in answered)
    last = max((r[1] for r in answered), default=None)
    first = min((r[0] for r in records), default=None)
    drained = offered > 0 and len(answered) == offered and last is not None and last <= drain_bound_s
    return {
        "offered": offered,
        "answered": len(answered),
        "statuses": dict(statuses.most_common()),
        "errors": dict(errors.most_common(5)),
        "answered_201": statuses.get("201", 0),
        # Two requests answered with one intent, or an answer replayed from another request's key: not once each.
        "duplicate_answers": len(ids) - len(set(ids)) + sum(1 for r in records if r[4]),
        "drain_s": round(last - first, 2) if drained and last is not None and first is not None else None,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": round(latencies[-1], 1) if latencies else None,
    }


def verdict(fig: dict[str, Any], stripe: dict[str, Any], paced: bool) -> list[str]:
    """What failed ([]: passed). Paced: every request answered 201 once, each intent made once at the stand-in,
    drained in bound (the 429s are counted, not judged: `within_429_bound`). The unpaced control passes when the
    stand-in's limit was met (429s > 0)."""
    if not paced:
        return [] if stripe.get("refused", 0) > 0 else ["the stand-in refused nothing: the control did not bite"]
    failed = []
    offered = fig["offered"]
    if fig["answered_201"] != offered:
        failed.append(f"{offered - fig['answered_201']} of {offered} not answered 201 ({fig['errors']})")
    if fig["drain_s"] is None:
        failed.append("not drained within the bound")
    if fig["duplicate_answers"]:
        failed.append(f"{fig['duplicate_answers']} answers not each request's own")
    if stripe.get("intentsCreated") != offered:
        failed.append(f"{stripe.get('intentsCreated')} intents made at the stand-in for {offered} requests")
    if stripe.get("intentsCreatedTwice"):
        failed.append(f"{stripe['intentsCreatedTwice']} intents made twice at the stand-in")
    return failed


def within_429_bound(offered: int, stripe: dict[str, Any]) -> bool:
    return int(stripe.get("refused", 0)) <= stripe_429_bound(offered)


def table(bursts: list[dict[str, Any]]) -> str:
    """One row per burst: what was offered, how it was answered, how long it took, what the stand-in saw."""
    if not bursts:
        return "(no burst phase in this run)"
    lines = [
        "| burst | service paces at /s | stand-in limit /s | offered (/s x s) | answered | 201 | other answers "
        "| duplicates | drain s | p50 ms | p99 ms | stand-in calls, 429s (bound), peak /s | intents made (twice) "
        "| task retries, re-queued for the pace | load avg | result |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |",
    ]
    for b in bursts:
        s = b["stripe"]
        other = {k: v for k, v in b["errors"].items()} or "-"
        result = ("control: " if b["control"] else "") + ("pass" if b["passed"] else "FAIL: " + "; ".join(b["failed"]))
        lines.append(
            f"| {b['name']} | {b['paced_at'] or 'off'} | {b['stand_in_limit'] or 'none'} "
            f"| {b['offered']} ({b['rate_per_s']:g} x {b['duration_s']:g}) | {b['answered']} | {b['answered_201']} "
            f"| {other} | {b['duplicate_answers']} | {_fmt(b['drain_s'])} | {_fmt(b['p50_ms'])} | {_fmt(b['p99_ms'])} "
            f"| {s.get('admitted', 0) + s.get('refused', 0)}, {s.get('refused', 0)} "
            f"({'within' if within_429_bound(b['offered'], s) else 'over'} {stripe_429_bound(b['offered'])}), "
            f"{s.get('peakPerSecond', '-')} | {s.get('intentsCreated', '-')} ({s.get('intentsCreatedTwice', '-')}) "
            f"| {_fmt(b.get('retried'))}, {_fmt(b.get('requeued'))} | {_fmt(b.get('load_avg'))} | {result} |"
        )
    return "\n".join(lines)


def section(payload: dict[str, Any]) -> str:
    """RESULTS.md's section on the bursts."""
    return f"""## Bursts above Stripe's rate limit (issue 27)

The Stripe stand-in refuses more than {BURST_LIMIT} calls a second per account (Stripe's test mode: a 429 with
Stripe's `rate_limit` body, before anything is made) and the service paces at the same rate (`STRIPE_RATE_LIMIT`,
issue 20's limiter, shared through Redis). The load offers {BURST_FACTOR} x that in creates (create + confirm, REST,
each under its own key) for {BURST_S:g} s, then waits for every answer (at most {DRAIN_BOUND_S:.0f} s). **drain s**
is from the burst's first request to its last answer; latency counts from each request's scheduled start. Pass:
every request answered 201 with an intent of its own, each intent made once at the stand-in (one idempotency key
each). The 429s at the stand-in are counted against drill 22's bound, max(2, offered / 50), and not judged: on a
saturated machine the service's paced calls leave late and bunched, and the bucket's slack (stripe_pacing.py
BURST_SHARE) can be outrun. "task retries": the worker's transient-failure retries (a 429 is one, same key);
"re-queued": a task whose turn was past its wait budget (back to the queue, no retry spent). "load avg": the
machine's 1-minute load before the burst (2 cores, shared). The `+unpaced` row is the control: the service's
limiter off, the same burst; the stand-in's 429s show there.

{table(payload.get("bursts") or [])}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


# --- the orchestrator's side -------------------------------------------------------------------------------------


def stand_in(base: str, per_second: int | None = None) -> dict[str, Any]:
    """The stand-in's counts; with `per_second`, its limit set from now on and every count started afresh."""
    if per_second is None:
        answer = requests.get(f"{base}/_config/rate_limit", timeout=5)
    else:
        answer = requests.post(f"{base}/_config/rate_limit", json={"perSecond": per_second}, timeout=5)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def worker_lines(run: Run, text: str) -> int:
    """The payments workers' log lines with `text` (tasks/base.py's): "waits in the queue" for a task sent back
    for the pace, "transient failure, retrying" for a retry (a Stripe 429 is one)."""
    return sum(
        group.log_text().count(text) for name, group in run.processes.groups.items() if name.split("-")[0] == "worker"
    )


REQUEUED, RETRIED = "waits in the queue", "transient failure, retrying"


def measure(run: Run, phase: Phase, endpoints: dict[str, str], service: list[str], smoke: bool = False) -> None:
    """One burst against the phase's processes, the stand-in limited meanwhile; its figures into `run.bursts`."""
    tag = "burst-smoke" if smoke else phase.tag(BURST)
    settings = {**dict(phase.env), **run.o.env}  # as service_env merges them: --env wins
    # The bench's default is the stand-in's (no limit: not paced); "" is the key's default (paced, 25/s in test mode).
    paced_at = settings.get("STRIPE_RATE_LIMIT", str(fake_stripe.RATE_LIMIT_PER_S)).strip()
    paced = paced_at != "0"
    limit = 0 if smoke else BURST_LIMIT
    rate, duration = (SMOKE_BURST_RATE, SMOKE_BURST_S) if smoke else (BURST_FACTOR * BURST_LIMIT, BURST_S)
    if not smoke:
        # Warm, below the pace and the stand-in unlimited: the pools and connections of fresh processes grow here,
        # so that the drain time is the pace's, not a cold start's.
        run_process(run, {**spec_base(run, endpoints), "rate": WARM_RATE, "duration_s": WARM_S}, f"{tag}-warmup", 60)
        run.settle(service)
    requeued_before, retried_before = worker_lines(run, REQUEUED), worker_lines(run, RETRIED)
    load_avg = round(os.getloadavg()[0], 1)
    spec = {**spec_base(run, endpoints), "rate": rate, "duration_s": duration}
    run.log(f"{tag}: {rate:g} creates/s for {duration:g} s, stand-in limit {limit or 'none'}, paced at {paced_at}")
    stand_in(run.stripe_base, limit)
    try:
        outcome = run_process(run, spec, tag, duration + DRAIN_BOUND_S + 60)
        stripe = stand_in(run.stripe_base)
    finally:
        stand_in(run.stripe_base, 0)  # the other phases' stand-in enforces no limit
    fig = figures(outcome["requests"], DRAIN_BOUND_S)
    failed = verdict(fig, stripe, paced or smoke)
    result = {
        "name": tag,
        "paced_at": paced_at if paced else None,
        "stand_in_limit": limit,
        "rate_per_s": rate,
        "duration_s": duration,
        "wall_start": outcome["wall_start"],
        "wall_end": outcome["wall_end"],
        **fig,
        "stripe": stripe,
        "within_429_bound": within_429_bound(fig["offered"], stripe),
        "retried": worker_lines(run, RETRIED) - retried_before,
        "requeued": worker_lines(run, REQUEUED) - requeued_before,
        "load_avg": load_avg,
        "control": not paced and not smoke,
        "failed": failed,
        "passed": not failed,
    }
    run.log(f"{tag}: {json.dumps({k: v for k, v in result.items() if k not in ('name', 'wall_start', 'wall_end')})}")
    run.bursts.append(result)


def spec_base(run: Run, endpoints: dict[str, str]) -> dict[str, Any]:
    return {
        "base_url": endpoints["rest"],
        "api_key": run.secrets["API_KEYS"],
        "data": run.data,
        "drain_bound_s": DRAIN_BOUND_S,
    }


def run_process(run: Run, spec: dict[str, Any], tag: str, bound_s: float) -> dict[str, Any]:
    """This module as the load process (run.run_load's process, with this module for bench.load), stopped in any
    case."""
    return run.run_load(spec, tag, module="bench.bursts", bound_s=bound_s)


def check_smoke(bursts: list[dict[str, Any]]) -> None:
    """The smoke run's burst: every request answered 201, each intent once at the stand-in."""
    assert [b["name"] for b in bursts] == ["burst-smoke"], f"bursts run: {[b['name'] for b in bursts]}"
    assert bursts[0]["passed"], f"burst-smoke: {bursts[0]['failed']}"


def main() -> None:
    spec = json.loads(sys.stdin.read())
    json.dump(asyncio.run(send(spec)), sys.stdout)


if __name__ == "__main__":
    main()
