"""The benchmark's orchestrator: `python -m bench [--smoke] [--only W1,R1] [--env NAME=VALUE …]`.

Starts the stack phase by phase (baselines, then the service on each Celery broker), runs the load generator as
a separate process against each workload, samples CPU and RSS of every process meanwhile, and writes
bench/RESULTS.md and bench/results.json (or, in smoke mode, checks that every workload was answered).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import bursts, capacity, fake_stripe, report
from bench.baselines import nestjs
from bench.moves import held_partitions, move_figures
from bench.stack import (
    PYTHON,
    ROOT,
    DatabaseConnections,
    Monitor,
    Processes,
    clean_environment,
    database_env,
    free_port,
    mariadb_database,
    patched_tree,
    procfile,
    rabbit_vhost,
    redis_databases,
    run_id,
    shared_service_pids,
    start_fake_stripe,
    start_tansu,
    wait_until,
)
from bench.workloads import LOW_RATE_STEP_S, WORKLOADS, Phase, Workload, phases

# The Procfile lines the service phase starts: the publisher too, since a create writes three outbox events.
SERVICE_PROCESSES = ("web", "worker", "reads", "relay", "publisher")
METRICS_PORTS = ("WORKER_METRICS_PORT", "READS_METRICS_PORT", "RELAY_METRICS_PORT", "PUBLISHER_METRICS_PORT")
# Tansu holds a group join for about half of session.timeout.ms and a fetch for about half of fetch.wait.max.ms
# (DESIGN.md): the local values, as the tests use them; real Kafka answers a fetch as soon as data arrives.
LOCAL_KAFKA = {
    "KAFKA_CONSUMER_OPT_FETCH_WAIT_MAX_MS": "10",
    "KAFKA_CONSUMER_OPT_SESSION_TIMEOUT_MS": "6000",
    "KAFKA_CONSUMER_OPT_HEARTBEAT_INTERVAL_MS": "500",
}
SMOKE_RATE, SMOKE_STEP_S = 4.0, 1.5
# The smoke run only checks the harness: a shorter session makes Tansu's group join (half of it) quicker.
SMOKE_KAFKA = {"KAFKA_CONSUMER_OPT_SESSION_TIMEOUT_MS": "2000", "KAFKA_CONSUMER_OPT_HEARTBEAT_INTERVAL_MS": "300"}


@dataclass
class Options:
    smoke: bool = False
    only: set[str] | None = None
    brokers: tuple[str, ...] = ("amqp", "redis")
    stripe_latency_ms: float = 300.0
    step_s: float = 8.0
    timeout_s: float = 10.0
    env: dict[str, str] = field(default_factory=dict)
    rates: dict[str, tuple[float, ...]] = field(default_factory=dict)
    profile: bool = False
    profile_rate: dict[str, float] = field(default_factory=dict)
    out_dir: Path = ROOT / "bench"
    root: Path = ROOT
    seed_intents: int = 5000
    seed_customers: int = 200
    report_only: bool = False
    variants: bool = True  # the scale-out, partition-move and proposals phases beside the default ones
    move_rate: float = 100.0  # R2 at a rate one relay and one reads worker sustain on this machine
    move_before_s: float = 5.0  # steady load before the relay is signalled
    move_after_s: float = 20.0  # …and after: longer than the session timeout (6 s) and the rejoin it causes
    low_rate_s: float = LOW_RATE_STEP_S  # the Kafka workloads' light-traffic step (issue 27); 0: none


class Run:
    """One benchmark run: its services, its data, its monitor, and the results gathered so far."""

    def __init__(self, options: Options, run_dir: Path) -> None:
        self.o = options
        self.run_dir = run_dir
        self.id = run_id()
        self.processes = Processes(run_dir, options.root)
        self.monitor = Monitor()
        self.results: list[dict[str, Any]] = []
        self.moves: list[dict[str, Any]] = []
        self.bursts: list[dict[str, Any]] = []  # issue 27: bench/bursts.py's figures
        self.started: dict[str, tuple[str, dict[str, str], Path]] = {}  # label -> (command, env, tree), to restart
        self.notes: list[str] = []
        self.secrets = {
            "STRIPE_SECRET_KEY": f"sk_test_bench{self.id}",
            "STRIPE_WEBHOOK_SECRET": f"whsec_bench{self.id}",
            "API_KEYS": f"bench-key-{self.id}",
        }

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # --- environment ---------------------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        env = clean_environment(self.o.root)
        env.update(
            {
                "NODE_ENV": "production",
                "LOG_STREAM_LEVEL": "ProdStandard",
                # The Procfile's `python` and `gunicorn` are those of the venv running the bench.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                # One caller drives every load: the per-caller limits are off (their cost: the R1+limits phase,
                # tests/api for their behaviour).
                "RATE_LIMIT_SERVER": "",
                "RATE_LIMIT_CUSTOMER": "",
                "RATE_LIMIT": "",
                "RATE_LIMIT_WEBHOOKS": "",
                # The stand-in (bench/fake_stripe.py) enforces no Stripe rate limit, so the service does not pace
                # (RESULTS.md says so); `--env STRIPE_RATE_LIMIT=N` measures the pacing's cost.
                "STRIPE_RATE_LIMIT": str(fake_stripe.RATE_LIMIT_PER_S),
                **database_env(self.database),
                "AUTO_SEED": "true",
                "STRIPE_API_BASE": self.stripe_base,
                **self.secrets,
            }
        )
        return env

    def service_env(self, broker: str, kafka: str, overrides: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
        if broker == "redis":
            broker_url = f"redis://127.0.0.1:6379/{self.redis_dbs[1]}"
        else:
            broker_url = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"
        env = self.base_env()
        env.update(
            {
                "CELERY_BROKER_URL": broker_url,
                "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:6379/{self.redis_dbs[0]}",
                "KAFKA_BROKER": kafka,
                "KAFKA_GROUP": f"vyp-bench-{self.id}",
                "APP_PORT": str(free_port()),
                "WORKER_METRICS_PORT": str(free_port()),
                "READS_METRICS_PORT": str(free_port()),
                "RELAY_METRICS_PORT": str(free_port()),
                "PUBLISHER_METRICS_PORT": str(free_port()),
                **LOCAL_KAFKA,
                **(SMOKE_KAFKA if self.o.smoke else {}),
                **dict(overrides),
                **self.o.env,
            }
        )
        return env

    # --- the run ---------------------------------------------------------------------------------------------

    def execute(self) -> list[dict[str, Any]]:
        with contextlib.ExitStack() as stack:
            self.database = stack.enter_context(mariadb_database(f"vyp_bench_{self.id}"))
            self.vhost = stack.enter_context(rabbit_vhost(f"vyp_bench_{self.id}"))
            self.redis_dbs = stack.enter_context(redis_databases(2, self.id))
            stack.callback(self.processes.stop_all)
            self.monitor.start()
            stack.callback(self.monitor.stop)
            self.db_connections = DatabaseConnections(self.database)
            self.db_connections.start()
            stack.callback(self.db_connections.stop)
            for label, pids in shared_service_pids().items():
                self.monitor.watch_pids(label, pids)
            self.stripe_base = start_fake_stripe(
                self.processes, clean_environment(self.o.root), self.o.stripe_latency_ms
            )
            self.monitor.watch_group("fake-stripe", self.processes.groups["fake-stripe"])
            self.log(f"run {self.id}: database {self.database}, vhost {self.vhost}, redis dbs {self.redis_dbs}")
            self.log(report.stripe_rate_limit(self.o.env))
            self.seed()
            for phase in phases(
                self.o.brokers, self.o.only, variants=self.o.variants and not self.o.smoke, original=not self.o.smoke
            ):
                if phase.patched and not self.prepare_patched_tree():
                    continue
                if phase.kind == "nestjs":
                    self.run_original_phase(phase)
                    continue
                self.run_phase(phase)
            if self.o.variants and not self.o.smoke and (self.o.only is None or "limiter-cost" in self.o.only):
                self.limiter_cost = self.measure_limiter_cost()
            if not self.o.smoke and (self.o.only is None or "worker-cost" in self.o.only):
                self.worker_cost = self.measure_in_process("bench.worker_cost", '{"operation"')
        return self.results

    # --- the platform's original service (issue 27) ------------------------------------------------------------

    def run_original_phase(self, phase: Phase) -> None:
        """B-nestjs: the original built (or taken from the cache), then measured like any baseline; a build or a
        start that fails is recorded (RESULTS.md says why), and the run goes on."""
        built = nestjs.build(self.log)
        self.original: dict[str, Any] = {"built": built.ok, "commit": built.commit, "note": built.note}
        self.log(f"phase {phase.name}: {built.note}")
        if not built.ok:
            self.notes.append(f"The original service (B-nestjs) was not measured: {built.note}")
            return
        assert built.root is not None
        self.original_root = built.root
        try:
            with mariadb_database(f"vyp_bench_{self.id}_original") as database:
                self.original_database = database
                self.run_phase(phase)
        except Exception as exc:  # its start, its Kafka client, its database: the rest of the run still counts
            self.original["note"] = f"{built.note}; it did not run: {exc}"
            self.notes.append(f"The original service (B-nestjs) was not measured: {self.original['note']}")
            self.log(f"phase {phase.name}: {self.original['note']}")

    def measure_limiter_cost(self) -> dict[str, Any] | None:
        """Issue 27: the per-caller limiter's CPU per REST request, in process (bench/limiter_cost.py), counted in
        this run's Redis as deployed."""
        storage = f"redis://127.0.0.1:6379/{self.redis_dbs[0]}"
        return self.measure_in_process("bench.limiter_cost", '{"requests_per_round"', "--storage", storage)

    def measure_in_process(self, module: str, starts: str, *args: str) -> dict[str, Any] | None:
        """A figure measured in a process of its own (a module printing one JSON line), on this tree."""
        env = {**self.base_env(), "LOG_STREAM_LEVEL": "ProdStandard"}
        argv = [PYTHON, "-m", module, *args]
        done = subprocess.run(argv, cwd=self.o.root, env=env, capture_output=True, text=True, timeout=600, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith(starts)]
        if done.returncode != 0 or not lines:
            self.notes.append(f"{module} did not measure (exit {done.returncode})")
            return None
        figure: dict[str, Any] = json.loads(lines[-1])
        self.log(f"{module}: {figure}")
        return figure

    def prepare_patched_tree(self) -> bool:
        """The service tree plus bench/proposals/*.patch, made once per run (what was left out goes in the notes)."""
        if getattr(self, "patched_root", None) is None:
            patches = sorted((self.o.root / "bench" / "proposals").glob("*.patch"))
            if not patches:
                return False
            self.patched_root, applied, left_out = patched_tree(self.o.root, patches, self.run_dir / "patched-tree")
            self.notes.append(
                f"The +proposals rows run this tree with {', '.join(applied) or 'no patch'} applied"
                + (
                    f"; left out (already made in the tree, or its lines changed): {', '.join(left_out)}"
                    if left_out
                    else ""
                )
            )
        return True

    def seed(self) -> None:
        import settings

        os.environ.update(self.service_env(self.o.brokers[0], "127.0.0.1:1"))
        settings.reload_settings()
        from bench.seed import seed_rows

        started = time.monotonic()
        customers, intents = (20, 200) if self.o.smoke else (self.o.seed_customers, self.o.seed_intents)
        self.data = seed_rows(settings.get_settings(), customers, intents)
        self.log(f"seeded {customers} customers and {intents} intents in {time.monotonic() - started:.1f} s")

    @contextlib.contextmanager
    def phase_processes(self, phase: Phase) -> Iterator[dict[str, str]]:
        """Start what the phase measures; yields its endpoints. Everything it started stops on exit."""
        names: list[str] = []
        try:
            tansu = None
            if phase.kind != "sync-peer":
                group, tansu = start_tansu(self.processes, "tansu", clean_environment(self.o.root))
                names.append("tansu")
                self.monitor.watch_group("tansu", group)
            env = self.service_env(phase.broker, tansu or "127.0.0.1:1", phase.env)
            endpoints = {"kafka": tansu or "", "rest": f"http://127.0.0.1:{env['APP_PORT']}"}
            waits: list[tuple[str, str]] = []  # (group name, log text that says it is ready)
            if phase.kind == "service":
                tree = self.patched_root if phase.patched else self.o.root
                for name, command in procfile(tree).items():
                    if name in SERVICE_PROCESSES:
                        for copy in range(phase.copies(name)):
                            label, line, copy_env = copy_of(name, command, env, copy)
                            self.started[label] = (line, copy_env, tree)
                            self.processes.shell(label, line, copy_env, tree)
                            names.append(label)
                waits += [(n, "partitions assigned") for n in names if base_name(n) == "relay"]
            elif phase.kind == "sync-peer":
                workers = str(2 * (os.cpu_count() or 1) + 1)
                argv = [
                    str(Path(PYTHON).parent / "gunicorn"),
                    "-k",
                    "sync",
                    "-w",
                    workers,
                    "-b",
                    f"127.0.0.1:{env['APP_PORT']}",
                    "--timeout",
                    "60",
                    "bench.baselines.sync_peer:create_app()",
                ]
                self.processes.spawn("sync-peer", argv, env)
                names.append("sync-peer")
            elif phase.kind == "direct-read":
                argv = [
                    str(Path(PYTHON).parent / "gunicorn"),
                    "-c",
                    "gunicorn.conf.py",
                    "bench.baselines.direct_read:create_app()",
                ]
                self.processes.spawn("direct-web", argv, env)
                self.processes.spawn("direct-relay", [PYTHON, "-m", "bench.baselines.direct_read"], env)
                names += ["direct-web", "direct-relay"]
                waits.append(("direct-relay", "partitions assigned"))
            elif phase.kind == "nestjs":
                nestjs.create_topics(tansu or "", nestjs.topics_to_create(self.original_root))
                original_env = nestjs.environment(
                    clean_environment(self.o.root),
                    kafka=tansu or "",
                    stripe_base=self.stripe_base,
                    database=self.original_database,
                    port=int(env["APP_PORT"]),
                    secret_key=self.secrets["STRIPE_SECRET_KEY"],
                    group=f"vyp-bench-original-{self.id}",
                    fetch_wait_ms=int(env["KAFKA_CONSUMER_OPT_FETCH_WAIT_MAX_MS"]),
                )
                self.processes.spawn("nestjs", nestjs.command(), original_env, cwd=self.original_root)
                names.append("nestjs")
                # It listens once its Kafka consumer has joined: about half its 90 s session timeout on Tansu.
                # A start that failed ends the wait at once: the check below names its log.
                node = self.processes.groups["nestjs"]
                wait_until(lambda: not node.running or nestjs.listening(int(env["APP_PORT"])), 180, "nestjs")
            elif phase.kind == "kafka-ceiling":
                self.processes.spawn("kafka-ceiling", [PYTHON, "-m", "bench.baselines.kafka_ceiling"], env)
                names.append("kafka-ceiling")
                waits.append(("kafka-ceiling", "partitions assigned"))
            for name in names:
                self.monitor.watch_group(name, self.processes.groups[name])
            if phase.kind in ("service", "sync-peer", "direct-read"):
                web = endpoints["rest"]
                wait_until(lambda: requests.get(f"{web}/payment-intents/x", timeout=1).status_code < 500, 60, "web")
            for name, text in waits:
                group = self.processes.groups[name]
                wait_until(lambda g=group, t=text: g.running and t in g.log_text(), 60, f"{name} ({text})")
            for name in names:
                if not self.processes.groups[name].running:
                    raise RuntimeError(f"{name} exited at start; see {self.processes.groups[name].log_path}")
            yield endpoints
        finally:
            for name in reversed(names):
                self.monitor.unwatch(name)
                self.processes.stop(name)

    def run_phase(self, phase: Phase) -> None:
        self.log(f"phase {phase.name}: starting")
        started = time.monotonic()
        with self.phase_processes(phase) as endpoints:
            self.log(f"phase {phase.name}: ready in {time.monotonic() - started:.1f} s")
            service = [
                n
                for n in self.monitor.watched
                if base_name(n)
                in (*SERVICE_PROCESSES, "sync-peer", "direct-web", "direct-relay", "kafka-ceiling", "nestjs")
            ]
            if not self.o.smoke:
                idle_start = time.time()
                time.sleep(3)
                idle = self.monitor.cpu_between(idle_start, time.time())
                self.notes.append(
                    f"Idle CPU of phase {phase.name} (cores busy, 3 s with no load): "
                    + ", ".join(f"{k} {v / 3:.2f}" for k, v in sorted(idle.items()) if v > 0.005)
                )
            if bursts.is_burst(phase):
                bursts.measure(self, phase, endpoints, service)
                return
            if phase.move:
                self.measure_moves(phase, endpoints, service)
                return
            for name in phase.workloads:
                workload = WORKLOADS[name]
                result = self.measure(workload, phase, endpoints, service)
                self.results.append(result)
            if self.o.smoke and self.o.only is None and phase.kind == "service" and phase.default_broker:
                bursts.measure(self, phase, endpoints, service, smoke=True)  # the burst's harness, a few creates

    def load_spec(
        self,
        workload: Workload,
        endpoints: dict[str, str],
        rates: tuple[float, ...],
        step_s: float,
        stop_on_break: bool,
    ) -> dict[str, Any]:
        return {
            "name": workload.name,
            "door": workload.door,
            "request": workload.request,
            "base_url": endpoints["rest"],
            "bootstrap": endpoints["kafka"],
            "topic": workload.request,
            "api_key": self.secrets["API_KEYS"],
            "webhook_secret": self.secrets["STRIPE_WEBHOOK_SECRET"],
            "rates": list(rates),
            "step_s": step_s,
            "slo_p99_ms": workload.slo_p99_ms,
            "timeout_s": self.o.timeout_s,
            "stop_on_break": stop_on_break,
            "pause_s": 0.2 if self.o.smoke else 1.5,
            "data": self.data,
            "dialect": workload.dialect,
        }

    def run_load(
        self,
        spec: dict[str, Any],
        tag: str,
        during: Callable[[], None] | None = None,
        module: str = "bench.load",
        bound_s: float | None = None,
    ) -> dict[str, Any]:
        """A load generator (`module`, reading its spec on stdin) as a process of its own; bounded by its ramp's
        length or `bound_s`. `during` runs meanwhile."""
        spec_path = self.run_dir / f"load-{tag}.spec.json"
        out_path = self.run_dir / f"load-{tag}.out.json"
        spec_path.write_text(json.dumps(spec))
        if bound_s is None:
            bound_s = 2 * len(spec["rates"]) * (spec["step_s"] + spec["timeout_s"] + 3 + spec["pause_s"]) + 60
        with open(spec_path, "rb") as stdin, open(out_path, "wb") as stdout:
            proc = subprocess.Popen(
                [PYTHON, "-m", module], cwd=self.o.root, stdin=stdin, stdout=stdout, start_new_session=True
            )
        group_name = f"load-{tag}"
        from bench.stack import Group

        self.processes.groups[group_name] = Group(group_name, proc, out_path)
        self.monitor.watch_group("load", self.processes.groups[group_name])
        try:
            if during is not None:
                during()
            proc.wait(bound_s)
        finally:
            self.monitor.unwatch("load")
            self.processes.stop(group_name)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator for {tag} failed (exit {proc.returncode})")
        return json.loads(out_path.read_text())

    def settle(self, service: list[str], bound_s: float = 120.0) -> float:
        """Wait until the service is idle again: tasks a previous workload left queued (its callers gave up on
        them, the workers did not) would otherwise run during the next one. Returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < bound_s:
            now = time.time()
            time.sleep(1.0)
            busy = sum(v for k, v in self.monitor.cpu_between(now, time.time()).items() if k in service)
            if busy < 0.15:  # cores: what an idle stack spends on its own polling
                break
        return time.monotonic() - started

    def measure(self, workload: Workload, phase: Phase, endpoints: dict[str, str], service: list[str]) -> dict:
        tag = phase.tag(workload.name)
        waited = self.settle(service)
        if waited > 2:
            self.notes.append(f"Before {tag}: waited {waited:.0f} s for the service to finish the previous backlog")
        low_rate = None
        if self.o.smoke:
            rates, step_s, stop = (SMOKE_RATE,), SMOKE_STEP_S, False
        else:
            rates = self.o.rates.get(tag, self.o.rates.get(workload.name, workload.rates))
            step_s, stop = workload.step_s or self.o.step_s, True
            if not phase.suffix:  # the default phase's processes; the variants would only repeat it
                low_rate = self.low_rate_step(workload, endpoints, tag)
            # Warm at the first rate: pools and keep-alive connections grow here, not in the first measured step.
            # At least five requests: a ramp from 0.5/s (the original service's) would warm on one.
            warm_rate = min(rates[0], 100)
            warm = self.load_spec(workload, endpoints, (warm_rate,), max(3.0, 5 / warm_rate), False)
            warm["slo_p99_ms"] = 1e9
            self.run_load(warm, f"{tag}-warmup")
        # The shared server's statements with our service idle (the bench's own polling subtracted): what other
        # users add per second to the server-wide counters the step's statements are read from.
        time.sleep(0.3)
        quiet = self.db_connections.statements_between(time.time() - 1.3, time.time() - 0.3, 1) or {}
        self.monitor.reset_peaks()
        self.db_connections.take_peak()
        self.log(f"{tag}: {workload.title}, rates {list(rates)}")
        profilers = self.start_profilers(tag, service) if self.o.profile else []
        try:
            outcome = self.run_load(self.load_spec(workload, endpoints, rates, step_s, stop), tag)
        finally:
            self.stop_profilers(profilers)
        result = self.summarise(workload, phase, tag, outcome, service)
        result["db_background_statements_per_s"] = quiet.get("Questions")
        if low_rate is not None:
            result["low_rate"] = low_rate
        return result

    def low_rate_step(self, workload: Workload, endpoints: dict[str, str], tag: str) -> dict[str, Any] | None:
        """Issue 27: one light step before the warm-up, so the first requests the service answers count, as an
        outside caller's do after a deploy; its whole step is measured whatever its p99."""
        if not workload.low_rate or self.o.low_rate_s <= 0:
            return None
        spec = self.load_spec(workload, endpoints, (workload.low_rate,), self.o.low_rate_s, False)
        spec["slo_p99_ms"] = 1e9
        self.log(f"{tag}: low-rate step, {workload.low_rate:g}/s for {self.o.low_rate_s:g} s")
        steps = self.run_load(spec, f"{tag}-low")["steps"]
        return steps[0] if steps else None

    def summarise(self, workload: Workload, phase: Phase, tag: str, outcome: dict, service: list[str]) -> dict:
        steps = outcome["steps"]
        for step in steps:
            cpu = self.monitor.cpu_between(step["wall_start"], step["wall_end"])
            step["cpu_s"] = cpu
        passed = [s for s in steps if s["slo_met"]]
        best = passed[-1] if passed else (steps[0] if steps else {})
        # A broken step is run once more (load.py): the ramp ended at the last step if that one broke too.
        broke = steps[-1] if steps and not steps[-1]["slo_met"] else None
        ops = max(1, best.get("ok", 0))
        cpu = best.get("cpu_s", {})
        peaks = self.monitor.peaks()
        service_peaks = {n: max(peaks.get(n, {}).values(), default=0.0) for n in service}
        return {
            "name": tag,
            "title": workload.title,
            "door": workload.door,
            "broker": phase.broker if phase.kind == "service" else None,
            "env": dict(phase.env),
            "unit": workload.unit,
            "target_per_s": workload.target_per_s,
            "offered_per_s": best.get("rate"),
            "throughput_per_s": best.get("throughput_per_s", 0.0) if passed else 0.0,
            "p50_ms": best.get("p50_ms"),
            "p95_ms": best.get("p95_ms"),
            "p99_ms": best.get("p99_ms"),
            "errors": best.get("errors", 0),
            "sent": best.get("sent", 0),
            "slo_p99_ms": workload.slo_p99_ms,
            "slo_met": bool(passed),
            "broke_at": broke
            and {k: broke[k] for k in ("rate", "throughput_per_s", "p99_ms", "errors", "error_kinds")},
            "cpu_s_per_op": round(sum(cpu.get(n, 0.0) for n in service) / ops, 5),
            "cpu_s_per_op_by_process": {n: round(cpu.get(n, 0.0) / ops, 5) for n in service},
            "broker_cpu_s_per_op": round(cpu.get("tansu", 0.0) / ops, 5) if "tansu" in cpu else None,
            "other_cpu_s_per_op": {
                n: round(cpu.get(n, 0.0) / ops, 5) for n in ("fake-stripe", "load", "mariadb", "rabbitmq", "redis")
            },
            "machine_cores_busy": round(cpu.get("machine", 0.0) / max(best.get("duration_s", 1), 1e-9), 2),
            "peak_rss_mb": max(service_peaks.values(), default=0.0),
            "db_connections_peak": self.db_connections.take_peak(),
            # Server-wide counters over the sustained step, less the bench's own polling (stack.STATUS_COUNTERS).
            "db_statements_per_op": self.db_connections.statements_between(best["wall_start"], best["wall_end"], ops)
            if best
            else None,
            "peak_rss_mb_by_process": peaks,
            "baseline": workload.baseline,
            "ratio_to_baseline": None,
            "steps": steps,
            "load_cpu_s": outcome.get("load_cpu_s"),
        }

    # --- partition moves (issue 17) ------------------------------------------------------------------------

    def wait_for_split(self, relays: list[str], topic: str, partitions: int, bound_s: float = 90.0) -> None:
        """Until every relay holds some of the topic's partitions and together all of them, none twice."""

        def split() -> bool:
            held = [held_partitions(self.processes.groups[r].log_text(), topic) for r in relays]
            return all(held) and sum(len(h) for h in held) == partitions == len(set().union(*held))

        wait_until(split, bound_s, f"{topic} split between {', '.join(relays)}", 0.5)

    def signal_after(self, started: Path, delay_s: float, name: str, sig: int, signalled: list[float]) -> None:
        """`delay_s` after the load's first request, signal a process group; its wall-clock time into `signalled`."""
        wait_until(started.exists, 60, "the move's load")
        time.sleep(delay_s)
        signalled.append(time.time())
        os.killpg(self.processes.groups[name].popen.pid, sig)

    def measure_moves(self, phase: Phase, endpoints: dict[str, str], service: list[str]) -> None:
        """Under a steady Kafka load, stop the second relay (SIGTERM, then SIGKILL after a restart) and measure
        how long its partitions go unanswered and whether any request is lost or answered twice."""
        workload = WORKLOADS[phase.workloads[0]]
        settings = {**dict(phase.env), **self.o.env}  # as service_env merges them: --env wins
        topic, partitions = workload.request, int(settings.get("KAFKA_TOPIC_PARTITIONS", "3"))
        relays = [n for n in self.processes.groups if base_name(n) == "relay"]
        stopped = relays[-1]
        before_s, after_s = self.o.move_before_s, self.o.move_after_s
        for sig in (signal.SIGTERM, signal.SIGKILL):
            tag = f"{phase.tag(workload.name)}-{sig.name}"
            self.settle(service)
            self.wait_for_split(relays, topic, partitions)
            moved = held_partitions(self.processes.groups[stopped].log_text(), topic)
            started_path = self.run_dir / f"load-{tag}.started"
            started_path.unlink(missing_ok=True)
            spec = self.load_spec(workload, endpoints, (self.o.move_rate,), before_s + after_s, False)
            # Generous: the killed relay's partitions wait out the session timeout before anyone answers them.
            spec.update(trace=True, started_path=str(started_path), timeout_s=25.0, duplicate_wait_s=3.0)
            spec["slo_p99_ms"] = 1e9
            signalled: list[float] = []
            self.log(f"{tag}: {self.o.move_rate:.0f}/s, {sig.name} to {stopped} (holds {sorted(moved)})")
            during = functools.partial(self.signal_after, started_path, before_s, stopped, sig, signalled)
            outcome = self.run_load(spec, tag, during=during)
            figures = move_figures(outcome["trace"], signalled[0], moved)
            exited = self.processes.groups[stopped].popen.wait(30)
            # The Procfile line's shell is what died of the signal; the relay's own log says whether it closed.
            closed = "relay stopped" in self.processes.groups[stopped].log_text()
            figures.update(
                name=tag,
                signal=sig.name,
                rate_per_s=self.o.move_rate,
                relays=len(relays),
                partitions=partitions,
                stopped_exit=exited,
                stopped_cleanly=closed,
                session_timeout_ms=int(
                    {**LOCAL_KAFKA, **(SMOKE_KAFKA if self.o.smoke else {}), **settings}[
                        "KAFKA_CONSUMER_OPT_SESSION_TIMEOUT_MS"
                    ]
                ),
            )
            self.log(f"{tag}: {json.dumps({k: v for k, v in figures.items() if k != 'name'})}")
            self.moves.append(figures)
            # The stopped relay back, as a fresh member: the next move starts from the same two-relay group.
            self.monitor.unwatch(stopped)
            self.processes.stop(stopped)
            command, env, tree = self.started[stopped]
            self.monitor.watch_group(stopped, self.processes.shell(stopped, command, env, tree))

    # --- profiling ---------------------------------------------------------------------------------------

    def start_profilers(self, tag: str, service: list[str]) -> list[subprocess.Popen[bytes]]:
        """py-spy on every service process while the workload runs (profiled figures are not the measured ones)."""
        spy = str(Path(PYTHON).parent / "py-spy")
        started = []
        for name in service:
            group = self.processes.groups.get(name)
            if group is None or name == "tansu":
                continue
            for proc in group.processes():
                if (
                    "python" not in " ".join(proc.cmdline()[:2])
                    and "gunicorn" not in " ".join(proc.cmdline()[:2])
                    and "celery" not in " ".join(proc.cmdline()[:2])
                ):
                    continue
                out = self.run_dir / f"profile-{tag}-{name}-{proc.pid}.txt"
                argv = [
                    spy,
                    "record",
                    "-p",
                    str(proc.pid),
                    "-r",
                    "50",
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                    "--nonblocking",
                    "-d",
                    str(int(self.o.step_s * len(self.o.rates.get(tag, (1,)))) + 2),
                ]
                started.append(
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                )
        return started

    def stop_profilers(self, profilers: list[subprocess.Popen[bytes]]) -> None:
        for proc in profilers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def base_name(label: str) -> str:
    """The Procfile line a monitored label runs: `worker-2` is the second `worker`."""
    return re.sub(r"-\d+$", "", label)


