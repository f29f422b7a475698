"""The benchmark's stack: services, the service's processes as the Procfile runs them, and a CPU/RSS monitor.

Every process is started in a process group of its own and stopped by group (TERM, then KILL) in a finally
block, so a failed run leaves nothing behind. Shared services (MariaDB, RabbitMQ, Redis) get a fresh database,
vhost and Redis database index per run, removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pymysql
import requests

from stand_ins import processes
from stand_ins.local import tansu_binary
from stand_ins.processes import free_port

ROOT = processes.ROOT
PYTHON = processes.PYTHON
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
REDIS = ("127.0.0.1", 6379)
OPTION_PREFIXES = ("KAFKA_OPT_", "KAFKA_CONSUMER_OPT_", "KAFKA_PRODUCER_OPT_")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll until `predicate` is truthy; bounded by `timeout` (the bench polls every 0.2 s)."""
    processes.wait_until(predicate, timeout, what, interval)


def service_variables(root: Path = ROOT) -> set[str]:
    """Every variable the service reads (.env-example lists exactly those)."""
    text = (root / ".env-example").read_text()
    return set(re.findall(r"^([A-Z_]+)=", text, flags=re.M))


def clean_environment(root: Path = ROOT) -> dict[str, str]:
    """The inherited environment without any of the service's settings: the benchmark sets every one it uses."""
    drop = service_variables(root) | {"PROMETHEUS_MULTIPROC_DIR", "WORKER_METRICS_PORT", "READS_METRICS_PORT"}
    drop |= {"RELAY_METRICS_PORT"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(OPTION_PREFIXES)}


def procfile(root: Path = ROOT) -> dict[str, str]:
    """The Procfile's process lines, by name."""
    lines: dict[str, str] = {}
    for line in (root / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            lines[match.group(1)] = match.group(2)
    return lines


@dataclass
class Group:
    """One started process and its descendants, in a process group of its own."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.popen.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        """TERM the whole group, then KILL what is left after `timeout`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Children (gunicorn workers) may outlive a parent that died first: the group goes either way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


class Processes:
    """Starts process groups and stops every one of them on exit, newest first."""

    def __init__(self, log_dir: Path, root: Path = ROOT) -> None:
        self.log_dir = log_dir
        self.root = root
        self.groups: dict[str, Group] = {}

    def spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Group:
        assert name not in self.groups or not self.groups[name].running, f"{name} already running"
        log_path = self.log_dir / f"{name}.log"
        # A fresh log per start: readiness is read from it, never from an earlier process's lines.
        popen = processes.spawn(argv, log_path, env, cwd=cwd or self.root, fresh_log=True)
        group = Group(name, popen, log_path)
        self.groups[name] = group
        return group

    def shell(self, name: str, command: str, env: dict[str, str], cwd: Path | None = None) -> Group:
        """A Procfile line, run by a shell as honcho runs it (its `${VAR:-default}` expanded there)."""
        return self.spawn(name, ["/bin/sh", "-c", command], env, cwd)

    def stop(self, *names: str) -> None:
        for name in names:
            group = self.groups.pop(name, None)
            if group is not None:
                group.stop()

    def stop_all(self) -> None:
        for name in reversed(list(self.groups)):
            self.stop(name)


# --- shared services: a fresh database, vhost and Redis index per run ------------------------------------


def database_env(database: str) -> dict[str, str]:
    """The settings that point the service (or the original, which reads the same names) at a database of the
    shared MariaDB, TLS off as it is here."""
    return {
        "TIDB_HOST": str(MARIADB["host"]),
        "TIDB_PORT": str(MARIADB.get("port", 3306)),
        "TIDB_USER": str(MARIADB["user"]),
        "TIDB_PASSWORD": str(MARIADB.get("password", "")),
        "TIDB_DATABASE": database,
        "TIDB_ENABLE_SSL": "false",
    }


@contextlib.contextmanager
def mariadb_database(name: str) -> Iterator[str]:
    conn = pymysql.connect(**MARIADB)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    try:
        yield name
    finally:
        conn = pymysql.connect(**MARIADB)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@contextlib.contextmanager
def rabbit_vhost(name: str) -> Iterator[str]:
    """A vhost of our own, so that concurrent runs never take each other's tasks."""
    for argv in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *argv], check=True, capture_output=True, timeout=60)
    try:
        yield name
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60, check=False)


@contextlib.contextmanager
def redis_databases(count: int, run: str) -> Iterator[list[int]]:
    """Empty Redis database indexes for this run (claimed with a marker key), flushed at the end."""
    import redis

    from tests.support.services import REDIS_CLAIM, REDIS_DBS

    claimed: list[int] = []
    try:
        for index in REDIS_DBS:  # the test runs' claim, with the same marker: never one database for two runs
            if len(claimed) == count:
                break
            client = redis.Redis(*REDIS, db=index)
            if client.dbsize() == 0 and client.set(REDIS_CLAIM, run, nx=True, ex=7200):
                claimed.append(index)
        if len(claimed) < count:
            raise RuntimeError("no empty Redis database index left for the benchmark")
        yield claimed
    finally:
        for index in claimed:
            client = redis.Redis(*REDIS, db=index)
            if client.get(REDIS_CLAIM) == run.encode():
                client.flushdb()


