"""bench/results.json (one object per workload and baseline) and bench/RESULTS.md (the same, for people)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULT_FIELDS = (
    "name",
    "throughput_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "errors",
    "cpu_s_per_op",
    "peak_rss_mb",
    "ratio_to_baseline",
)
FINDINGS = Path(__file__).resolve().parent / "FINDINGS.md"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: list[dict[str, Any]]) -> str:
    """The headline table: sustained figures at the highest step that met the p99 budget."""
    lines = [
        "| name | what | sustained /s | p50 ms | p95 ms | p99 ms (budget) | errors | broke at | "
        "CPU ms/op (ours) | Tansu CPU ms/op | peak RSS MB | DB conns | ratio to baseline |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        broke = r.get("broke_at")
        broke_text = (
            f"{broke['rate']:.0f}/s: {broke['throughput_per_s']:.0f}/s, p99 {_fmt(broke['p99_ms'], 0)}, "
            f"{broke['errors']} err"
            if broke
            else "not reached"
        )
        ratio = f"{r['ratio_to_baseline']:.2f} x {r['baseline']}" if r.get("ratio_to_baseline") else "-"
        lines.append(
            f"| {r['name']} | {r['title']} | {_fmt(r['throughput_per_s'])} | {_fmt(r['p50_ms'])} | {_fmt(r['p95_ms'])} "
            f"| {_fmt(r['p99_ms'])} ({r['slo_p99_ms']:.0f}) | {r['errors']}/{r['sent']} | {broke_text} "
            f"| {r['cpu_s_per_op'] * 1000:.2f} "
            f"| {'-' if r['broker_cpu_s_per_op'] is None else _fmt(r['broker_cpu_s_per_op'] * 1000, 2)} "
            f"| {_fmt(r['peak_rss_mb'])} | {r.get('db_connections_peak', '-')} | {ratio} |"
        )
    return "\n".join(lines)


def cpu_table(results: list[dict[str, Any]]) -> str:
    """CPU milliseconds per operation, per process, at the sustained step."""
    names = sorted({n for r in results for n in r["cpu_s_per_op_by_process"]})
    others = ("fake-stripe", "load", "mariadb", "rabbitmq", "redis")
    head = ["name", *names, "tansu", *[f"{o}*" for o in others], "machine cores busy"]
    lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    for r in results:
        cells = [r["name"]]
        cells += [
            _fmt(r["cpu_s_per_op_by_process"].get(n, 0) * 1000, 2) if n in r["cpu_s_per_op_by_process"] else ""
            for n in names
        ]
        cells.append(_fmt((r["broker_cpu_s_per_op"] or 0) * 1000, 2) if r["broker_cpu_s_per_op"] is not None else "")
        cells += [_fmt(r["other_cpu_s_per_op"].get(o, 0) * 1000, 2) for o in others]
        cells.append(_fmt(r["machine_cores_busy"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_table(results: list[dict[str, Any]], cores: int) -> str:
    """Every process's CPU per operation, the machine's (ours, Tansu, stand-ins, MariaDB, RabbitMQ, Redis), summed:
    how many operations per second this machine's cores could carry at best, and how many cores the target needs."""
    lines = [
        "| name | target /s | sustained /s | machine CPU ms/op (all processes) | of which ours | "
        f"CPU-bound ceiling on {cores} cores /s | cores the target needs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        target = r.get("target_per_s")
        if not target or not r.get("cpu_s_per_op"):
            continue
        total = r["cpu_s_per_op"] + (r["broker_cpu_s_per_op"] or 0) + sum(r["other_cpu_s_per_op"].values())
        lines.append(
            f"| {r['name']} | {target:.0f} | {_fmt(r['throughput_per_s'])} | {total * 1000:.2f} "
            f"| {r['cpu_s_per_op'] * 1000:.2f} | {cores / total:.0f} | {target * total:.1f} |"
        )
    return "\n".join(lines)


def rss_table(results: list[dict[str, Any]]) -> str:
    """Peak RSS of every process of ours, by workload."""
    lines = ["| name | process (pid, command) | peak RSS MB |", "| --- | --- | ---: |"]
    skip = {"mariadb", "rabbitmq", "redis", "load", "fake-stripe"}
    for r in results:
        for group, processes in sorted(r["peak_rss_mb_by_process"].items()):
            if group in skip:
                continue
            for process, mb in sorted(processes.items()):
                lines.append(f"| {r['name']} | {group}: {process} | {mb:.1f} |")
    return "\n".join(lines)


def steps_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| name | offered /s | done /s | p50 | p95 | p99 | max | errors | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        for s in r["steps"]:
            errors = f"{s['errors']}/{s['sent']}" + (f" {s['error_kinds']}" if s["error_kinds"] else "")
            lines.append(
                f"| {r['name']} | {s['rate']:.0f} | {s['throughput_per_s']:.1f} | {_fmt(s['p50_ms'])} "
                f"| {_fmt(s['p95_ms'])} | {_fmt(s['p99_ms'])} | {_fmt(s['max_ms'])} | {errors} "
                f"| {'yes' if s['slo_met'] else 'no'} |"
            )
    return "\n".join(lines)


def write(
    options: Any,
    results: list[dict[str, Any]],
    before: dict[str, str],
    after: dict[str, str],
    notes: list[str],
    out_dir: Path,
) -> None:
    """Write results.json and RESULTS.md (measured part, then the hand-written findings of FINDINGS.md)."""
    summary = [
        {**{k: r.get(k) for k in RESULT_FIELDS}, **{k: v for k, v in r.items() if k not in RESULT_FIELDS}}
        for r in results
    ]
    payload = {
        "machine": before,
        "machine_after": after,
        "stripe_latency_ms": options.stripe_latency_ms,
        "step_s": options.step_s,
        "env_overrides": options.env,
        "notes": notes,
        "results": summary,
    }
    (out_dir / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    # Every run is kept beside the latest, so that figures can be compared from run to run.
    runs = out_dir / "runs"
    runs.mkdir(exist_ok=True)
    stamp = before["date"].replace(" UTC", "").replace(" ", "T").replace(":", "-")
    (runs / f"{stamp}.json").write_text(json.dumps(payload, indent=1) + "\n")
    render(payload, out_dir)


def rerender(out_dir: Path) -> None:
    """RESULTS.md again from results.json (after FINDINGS.md changed), figures untouched."""
    render(json.loads((out_dir / "results.json").read_text()), out_dir)


def render(payload: dict[str, Any], out_dir: Path) -> None:
    before, after, results = payload["machine"], payload["machine_after"], payload["results"]
    notes = payload.get("notes", [])
    latency_ms, step_s, env = payload["stripe_latency_ms"], payload["step_s"], payload["env_overrides"]
    findings = FINDINGS.read_text() if FINDINGS.exists() else ""
    text = (
        f"""# Benchmark results (issue 6)

Generated by `make bench` (`python -m bench`); the figures below are this run's, nothing is typed in by hand.
Findings, profiles and before/after comparisons follow the measured tables (from bench/FINDINGS.md).

- Date: {before["date"]}
- Machine: `nproc` = {before["nproc"]}, CPU {before["cpu"]}, Python {before["python"]}
- Load before the run: `{before["uptime"]}`; after: `{after["uptime"]}`
- Stripe stand-in latency: {latency_ms:.0f} ms per call;
  steps of {step_s:.0f} s, open-loop arrivals
- Environment overrides: {env or "none (the defaults of settings.py and the Procfile)"}

```
{before["free"]}
```

## Sustained throughput

"Sustained" is the highest offered rate whose step met the workload's p99 budget with under 1 % errors and at
least 90 % of the offered rate completed; "broke at" is the step that ended the ramp. A step that breaks is run once
more before the ramp stops (the machine is shared: one burst of someone else's work should not end a ramp); both
attempts are in "Every step". CPU is the service's own processes (the
phase's: web, worker, reads, relay, or the baseline's process), summed, per successful operation.

{table(results)}

## CPU per operation, per process (ms, at the sustained step)

Starred columns are outside the service: the Stripe stand-in, the load generator, and the machine's shared MariaDB,
RabbitMQ and Redis (their CPU includes other users' work on this shared machine). "machine cores busy" is every
core's busy time during the step divided by its length, whoever spent it (2.00 = both cores saturated).

{cpu_table(results)}

## CPU budget: what this machine can carry at best

Each operation's CPU summed over every process that worked for it (the service, Tansu, the Stripe stand-in, the
load generator, MariaDB, RabbitMQ, Redis), at the sustained step. No design can carry more operations per second
than the cores divided by that sum; the last column is the cores the issue's target needs at this cost.

{budget_table(results, int(before.get("nproc") or 2))}

## Every step

{steps_table(results)}

## Peak RSS per process

{rss_table(results)}

## Notes from the run

"""
        + "\n".join(f"- {n}" for n in notes)
        + "\n\n"
        + findings
    )
    (out_dir / "RESULTS.md").write_text(text)
