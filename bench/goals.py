"""Issue 27's goals, each computed from one run's results.json: what was asked, what was measured, met or not.

Only the run's own figures: a goal whose phase did not run says so rather than borrowing another run's number.
"""

from __future__ import annotations

from typing import Any

from bench.report import R2_CEILING_SHARE
from bench.workloads import ORIGINAL_RATIO_TARGET

NESTJS_BASELINE = "B-nestjs"  # the platform's original NestJS service (bench/baselines/nestjs.py)
NESTJS_RATIO = ORIGINAL_RATIO_TARGET  # ours over the original on the same phase
WRITE_RATE = 100.0  # Stripe's live-mode limit per account: W1 and W2 sustain it
WRITE_P99_MARGIN_MS = 300.0  # … with p99 under Stripe's latency + this
CPU_PER_CREATE_MS = 8.0  # the service's own CPU per create (door or relay, worker, publisher)
R1_RATIO = 0.6  # R1 against the direct read path (B-direct-rest)
R2_RATIO = R2_CEILING_SHARE  # R2 against the rig's Kafka ceiling (B-kafka-ceiling)
READ_P95_MS = 250.0  # the PRD's bound for every read at its sustained rate
READS = ("R1", "R2", "R3")


def _result(results: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((r for r in results if r.get("name") == name), None)


def _ratio(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> float | None:
    if not ours or not theirs or not theirs.get("throughput_per_s"):
        return None
    return float(ours["throughput_per_s"]) / float(theirs["throughput_per_s"])


def _row(goal: str, measured: str, met: bool | None) -> tuple[str, str, str]:
    return goal, measured, "not run" if met is None else ("**met**" if met else "not met")


def _nestjs_rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    theirs = _result(results, NESTJS_BASELINE)
    ours = [r for r in results if r.get("baseline") == NESTJS_BASELINE]
    if theirs is None or not ours:
        return [_row(f"ours ≥ {NESTJS_RATIO:g} x the original NestJS service (creates, cart dialect)", "-", None)]
    rows = []
    for result in ours:
        ratio = _ratio(result, theirs)
        measured = (
            f"{result['name']} {result['throughput_per_s']:g}/s (p99 {result['p99_ms']} ms) against "
            f"{theirs['throughput_per_s']:g}/s (p99 {theirs['p99_ms']} ms)"
            + (f" = **{ratio:.0f} x**" if ratio is not None else " (the original sustained no step)")
        )
        rows.append(
            _row(
                f"ours ≥ {NESTJS_RATIO:g} x the original NestJS service ({result['name']})",
                measured,
                None if ratio is None else ratio >= NESTJS_RATIO,
            )
        )
    return rows


def _write_rows(results: list[dict[str, Any]], stripe_latency_ms: float) -> list[tuple[str, str, str]]:
    rows = []
    budget = stripe_latency_ms + WRITE_P99_MARGIN_MS
    for name in ("W1", "W2"):
        result = _result(results, name)
        if result is None:
            rows.append(_row(f"{name} sustains {WRITE_RATE:g} creates/s, p99 < {budget:g} ms", "-", None))
            rows.append(_row(f"{name}: our CPU per create ≤ {CPU_PER_CREATE_MS:g} ms", "-", None))
            continue
        rate, p99 = float(result["throughput_per_s"]), result.get("p99_ms")
        rows.append(
            _row(
                f"{name} sustains {WRITE_RATE:g} creates/s, p99 < {budget:g} ms",
                f"sustained {rate:g}/s, p99 {p99} ms",
                rate >= WRITE_RATE and p99 is not None and float(p99) < budget,
            )
        )
        by_process = result.get("cpu_s_per_op_by_process") or {}
        cpu_ms = sum(by_process.values()) * 1000
        parts = ", ".join(f"{k} {v * 1000:.2f}" for k, v in sorted(by_process.items()) if v >= 0.00005)
        rows.append(
            _row(
                f"{name}: our CPU per create ≤ {CPU_PER_CREATE_MS:g} ms",
                f"{cpu_ms:.2f} ms at {rate:g}/s ({parts})" if by_process else "-",
                cpu_ms <= CPU_PER_CREATE_MS if by_process and rate > 0 else None,
            )
        )
    return rows


def _burst_rows(bursts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    paced = [b for b in bursts if not b.get("control") and b.get("name") != "burst-smoke"]
    goal = "a burst of 4 x the Stripe stand-in's limit for 3 s: every request 201 once"
    if not paced:
        return [_row(goal, "-", None)]
    rows = []
    for burst in paced:
        stripe = burst.get("stripe") or {}
        rows.append(
            _row(
                goal,
                f"{burst['name']}: {burst['answered_201']}/{burst['offered']} answered 201, "
                f"{burst['duplicate_answers']} duplicates, drained in {burst['drain_s']} s, "
                f"{stripe.get('refused', 0)} Stripe 429s",
                bool(burst.get("passed")),
            )
        )
    return rows


def _read_rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    rows = []
    for name, baseline, target in (("R1", "B-direct-rest", R1_RATIO), ("R2", "B-kafka-ceiling", R2_RATIO)):
        ours, theirs = _result(results, name), _result(results, baseline)
        ratio = _ratio(ours, theirs)
        measured = (
            f"{ours['throughput_per_s']:g}/s against {theirs['throughput_per_s']:g}/s = {ratio:.2f} x"
            if ours and theirs and ratio is not None
            else "-"
        )
        rows.append(_row(f"{name} ≥ {target:g} x {baseline}", measured, None if ratio is None else ratio >= target))
    for name in READS:
        result = _result(results, name)
        p95 = result.get("p95_ms") if result else None
        rows.append(
            _row(
                f"{name}: p95 < {READ_P95_MS:g} ms at its sustained rate",
                f"p95 {p95} ms at {result['throughput_per_s']:g}/s" if result and p95 is not None else "-",
                None if p95 is None or not result or not result["throughput_per_s"] else float(p95) < READ_P95_MS,
            )
        )
    return rows


def rows(payload: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) for every goal of issue 27, from one run's payload (results.json)."""
    results = payload.get("results", [])
    return [
        *_nestjs_rows(results),
        *_write_rows(results, float(payload.get("stripe_latency_ms", 300.0))),
        *_burst_rows(payload.get("bursts") or []),
        *_read_rows(results),
    ]


def table(payload: dict[str, Any]) -> str:
    lines = ["| goal (issue 27) | measured in this run | verdict |", "| --- | --- | --- |"]
    lines += [f"| {goal} | {measured} | {verdict} |" for goal, measured, verdict in rows(payload)]
    cost = payload.get("worker_cost")
    if cost:
        lines.append(
            f"\nIn process (bench/worker_cost.py: the create task through Celery's `apply`, the stand-in answering at "
            f"once, {cost['tasks_per_round']} creates a round, best of {len(cost['rounds'])}): the payments worker's "
            f"own code costs **{cost['cpu_ms_per_task']:.2f} ms of CPU per create** (rounds {cost['rounds']})."
        )
    return "\n".join(lines)