def start_tansu(processes: Processes, name: str, env: dict[str, str]) -> tuple[Group, str]:
    """A memory-only Tansu broker on a free loopback port; returns it and its bootstrap address."""
    from confluent_kafka.admin import AdminClient

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    group = processes.spawn(name, [*argv, "--storage-engine", "memory://tansu/"], env)
    address = f"127.0.0.1:{port}"
    # Listening first, so that the admin client does not log refused connections while Tansu starts.
    wait_until(
        lambda: group.running and socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
        30,
        "tansu port",
    )
    admin = AdminClient({"bootstrap.servers": address})
    wait_until(lambda: group.running and admin.list_topics(timeout=1) is not None, 30, "tansu")
    return group, address


def start_fake_stripe(processes: Processes, env: dict[str, str], latency_ms: float) -> str:
    port = free_port()
    argv = [PYTHON, "-m", "bench.fake_stripe", "--port", str(port), "--latency-ms", str(latency_ms)]
    processes.spawn("fake-stripe", argv, env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{base}/_stats", timeout=1).ok, 30, "fake stripe")
    return base


def shared_service_pids() -> dict[str, list[int]]:
    """The machine's MariaDB, RabbitMQ and Redis (shared with other users: their CPU is not only ours)."""
    names = {"mariadbd": "mariadb", "mysqld": "mariadb", "beam.smp": "rabbitmq", "redis-server": "redis"}
    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["name"]):
        label = names.get(proc.info["name"] or "")
        if label:
            found.setdefault(label, []).append(proc.pid)
    return found


# --- the monitor ------------------------------------------------------------------------------------------


@dataclass
class Watched:
    label: str
    members: Callable[[], list[psutil.Process]]
    cpu_total: float = 0.0
    last_cpu: dict[int, float] = field(default_factory=dict)
    peak_rss: dict[int, float] = field(default_factory=dict)  # pid -> MB
    names: dict[int, str] = field(default_factory=dict)


class _Sampler:
    """A thread that samples every `interval` s between start() and stop() (its `_run`)."""

    def __init__(self, name: str, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Monitor(_Sampler):
    """Samples CPU seconds (cumulative per watched group) and RSS (peak per process) every `interval` s."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__("bench-monitor", interval)
        self.watched: dict[str, Watched] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []

    def watch_group(self, label: str, group: Group) -> None:
        self._watch(label, group.processes)

    def watch_pids(self, label: str, pids: list[int]) -> None:
        def members() -> list[psutil.Process]:
            found = []
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    found.append(psutil.Process(pid))
            return found

        self._watch(label, members)

    def _watch(self, label: str, members: Callable[[], list[psutil.Process]]) -> None:
        with self._lock:
            self.watched[label] = Watched(label, members)
        self.sample()

    def unwatch(self, label: str) -> None:
        self.sample()
        with self._lock:
            self.watched.pop(label, None)

    def sample(self) -> None:
        now = time.time()
        with self._lock:
            for w in self.watched.values():
                for proc in w.members():
                    try:
                        with proc.oneshot():
                            times = proc.cpu_times()
                            cpu = times.user + times.system
                            rss = proc.memory_info().rss / 2**20
                            if proc.pid not in w.names:
                                w.names[proc.pid] = " ".join(proc.cmdline()[:4])[:120]
                    except psutil.Error:
                        continue
                    previous = w.last_cpu.get(proc.pid)
                    # A process first seen now: only what it spends from here on counts.
                    w.cpu_total += 0.0 if previous is None else max(0.0, cpu - previous)
                    w.last_cpu[proc.pid] = cpu
                    w.peak_rss[proc.pid] = max(w.peak_rss.get(proc.pid, 0.0), rss)
            totals = {label: w.cpu_total for label, w in self.watched.items()}
            busy = psutil.cpu_times()
            # Every core's busy time, whoever spent it: the other users of this shared machine show here.
            totals["machine"] = busy.user + busy.nice + busy.system + busy.irq + busy.softirq + busy.steal
            self.samples.append((now, totals))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def cpu_between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds each watched group spent between two wall-clock times (nearest samples)."""
        with self._lock:
            samples = list(self.samples)
        if not samples:
            return {}
        before = max((s for s in samples if s[0] <= t0), key=lambda s: s[0], default=samples[0])
        after = min((s for s in samples if s[0] >= t1), key=lambda s: s[0], default=samples[-1])
        return {
            label: round(after[1][label] - before[1].get(label, after[1][label]), 3)
            for label in after[1]
            if label in before[1]
        }

    def peak_rss_mb(self, label: str) -> float:
        w = self.watched.get(label)
        return round(max(w.peak_rss.values(), default=0.0), 1) if w else 0.0

    def peaks(self) -> dict[str, dict[str, float]]:
        """Peak RSS of every process seen, by group then process."""
        with self._lock:
            return {
                label: {f"{pid} {w.names.get(pid, '')}": round(mb, 1) for pid, mb in w.peak_rss.items()}
                for label, w in self.watched.items()
            }

    def reset_peaks(self) -> None:
        with self._lock:
            for w in self.watched.values():
                w.peak_rss.clear()


# MariaDB's server-wide statement counters read around each step (performance_schema is off on this server, so
# there is no per-connection count): the bench's own polling is subtracted, other users' statements are not.
STATUS_COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_begin",
    "Com_commit",
    "Com_rollback",
)
# What one poll of DatabaseConnections adds itself: a SELECT on the processlist, then SHOW GLOBAL STATUS (measured).
OWN_STATEMENTS_PER_POLL = {"Questions": 2, "Com_select": 1}


