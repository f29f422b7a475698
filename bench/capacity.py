"""The capacity model (issue 17): from a run's measured cost per create, what 100, 1 000 and 10 000 creates per
second would need — processes of each kind, cores, database connections, Kafka partitions — and which
single-instance part runs out first. Pure: it reads results.json's figures and types none in.

The model, stated again under the table in RESULTS.md:
- CPU: each process kind's measured CPU per create at the sustained step, times the rate, over a target
  utilisation (70 %). A Python process (gevent, one thread) uses at most one core, so processes ≥ its cores.
- In-flight: a create is in flight for the step's median latency (the Stripe stand-in's latency included); in
  flight = rate x that time. A payments worker holds at most `-c` of them (PAYMENTS_CONCURRENCY), a gunicorn worker
  `worker_connections`; each is filled to the target utilisation only.
- Database connections: the peak the run measured at the sustained rate, scaled by rate.
- Kafka partitions: at least one per relay (a partition is read by one group member), never fewer than today's.
- Single instances: MariaDB, RabbitMQ, Redis and Tansu do not scale out by adding processes here; each is
  given the usable cores of one instance (SINGLE_INSTANCE) and runs out at cores x utilisation / its CPU per create.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

TARGETS = (100, 1000, 10000)
UTILISATION = 0.7
DEFAULT_PARTITIONS = 3  # settings.py's KAFKA_TOPIC_PARTITIONS default
# One instance's usable cores: assumptions of the model, not measurements (the text under the table says so).
SINGLE_INSTANCE = {
    "mariadb": ("one MariaDB server", 16),
    "rabbitmq": ("RabbitMQ (a classic queue is one Erlang process: ~1 core)", 1),
    "redis": ("Redis (one thread)", 1),
    "tansu": ("one Tansu broker", 4),
}
DOORS = (("W1", "REST"), ("W2", "Kafka"))  # the creates measured through each door, at the default phase
# The processes a create passes through (registry.py: create-payment-intent is on the payments queue, which the
# Procfile's `worker` consumes); the others' CPU during a create step is their idle polling, not a cost per create.
CREATE_PATH = {"REST": ("web", "worker"), "Kafka": ("relay", "worker")}


def process_concurrency(root: Path, payments_concurrency: int | None = None) -> dict[str, int]:
    """In-flight work one process of each kind holds: the Procfile's `-c`, else PAYMENTS_CONCURRENCY (celeryconfig's
    worker_concurrency) for the payments worker — settings.py's default when not given; gunicorn.conf.py's
    worker_connections for web."""
    if payments_concurrency is None:
        default = re.search(r'"PAYMENTS_CONCURRENCY",\s*default=(\d+)', (root / "settings.py").read_text())
        payments_concurrency = int(default.group(1)) if default else 1
    found: dict[str, int] = {}
    for line in (root / "Procfile").read_text().splitlines():
        match = re.match(r"^(worker|reads):.*", line)
        if match:
            c = re.search(r"\s-c\s+(\d+)", line)
            found[match.group(1)] = int(c.group(1)) if c else payments_concurrency
    conf = (root / "gunicorn.conf.py").read_text()
    connections = re.search(r"^worker_connections\s*=\s*(\d+)", conf, re.M)
    found["web"] = int(connections.group(1)) if connections else 1000
    return found


def by_kind(per_process: dict[str, float]) -> dict[str, float]:
    """CPU per op by Procfile line: `worker-2`'s added to `worker`'s."""
    kinds: dict[str, float] = {}
    for label, value in per_process.items():
        kind = re.sub(r"-\d+$", "", label)
        kinds[kind] = kinds.get(kind, 0.0) + value
    return kinds


def door_model(result: dict[str, Any], concurrency: dict[str, int], door: str) -> dict[str, Any]:
    """The model for one door's creates, from that workload's result."""
    sustained = result.get("throughput_per_s") or 0.0
    hold_s = (result.get("p50_ms") or 0.0) / 1000
    measured = by_kind(result.get("cpu_s_per_op_by_process", {}))
    cpu = {k: measured[k] for k in CREATE_PATH[door] if measured.get(k)}
    shared = {
        "mariadb": result.get("other_cpu_s_per_op", {}).get("mariadb"),
        "rabbitmq": result.get("other_cpu_s_per_op", {}).get("rabbitmq"),
        "redis": result.get("other_cpu_s_per_op", {}).get("redis"),
        "tansu": result.get("broker_cpu_s_per_op") if door == "Kafka" else None,
    }
    shared = {k: v for k, v in shared.items() if v}
    statements = result.get("db_statements_per_op") or {}
    ceilings = {k: round(SINGLE_INSTANCE[k][1] * UTILISATION / v) for k, v in shared.items()}
    targets = {}
    for rate in TARGETS:
        processes = {}
        for kind, seconds in sorted(cpu.items()):
            by_cpu = math.ceil(rate * seconds / UTILISATION)
            slots = concurrency.get(kind) if kind in ("worker", "web") else None
            # The relay holds nothing in flight (it hands over without waiting): no such bound, None.
            by_flight = math.ceil(rate * hold_s / (slots * UTILISATION)) if slots else None
            processes[kind] = {"count": max(1, by_cpu, by_flight or 0), "by_cpu": by_cpu, "by_in_flight": by_flight}
        relays = processes.get("relay", {}).get("count", 0)
        targets[str(rate)] = {
            "processes": processes,
            "cores_service": round(rate * sum(cpu.values()) / UTILISATION, 1),
            "cores_shared": {k: round(rate * v / UTILISATION, 2) for k, v in shared.items()},
            "in_flight": round(rate * hold_s, 1),
            "db_connections": math.ceil(result["db_connections_peak"] * rate / sustained)
            if sustained and result.get("db_connections_peak")
            else None,
            "statements_per_s": round(rate * statements["Questions"]) if statements.get("Questions") else None,
            "commits_per_s": round(rate * statements["Com_commit"]) if statements.get("Com_commit") else None,
            "kafka_partitions": max(relays, DEFAULT_PARTITIONS) if door == "Kafka" else None,
            "runs_out": sorted((k for k, c in ceilings.items() if c < rate), key=lambda k: ceilings[k]),
        }
    return {
        "workload": result["name"],
        "door": door,
        "sustained_per_s": sustained,
        "hold_s": hold_s,
        "cpu_ms_per_op": {k: round(v * 1000, 3) for k, v in cpu.items()},
        "shared_cpu_ms_per_op": {k: round(v * 1000, 3) for k, v in shared.items()},
        "single_instance_ceiling_per_s": ceilings,
        "first_to_run_out": min(ceilings, key=lambda k: ceilings[k]) if ceilings else None,
        "targets": targets,
    }


def model(results: list[dict[str, Any]], concurrency: dict[str, int]) -> list[dict[str, Any]]:
    """One model per door whose creates were measured and sustained in this run."""
    by_name = {r["name"]: r for r in results}
    return [
        door_model(by_name[name], concurrency, door)
        for name, door in DOORS
        if by_name.get(name, {}).get("throughput_per_s")
    ]


def table(models: list[dict[str, Any]]) -> str:
    """One table per door: a row per resource, a column per target rate."""
    if not models:
        return "(W1 or W2 did not run, or sustained no rate: nothing to scale from.)"
    blocks = []
    for m in models:
        head = f"| {m['workload']} ({m['door']} door) | " + " | ".join(f"{r:,} creates/s" for r in TARGETS) + " |"
        lines = [head, "| --- |" + " ---: |" * len(TARGETS)]
        cells = [m["targets"][str(r)] for r in TARGETS]
        for kind in m["cpu_ms_per_op"]:
            lines.append(
                f"| {kind} processes (CPU / in-flight bound) | "
                + " | ".join(
                    f"{c['processes'][kind]['count']} ({c['processes'][kind]['by_cpu']} / "
                    f"{'-' if c['processes'][kind]['by_in_flight'] is None else c['processes'][kind]['by_in_flight']})"
                    for c in cells
                )
                + " |"
            )
        lines.append("| cores, service processes | " + " | ".join(f"{c['cores_service']}" for c in cells) + " |")
        for name in m["shared_cpu_ms_per_op"]:
            lines.append(f"| cores, {name} | " + " | ".join(f"{c['cores_shared'][name]}" for c in cells) + " |")
        lines.append("| creates in flight | " + " | ".join(f"{c['in_flight']:,}" for c in cells) + " |")
        for key, label in (
            ("db_connections", "database connections"),
            ("statements_per_s", "SQL statements /s"),
            ("commits_per_s", "commits /s"),
            ("kafka_partitions", "Kafka partitions per request topic"),
        ):
            lines.append(f"| {label} | " + " | ".join("-" if c[key] is None else f"{c[key]:,}" for c in cells) + " |")
        lines.append(
            "| single instances past their ceiling | "
            + " | ".join(", ".join(c["runs_out"]) or "none" for c in cells)
            + " |"
        )
        ceilings = ", ".join(
            f"{SINGLE_INSTANCE[k][0]} {v:,}/s" for k, v in sorted(m["single_instance_ceiling_per_s"].items())
        )
        blocks.append(
            "\n".join(lines)
            + f"\n\nFrom {m['workload']} at {m['sustained_per_s']:.0f}/s sustained: CPU ms per create "
            + ", ".join(f"{k} {v:.2f}" for k, v in m["cpu_ms_per_op"].items())
            + "; shared "
            + (", ".join(f"{k} {v:.2f}" for k, v in m["shared_cpu_ms_per_op"].items()) or "none measured")
            + f"; a create in flight {m['hold_s'] * 1000:.0f} ms (median). Ceilings of one instance: {ceilings or '-'}"
            + f"; **first to run out: {m['first_to_run_out'] or '-'}**."
        )
    return "\n\n".join(blocks)