def copy_of(name: str, command: str, env: dict[str, str], copy: int) -> tuple[str, str, dict[str, str]]:
    """(label, command, environment) of the copy-th process of a Procfile line (0: the line itself).

    A further copy gets metrics ports of its own (two cannot bind one) and, for Celery, a node name of its own
    (two nodes of one name in a vhost make Celery warn and confuse its control commands).
    """
    if copy == 0:
        return name, command, env
    label = f"{name}-{copy + 1}"
    copy_env = {**env, **{port: str(free_port()) for port in METRICS_PORTS}}
    return label, re.sub(r"(-n\s+)([^@\s]+)@", rf"\g<1>\g<2>-{copy + 1}@", command), copy_env


def link_baselines(results: list[dict[str, Any]]) -> None:
    """ratio_to_baseline: each workload's sustained throughput over its baseline's, from the same run."""
    by_name = {r["name"]: r for r in results}
    for result in results:
        base_name = WORKLOADS[re.split(r"[@+]", result["name"])[0]].baseline
        base = by_name.get(base_name) if base_name else None
        if base and base["throughput_per_s"]:
            result["ratio_to_baseline"] = round(result["throughput_per_s"] / base["throughput_per_s"], 2)
        if re.split(r"[@+]", result["name"])[0] == "R2" and by_name.get("B-direct-kafka", {}).get("throughput_per_s"):
            result["ratio_to_direct_read"] = round(
                result["throughput_per_s"] / by_name["B-direct-kafka"]["throughput_per_s"], 2
            )
        if re.split(r"[@+]", result["name"])[0] == "W2" and by_name.get("B-kafka-ceiling", {}).get("throughput_per_s"):
            result["ratio_to_kafka_ceiling"] = round(
                result["throughput_per_s"] / by_name["B-kafka-ceiling"]["throughput_per_s"], 2
            )