def statements_per_op(before: dict[str, int], after: dict[str, int], polls: int, ops: int) -> dict[str, float | None]:
    """Each counter's increase between two samples, less the poller's own statements, per successful operation.

    A counter missing from either sample (another server version, a status variable renamed) is None, not 0.
    """
    result: dict[str, float | None] = {}
    for name in STATUS_COUNTERS:
        if name not in before or name not in after:
            result[name] = None
            continue
        delta = after[name] - before[name] - OWN_STATEMENTS_PER_POLL.get(name, 0) * polls
        result[name] = round(max(0, delta) / max(1, ops), 2)
    return result


class DatabaseConnections(_Sampler):
    """Peak number of MariaDB connections to the run's database (how many the pools really hold), sampled; and the
    server's statement counters at each poll, so that a step's statements can be taken between its start and end."""

    def __init__(self, database: str, interval: float = 0.25) -> None:
        super().__init__("bench-db-connections", interval)
        self.database = database
        self.peak = 0
        self.samples: list[tuple[float, int, dict[str, int]]] = []  # (wall time, poll number, counters)

    def take_peak(self) -> int:
        peak, self.peak = self.peak, 0
        return peak

    def statements_between(self, t0: float, t1: float, ops: int) -> dict[str, float | None] | None:
        """Statements per operation between two wall-clock times (the samples just outside them); None if the
        counters were never read."""
        with self._lock:
            samples = list(self.samples)
        before = max((s for s in samples if s[0] <= t0), key=lambda s: s[0], default=None)
        after = min((s for s in samples if s[0] >= t1), key=lambda s: s[0], default=None)
        if before is None or after is None:
            return None
        return statements_per_op(before[2], after[2], after[1] - before[1], ops)

    def _run(self) -> None:
        conn = pymysql.connect(**MARIADB, autocommit=True)
        names = ", ".join(f"'{n}'" for n in STATUS_COUNTERS)
        polls = 0
        try:
            while not self._stop.wait(self.interval):
                with conn.cursor() as cur:
                    cur.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s", (self.database,))
                    self.peak = max(self.peak, int(cur.fetchone()[0]))
                    cur.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
                    counters = {str(k): int(v) for k, v in cur.fetchall()}
                polls += 1
                with self._lock:
                    self.samples.append((time.time(), polls, counters))
                    # Bounded: a long run keeps about an hour of samples at the default interval.
                    del self.samples[:-15000]
        finally:
            conn.close()


def patched_tree(root: Path, patches: list[Path], destination: Path) -> tuple[Path, list[str], list[str]]:
    """A copy of the service tree with each proposal's patch applied; (the tree, applied, left out).

    The work tree moves under other engineers' hands: a patch that no longer applies whole (its change already
    made there, or the lines edited meanwhile) is left out entirely, never half-applied.
    """
    import shutil

    skip = (".venv", ".git", ".hypothesis", ".pytest_cache", ".ruff_cache", "var", "__pycache__")
    shutil.copytree(root, destination, ignore=shutil.ignore_patterns(*skip))
    (destination / ".venv").symlink_to(root / ".venv")
    applied, left_out = [], []
    for patch in patches:
        argv = ["patch", "-p1", "--forward", "--silent", "-i", str(patch)]
        check = subprocess.run([*argv, "--dry-run"], cwd=destination, capture_output=True, timeout=60)
        if check.returncode == 0:
            subprocess.run(argv, cwd=destination, capture_output=True, timeout=60, check=True)
            applied.append(patch.stem)
        else:
            left_out.append(patch.stem)
    return destination, applied, left_out


def run_id() -> str:
    return uuid.uuid4().hex[:8]
