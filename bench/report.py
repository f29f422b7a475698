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
# Issue 17 compares every run with the first round's reference run (issue 6's, on the same machine and rates).
ROUND_ONE = Path(__file__).resolve().parent / "runs" / "2026-11-26T08-42-17.json"
# Issue 17's targets: our CPU ms per operation, and the sustained rate (and p99 ms) that should follow.
CPU_TARGETS_MS = {"W1": 3.6, "W2": 3.5, "R1": 1.7, "R2": 2.0, "H1": 1.9}
RATE_TARGETS = {"W1": (250, 600), "W2": (250, 600), "R1": (1000, 50), "H1": (500, 1000)}
R2_CEILING_SHARE = 0.8  # R2's rate target: this share of the Kafka rig's ceiling (B-kafka-ceiling) of the same run


def md_row(*cells: Any) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _commit(original: dict[str, Any] | None) -> str:
    return f" at {original['commit'][:12]}" if original and original.get("commit") else ""


def _per_s(rate: float) -> str:
    """A rate as before, and a tenth where it is low (the original service's ramp starts at 0.5/s)."""
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"


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
            f"{broke['rate']:g}/s: {_per_s(broke['throughput_per_s'])}/s, p99 {_fmt(broke['p99_ms'], 0)}, "
            f"{broke['errors']} err"
            if broke
            else "not reached"
        )
        ratio = f"{r['ratio_to_baseline']:.2f} x {r['baseline']}" if r.get("ratio_to_baseline") else "-"
        broker = "-" if r["broker_cpu_s_per_op"] is None else _fmt(r["broker_cpu_s_per_op"] * 1000, 2)
        lines.append(
            md_row(
                r["name"],
                r["title"],
                _fmt(r["throughput_per_s"]),
                _fmt(r["p50_ms"]),
                _fmt(r["p95_ms"]),
                f"{_fmt(r['p99_ms'])} ({r['slo_p99_ms']:.0f})",
                f"{r['errors']}/{r['sent']}",
                broke_text,
                f"{r['cpu_s_per_op'] * 1000:.2f}",
                broker,
                _fmt(r["peak_rss_mb"]),
                r.get("db_connections_peak", "-"),
                ratio,
            )
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
        lines.append(md_row(*cells))
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
            md_row(
                r["name"],
                f"{target:.0f}",
                _fmt(r["throughput_per_s"]),
                f"{total * 1000:.2f}",
                f"{r['cpu_s_per_op'] * 1000:.2f}",
                f"{cores / total:.0f}",
                f"{target * total:.1f}",
            )
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


def round_two_table(results: list[dict[str, Any]], reference: list[dict[str, Any]]) -> str:
    """Each workload of the first round's reference run beside this run: rate, p99, our CPU per operation (whole
    and per process), against issue 17's targets."""
    old = {r["name"]: r for r in reference}
    new = {r["name"]: r for r in results}
    ceiling = new.get("B-kafka-ceiling", {}).get("throughput_per_s")
    lines = [
        "| name | sustained /s, round 1 -> 2 | p99 ms | our CPU ms/op | change | CPU target | "
        "CPU per process, ms/op (round 1 -> 2) | rate target | met (CPU, rate) |",
        "| --- | --- | --- | --- | ---: | ---: | --- | --- | --- |",
    ]
    for name in CPU_TARGETS_MS:
        if name not in old or name not in new:
            continue
        a, b = old[name], new[name]
        cpu_a, cpu_b = a["cpu_s_per_op"] * 1000, b["cpu_s_per_op"] * 1000
        processes = sorted(
            n
            for n in {*a["cpu_s_per_op_by_process"], *b["cpu_s_per_op_by_process"]}
            if max(a["cpu_s_per_op_by_process"].get(n, 0), b["cpu_s_per_op_by_process"].get(n, 0)) >= 0.00005
        )
        before, after = a["cpu_s_per_op_by_process"], b["cpu_s_per_op_by_process"]
        per_process = ", ".join(f"{n} {before.get(n, 0) * 1000:.2f} -> {after.get(n, 0) * 1000:.2f}" for n in processes)
        if name == "R2":
            rate, budget = (R2_CEILING_SHARE * ceiling if ceiling else None), 50
            rate_text = f">= {R2_CEILING_SHARE} x ceiling ({_fmt(rate, 0)}/s), p99 <= {budget}"
        else:
            rate, budget = RATE_TARGETS[name]
            rate_text = f">= {rate}/s, p99 <= {budget}"
        cpu_met = cpu_b <= CPU_TARGETS_MS[name]
        rate_met = rate is not None and b["throughput_per_s"] >= rate and (b["p99_ms"] or 1e9) <= budget
        lines.append(
            md_row(
                name,
                f"{_fmt(a['throughput_per_s'], 0)} -> {_fmt(b['throughput_per_s'], 0)}",
                f"{_fmt(a['p99_ms'], 0)} -> {_fmt(b['p99_ms'], 0)}",
                f"{cpu_a:.2f} -> {cpu_b:.2f}",
                f"{(cpu_b / cpu_a - 1) * 100:+.0f} %",
                CPU_TARGETS_MS[name],
                per_process,
                rate_text,
                f"{'yes' if cpu_met else 'no'}, {'yes' if rate_met else 'no'}",
            )
        )
    return "\n".join(lines)


def statements_table(results: list[dict[str, Any]]) -> str:
    """SQL statements, transactions and commits per successful operation, at the sustained step."""
    from bench.stack import STATUS_COUNTERS

    head = ["name", "sustained /s", *STATUS_COUNTERS, "server's statements /s before (idle)"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for r in results:
        counts = r.get("db_statements_per_op")
        if not counts:
            continue
        cells = [r["name"], _fmt(r["throughput_per_s"]), *[_fmt(counts.get(n), 2) for n in STATUS_COUNTERS]]
        background = r.get("db_background_statements_per_s")
        share = background / r["throughput_per_s"] if background is not None and r["throughput_per_s"] else None
        cells.append("-" if background is None else f"{background:.0f}" + (f" (≈ {share:.1f}/op)" if share else ""))
        lines.append(md_row(*cells))
    return "\n".join(lines) if len(lines) > 2 else "(the statement counters were not read in this run)"


SCALED = {"+2worker": "worker", "+2reads": "reads", "+2relay": "relay"}


def scale_table(results: list[dict[str, Any]]) -> str:
    """Each scale-out result against the same workload with one process of each kind (the default phase)."""
    from bench import capacity

    by_name = {r["name"]: r for r in results}
    lines = [
        "| workload | process doubled | sustained /s, 1 process | 2 processes | ratio | added /s per process "
        "| machine cores busy (1 → 2) | most CPU per op in the 1-process run |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        suffix = next((s for s in SCALED if r["name"].endswith(s)), None)
        one = by_name.get(r["name"][: -len(suffix)]) if suffix else None
        if suffix is None or one is None:
            continue
        s1, s2 = one["throughput_per_s"], r["throughput_per_s"]
        by_process = capacity.by_kind(one.get("cpu_s_per_op_by_process", {}))
        busiest = max(by_process, key=lambda n: by_process[n], default="-")
        lines.append(
            md_row(
                one["name"],
                SCALED[suffix],
                _fmt(s1),
                _fmt(s2),
                _fmt(s2 / s1 if s1 else None, 2),
                _fmt(s2 - s1),
                f"{_fmt(one['machine_cores_busy'], 2)} → {_fmt(r['machine_cores_busy'], 2)}",
                f"{busiest} ({_fmt(by_process.get(busiest, 0) * 1000, 2)} ms)",
            )
        )
    return "\n".join(lines) if len(lines) > 2 else "(no scale-out phase in this run)"


def moves_table(moves: list[dict[str, Any]]) -> str:
    """Partition moves between two relays: time to the survivor's first answer on the moved partitions, and counts."""
    if not moves:
        return "(no partition-move phase in this run)"
    lines = [
        "| move | rate /s | moved partitions | move s | longest gap, moved / kept s | worst wait, moved / kept ms "
        "| sent | answered | lost | duplicate answers | stopped relay closed cleanly (its log) |",
        "| --- | ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in moves:
        lines.append(
            f"| {m['name']} | {m['rate_per_s']:.0f} | {m['moved_partitions']} of {m['partitions']} | "
            f"{_fmt(m['move_s'], 2)} | {_fmt(m['longest_gap_moved_s'], 2)} / {_fmt(m['longest_gap_kept_s'], 2)} | "
            f"{_fmt(m['worst_wait_moved_ms'], 0)} / {_fmt(m['worst_wait_kept_ms'], 0)} | {m['sent']} | "
            f"{m['answered']} | {m['lost']} | {m['duplicates']} | {'yes' if m.get('stopped_cleanly') else 'no'} |"
        )
    return "\n".join(lines)


def low_rate_table(results: list[dict[str, Any]]) -> str:
    """Issue 27: each Kafka workload's light step (before its warm-up) beside its sustained step, and the check."""
    from bench.workloads import LOW_RATE_TAIL_MARGIN_MS

    lines = [
        "| workload | low rate /s | p50 | p95 | p99 | max | errors | sustained /s | p99 there "
        f"| low-rate tail ≤ sustained p99 + {LOW_RATE_TAIL_MARGIN_MS:.0f} ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for r in results:
        low = r.get("low_rate")
        if not low:
            continue
        passed = [s for s in r["steps"] if s["slo_met"]]
        higher = passed[-1] if passed else (r["steps"][0] if r["steps"] else None)
        bound = higher["p99_ms"] + LOW_RATE_TAIL_MARGIN_MS if higher and higher["p99_ms"] is not None else None
        met = bound is not None and low["p99_ms"] is not None and low["p99_ms"] <= bound
        lines.append(
            md_row(
                r["name"],
                f"{low['rate']:.0f}",
                _fmt(low["p50_ms"]),
                _fmt(low["p95_ms"]),
                _fmt(low["p99_ms"]),
                _fmt(low["max_ms"]),
                f"{low['errors']}/{low['sent']}",
                _fmt(higher and higher["rate"], 0),
                _fmt(higher and higher["p99_ms"]),
                f"{'met' if met else 'NOT met'} ({_fmt(low['p99_ms'])} vs {_fmt(bound)} ms)",
            )
        )
    return "\n".join(lines) if len(lines) > 2 else "(no low-rate step in this run)"


def limits_table(results: list[dict[str, Any]]) -> str:
    """Issue 27: what the per-caller limiter costs a request: R1 with the limit on against R1 with it off, at the
    highest rate both sustained (the web process's CPU per request, and the latency)."""
    by_name = {r["name"]: r for r in results}
    lines = [
        "| workload | rate /s (both met) | web CPU ms/request, off → on | added ms | p50 ms, off → on "
        "| p99 ms, off → on |",
        "| --- | ---: | --- | ---: | --- | --- |",
    ]
    for on in results:
        if not on["name"].endswith("+limits"):
            continue
        off = by_name.get(on["name"][: -len("+limits")])
        if off is None:
            continue
        met_off = {s["rate"]: s for s in off["steps"] if s["slo_met"]}
        common = [s for s in on["steps"] if s["slo_met"] and s["rate"] in met_off]
        if not common:
            lines.append(f"| {off['name']} | - | no rate met by both | - | - | - |")
            continue
        step_on = max(common, key=lambda s: s["rate"])
        step_off = met_off[step_on["rate"]]

        def web_ms(step: dict[str, Any]) -> float | None:
            web = sum(v for k, v in (step.get("cpu_s") or {}).items() if k.split("-")[0] == "web")
            return web * 1000 / step["ok"] if step.get("ok") else None

        cost_off, cost_on = web_ms(step_off), web_ms(step_on)
        added = cost_on - cost_off if cost_on is not None and cost_off is not None else None
        lines.append(
            md_row(
                off["name"],
                f"{step_on['rate']:.0f}",
                f"{_fmt(cost_off, 2)} → {_fmt(cost_on, 2)}",
                _fmt(added, 2),
                f"{_fmt(step_off['p50_ms'])} → {_fmt(step_on['p50_ms'])}",
                f"{_fmt(step_off['p99_ms'])} → {_fmt(step_on['p99_ms'])}",
            )
        )
    return "\n".join(lines) if len(lines) > 2 else "(no limiter phase in this run)"


def original_line(results: list[dict[str, Any]], original: dict[str, Any] | None) -> str:
    """Issue 27's headline: our cart create over Kafka (W3) against the platform's original service (B-nestjs) on
    the same phase (dialect, new customer per request, stand-in): rates, p99s and their ratio, or why not."""
    from bench.workloads import ORIGINAL_RATIO_TARGET

    by_name = {r["name"]: r for r in results}
    ours, theirs = by_name.get("W3"), by_name.get("B-nestjs")

    def side(r: dict[str, Any] | None, who: str) -> str:
        if r is None:
            return f"{who}: not in this run"
        if r["throughput_per_s"]:
            return f"{who} {_fmt(r['throughput_per_s'])}/s (p99 {_fmt(r['p99_ms'], 0)} ms)"
        first = r["steps"][0] if r.get("steps") else None
        if first is None:
            return f"{who}: no step ran"
        return (
            f"{who}: no step within the budget (at {first['rate']:g}/s: {first['throughput_per_s']:g}/s done, "
            f"p99 {_fmt(first['p99_ms'], 0)} ms, {first['errors']}/{first['sent']} errors)"
        )

    if theirs is None:
        if ours is None and original is None:
            return "(the original service's phase was not in this run)"
        why = original["note"] if original else "its phase was not in this run"
        return f"The original service was not measured in this run: {why}. {side(ours, 'Ours (W3)')}."
    text = f"{side(ours, 'Ours (W3)')} against {side(theirs, 'the original (B-nestjs)')}"
    if ours and ours["throughput_per_s"] and theirs["throughput_per_s"]:
        ratio = ours["throughput_per_s"] / theirs["throughput_per_s"]
        met = "met" if ratio >= ORIGINAL_RATIO_TARGET else "NOT met"
        return f"**{text}: {ratio:.0f} x the original** (issue 27 keeps it ≥ {ORIGINAL_RATIO_TARGET:.0f} x: {met})."
    return f"{text}: no ratio (a side sustained no step)."


def limiter_cost_line(cost: dict[str, Any] | None) -> str:
    """bench/limiter_cost.py's figure: the door's CPU per request with the limiter off and on, in process."""
    if not cost:
        return "(the limiter's in-process cost was not measured in this run)"
    return (
        f"In process (bench/limiter_cost.py, the door with its task stubbed, {cost['requests_per_round']} requests a "
        f"round, best of rounds, counted in {cost['storage']}): **{cost['off_ms']:.3f} → {cost['on_ms']:.3f} ms CPU "
        f"per request, +{cost['added_ms']:.3f} ms** for the limiter at {cost['limit']}."
    )


def steps_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| name | offered /s | done /s | p50 | p95 | p99 | max | errors | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        for s in r["steps"]:
            errors = f"{s['errors']}/{s['sent']}" + (f" {s['error_kinds']}" if s["error_kinds"] else "")
            lines.append(
                md_row(
                    r["name"],
                    f"{s['rate']:g}",
                    f"{s['throughput_per_s']:.1f}",
                    _fmt(s["p50_ms"]),
                    _fmt(s["p95_ms"]),
                    _fmt(s["p99_ms"]),
                    _fmt(s["max_ms"]),
                    errors,
                    "yes" if s["slo_met"] else "no",
                )
            )
    return "\n".join(lines)


def write(
    options: Any,
    results: list[dict[str, Any]],
    before: dict[str, str],
    after: dict[str, str],
    notes: list[str],
    out_dir: Path,
    extra: dict[str, Any] | None = None,
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
        "stripe_rate_limit": stripe_rate_limit(options.env),
        "step_s": options.step_s,
        "low_rate_s": getattr(options, "low_rate_s", None),
        "env_overrides": options.env,
        "notes": notes,
        "results": summary,
        **(extra or {}),
    }
    (out_dir / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    # Every run is kept beside the latest, so that figures can be compared from run to run.
    runs = out_dir / "runs"
    runs.mkdir(exist_ok=True)
    stamp = before["date"].replace(" UTC", "").replace(" ", "T").replace(":", "-")
    (runs / f"{stamp}.json").write_text(json.dumps(payload, indent=1) + "\n")
    render(payload, out_dir)


def stripe_rate_limit(env: dict[str, str]) -> str:
    """The Stripe rate limit of the run: the stand-in enforces none (but in the burst phases, which set their own);
    the service paces at STRIPE_RATE_LIMIT."""
    from bench.fake_stripe import RATE_LIMIT_PER_S

    paced = env.get("STRIPE_RATE_LIMIT", str(RATE_LIMIT_PER_S)).strip()
    if paced == "0":
        service = "is not paced (STRIPE_RATE_LIMIT=0)"
    elif not paced:
        service = "paces at its test key's default, 25/s"
    else:
        service = f"paces at STRIPE_RATE_LIMIT={paced}/s"
    return f"the stand-in enforces no Stripe rate limit (but in the burst phases); the service {service}"


def rerender(out_dir: Path) -> None:
    """RESULTS.md again from results.json (after FINDINGS.md changed), figures untouched."""
    render(json.loads((out_dir / "results.json").read_text()), out_dir)


def render(payload: dict[str, Any], out_dir: Path) -> None:
    from bench import bursts, capacity, goals

    before, after, results = payload["machine"], payload["machine_after"], payload["results"]
    moves = payload.get("partition_moves", [])
    # Computed again at each render from the figures above (never stored hand-made): results.json keeps a copy.
    # A results.json from before issue 17 has no concurrency: the tree's Procfile and defaults stand in.
    concurrency = payload.get("concurrency") or capacity.process_concurrency(Path(__file__).resolve().parents[1])
    models = capacity.model(results, concurrency)
    notes = payload.get("notes", [])
    latency_ms, step_s, env = payload["stripe_latency_ms"], payload["step_s"], payload["env_overrides"]
    findings = FINDINGS.read_text() if FINDINGS.exists() else ""
    reference = json.loads(ROUND_ONE.read_text())["results"] if ROUND_ONE.exists() else []
    round_two = round_two_table(results, reference) if reference else "(the first round's run is not in bench/runs)"
    text = (
        f"""# Benchmark results (issue 6)

Generated by `make bench` (`python -m bench`); the figures below are this run's, nothing is typed in by hand.
Findings, profiles and before/after comparisons follow the measured tables (from bench/FINDINGS.md).

- Date: {before["date"]}
- Machine: `nproc` = {before["nproc"]}, CPU {before["cpu"]}, Python {before["python"]}; CPU probe
  {before.get("cpu_probe_ms", "not measured")} ms (a fixed piece of Python work, best of five: compare across runs)
- Load before the run: `{before["uptime"]}`; after: `{after["uptime"]}`
- Stripe stand-in latency: {latency_ms:.0f} ms per call; {payload.get("stripe_rate_limit", "rate limit not recorded")};
  steps of {step_s:.0f} s, open-loop arrivals
- Environment overrides: {env or "none (the defaults of settings.py and the Procfile)"}

```
{before["free"]}
```

## Against the platform's original service (issue 27)

The same phase on both sides: `create-payment-intent` over Kafka in the web app's cart dialect (`items`,
`customerDetails`), a new customer e-mail per request, on the same Stripe stand-in: the original NestJS service
(bench/baselines/nestjs.py, built from the platform's monorepo{_commit(payload.get("original_service"))}) as B-nestjs,
ours as W3; the ratio is of their sustained rates.

{original_line(results, payload.get("original_service"))}

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

## Round two against round one (issue 17)

The first round's reference run ({ROUND_ONE.name}: same machine, same rates, same stand-in) beside this one, for the
workloads issue 17 sets targets for. CPU per operation is measured at each run's sustained step, and it falls as the
rate rises (fixed costs such as Tansu's idle fetches are shared by more operations): where the sustained rates
differ, so does that share. "met" compares this run with the targets.

{round_two}

## Database round trips per operation (at the sustained step)

MariaDB's `SHOW GLOBAL STATUS` counters, read every 0.25 s by the bench, taken between the samples just outside the
sustained step, less the bench's own polling statements, divided by the step's successful operations.
performance_schema is off on this server, so the counters are **server-wide**: another user of the shared MariaDB
adds to them, and work a step leaves behind (a task still running at its end) falls in the pause after it.
`Questions` is every statement a client sent; `Com_begin`/`Com_commit` are explicit transactions (autocommit
statements count in neither; `Com_rollback` includes a pool's rollback when a connection is handed back). The
last column is the server's statements per second in the second before the step, the service idle — other users'
share — and what it would add per operation at the sustained rate: a row with a large share is not the service's.

{statements_table(results)}

## Scale-out: one process of a kind against two (issue 17)

The same workload, ramped the same way, with the process its requests queue for started twice: W1's creates run on
the payments `worker`, R2's gets on the `reads` worker, both behind the relay for R2/W2 (`+2relay`: two relays in
one consumer group, request topics with 4 partitions, against the default phase's one relay on 3). "added /s per
process" is the sustained rate gained by the second process. On a machine whose cores are already busy (see
"machine cores busy") a second process can only share them: the ratio then measures the machine, not the design.

{scale_table(results)}

## Partition moves between two relays (issue 17)

Two relays in one group, each holding half of the request topic's partitions, under a steady R2 load; the second
relay is stopped (SIGTERM: it finishes its batch, commits and leaves the group; then, restarted, SIGKILL: it
vanishes and the broker waits out the session timeout, {moves[0]["session_timeout_ms"] if moves else "-"} ms).
**move s** is the time from the signal to the first answer to a request written *after* the signal to a partition
the stopped relay held — the survivor serves that partition from then on. The longest gaps are the longest time
without any answer on the moved partitions and on the survivor's own (an eager rebalance pauses those too).
Every request is counted: lost = never answered; duplicate answers = answers beyond the first (at-least-once:
requests a killed relay handed over but had not committed are handed over again by the survivor; a get is
answered twice, a create is not done twice — tests/drills/test_drill_05_relay_crashes.py). Duplicates are
about the moved partitions' rate times the time since the killed relay's last offset commit (librdkafka commits
stored offsets every `auto.commit.interval.ms`, 5 s by default).

{moves_table(moves)}

## Capacity: what 100, 1 000 and 10 000 creates per second would need

Computed from this run's figures (bench/capacity.py), at the run's Stripe stand-in latency ({latency_ms:.0f} ms), for
a target utilisation of {capacity.UTILISATION:.0%}. Processes of a kind: the larger of the CPU bound (rate x CPU per
create / {capacity.UTILISATION:.0%}, one core at most per Python process) and the in-flight bound (rate x a create's
median latency, over the `-c` greenlets of a payments worker, or a gunicorn worker's `worker_connections`, each
filled to {capacity.UTILISATION:.0%}). Database connections: the peak measured at the sustained rate, scaled by
rate. Kafka partitions: at least one per relay. MariaDB, RabbitMQ, Redis and Tansu are single instances here: each
is *assumed* to have the usable cores of `bench/capacity.py` SINGLE_INSTANCE (MariaDB 16, RabbitMQ 1 — a classic
queue is one Erlang process, and the broker's whole CPU is charged to the payments queue: a pessimistic ceiling —,
Redis 1, Tansu 4), and runs out at those cores x {capacity.UTILISATION:.0%} / its CPU per create. Only the
processes a create passes through are counted (web or relay, and the payments worker). The single instances' CPU
per create is measured on a shared machine (other users' work included), and the service's processes on two cores
shared with everything else: the model extrapolates linearly and ignores contention.

{capacity.table(models)}

## Kafka door at light traffic (issue 27)

Each Kafka workload (R2 at 20/s, W2 at 5/s) first runs one step of {payload.get("low_rate_s") or 20:.0f} s, before its
warm-up, on processes that have not answered it yet: the first requests after a start count, as an outside caller's
do after a deploy. The check: its p99 is no more than the margin (bench/workloads.py LOW_RATE_TAIL_MARGIN_MS) above
the p99 at the sustained, higher rate — less traffic cannot take longer; the margin is the shared machine's noise.

{low_rate_table(results)}

## What the per-caller limiter costs (issue 27)

R1 with the per-caller limit on (`RATE_LIMIT_SERVER`, the default: a moving window counted in the service's Redis,
one check per request) against the default phase's R1 with it off, at the highest rate both sustained. The web
process's CPU per request is the limiter's share of the door; a shared machine moves it by a few tenths either way.

{limits_table(results)}

{limiter_cost_line(payload.get("limiter_cost"))}

{bursts.section(payload)}
## Issue 27's goals, from this run

{goals.table(payload)}

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