def machine_facts() -> dict[str, str]:
    def sh(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except OSError:
            return "?"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": sh("nproc"),
        "free": sh("free", "-h"),
        "cpu": cpu,
        "python": platform.python_version(),
        "uptime": sh("uptime"),
        "cpu_probe_ms": f"{cpu_probe_ms():.1f}",
    }


def cpu_probe_ms() -> float:
    """CPU ms of a fixed piece of Python work (JSON, hashing, dicts: what a request does), the best of five: how
    fast this machine runs Python today, so that runs on different days can be compared (a shared host drifts)."""
    import hashlib

    body = {"id": "vypi_01", "amount": 1234, "metadata": {"k": "v" * 40}, "items": list(range(50))}
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for i in range(4000):
            text = json.dumps({**body, "n": i}, sort_keys=True)
            hashlib.sha256(text.encode()).hexdigest()
            json.loads(text)
        best = min(best, time.process_time() - start)
    return best * 1000


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every workload briefly at a low rate; no figures")
    parser.add_argument("--only", help="comma-separated workloads (W1,R1,B-sync-peer, or W1@redis)")
    parser.add_argument("--brokers", default="amqp,redis", help="Celery brokers, the default first: amqp,redis")
    parser.add_argument("--stripe-latency-ms", type=float, default=300.0)
    parser.add_argument("--step-s", type=float, default=8.0)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service's processes")
    parser.add_argument("--rates", action="append", default=[], help="W1=50,100,200: that workload's ramp")
    parser.add_argument("--profile", action="store_true", help="py-spy every service process during each workload")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="where RESULTS.md and results.json go")
    parser.add_argument("--root", default=str(ROOT), help="the service tree to run (a copy, for experiments)")
    parser.add_argument("--report", action="store_true", help="only render RESULTS.md again from results.json")
    parser.add_argument(
        "--no-variants", action="store_true", help="only the default phases (no scale-out, moves, proposals): an A/B"
    )
    parser.add_argument("--move-rate", type=float, default=100.0, help="R2+move: the steady rate while relays move")
    parser.add_argument(
        "--low-rate-s", type=float, default=LOW_RATE_STEP_S, help="the Kafka workloads' light step (s); 0: none"
    )
    args = parser.parse_args(argv)
    return Options(
        smoke=args.smoke,
        only=set(args.only.split(",")) if args.only else None,
        brokers=tuple(args.brokers.split(",")),
        stripe_latency_ms=args.stripe_latency_ms,
        step_s=args.step_s,
        env=dict(item.split("=", 1) for item in args.env),
        rates={k: tuple(float(x) for x in v.split(",")) for k, v in (item.split("=", 1) for item in args.rates)},
        profile=args.profile,
        out_dir=Path(args.out),
        root=Path(args.root).resolve(),
        report_only=args.report,
        variants=not args.no_variants,
        move_rate=args.move_rate,
        low_rate_s=args.low_rate_s,
    )


def check_smoke(results: list[dict[str, Any]], expected: list[str]) -> None:
    """The harness works: every workload ran, was answered, and its figures are all there."""
    names = [r["name"] for r in results]
    assert names == expected, f"workloads run {names}, expected {expected}"
    for result in results:
        step = result["steps"][0]
        assert step["ok"] >= 1, f"{result['name']}: no successful reply ({step['error_kinds']})"
        for key in report.RESULT_FIELDS:
            assert key in result, f"{result['name']}: {key} missing"
        assert result["cpu_s_per_op_by_process"], f"{result['name']}: no CPU sampled"


def _stop_cleanly(signum: int, _frame: object) -> None:
    # SystemExit unwinds every finally: the processes, database, vhost and Redis indexes of the run go with it.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    # A background start (nohup, CI) inherits SIGINT ignored; TERM would kill without cleanup: both unwind instead.
    signal.signal(signal.SIGINT, _stop_cleanly)
    signal.signal(signal.SIGTERM, _stop_cleanly)
    options = parse_args(argv)
    if options.report_only:
        report.rerender(options.out_dir)
        return 0
    with tempfile.TemporaryDirectory(prefix="vyp-bench-") as tmp:
        run_dir = Path(os.environ.get("VYP_BENCH_LOG_DIR") or tmp)
        run_dir.mkdir(parents=True, exist_ok=True)
        if options.smoke:
            options.brokers = options.brokers[:1]
        run = Run(options, run_dir)
        facts_before = machine_facts()
        started = time.monotonic()
        results = run.execute()
        link_baselines(results)
        elapsed = time.monotonic() - started
        run.log(f"done in {elapsed:.0f} s")
        if options.smoke:
            smoke_phases = phases(options.brokers, options.only, variants=False, original=False)
            expected = [p.tag(n) for p in smoke_phases for n in p.workloads]
            check_smoke(results, expected)
            if options.only is None:
                bursts.check_smoke(run.bursts)
            print(f"smoke: {len(results)} workloads answered in {elapsed:.0f} s")
            return 0
        options.out_dir.mkdir(parents=True, exist_ok=True)
        import settings

        concurrency = capacity.process_concurrency(options.root, settings.get_settings().payments_concurrency)
        extra = {
            "limiter_cost": getattr(run, "limiter_cost", None),
            "worker_cost": getattr(run, "worker_cost", None),
            "original_service": getattr(run, "original", None),
            "partition_moves": run.moves,
            "bursts": run.bursts,
            "concurrency": concurrency,
            "capacity": capacity.model(results, concurrency),
        }
        report.write(options, results, facts_before, machine_facts(), run.notes, options.out_dir, extra)
        print(report.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
