"""The Socket.IO door's stack: the suite's worker, database and localstripe, with a Kafka of its own (Tansu), the
events publisher, the REST API (tokens, webhooks) and two Socket.IO processes sharing one Redis queue."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import API_KEY, LOG_DIR, RUN
from tests.support import kafka, services
from tests.support.sockets import SocketClient

PUBLISHABLE_KEY = f"pk_test_vyp{RUN}"


@dataclass
class SocketStack:
    api: str
    sockets: list[str]  # the two Socket.IO processes' base URLs
    kafka: str
    log_dir: Path
    processes: dict[str, subprocess.Popen]
    socket_env: dict[str, dict[str, str]]  # each Socket.IO process's environment, to start it again

    def start_sockets(self, name: str) -> None:
        """Start a Socket.IO process (again) and wait until its status feed holds partitions."""
        env = self.socket_env[name]
        self.processes[name] = _start([services.PYTHON, "-m", "socket_door"], env, self.log_dir / f"{name}.log")
        base = f"http://127.0.0.1:{env['SOCKET_PORT']}"
        services.wait_until(lambda: requests.get(f"{base}/readyz", timeout=1).ok, 90, base)

    def token(self, customer_id: str) -> str:
        answer = requests.post(
            f"{self.api}/socket-tokens",
            json={"customerId": customer_id},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["token"]

    def metric(self, base: str, name: str) -> float:
        """The sum of a metric's samples on a Socket.IO process's /metrics."""
        text = requests.get(f"{base}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.log_dir.glob("*.log"))


def _start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, cwd=services.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture(scope="package")
def socket_stack(worker: Path, localstripe_url: str, mariadb: Any) -> Iterator[SocketStack]:
    log_dir = LOG_DIR / "sockets"
    log_dir.mkdir(parents=True, exist_ok=True)
    with kafka.tansu(services.free_port(), log_dir / "tansu.log") as address:
        env = {
            **os.environ,
            "KAFKA_BROKER": address,
            "KAFKA_GROUP": f"vyp-sockets-{RUN}",
            "KAFKA_TOPIC_PARTITIONS": "2",
            **{f"KAFKA_CONSUMER_OPT_{k.upper().replace('.', '_')}": v for k, v in kafka.FAST_CONSUMER.items()},
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "SOCKET_HOST": "127.0.0.1",
            "METRICS_PORT": "0",
        }
        processes: dict[str, subprocess.Popen] = {}
        try:
            api_port = services.free_port()
            processes["api"] = services.start_api(
                {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}, log_dir / "api.log", api_port
            )
            processes["publisher"] = _start([services.PYTHON, "-m", "event_publisher"], env, log_dir / "publisher.log")
            socket_env = {
                name: {**env, "SOCKET_PORT": str(services.free_port())} for name in ("sockets-a", "sockets-b")
            }
            stack = SocketStack(
                f"http://127.0.0.1:{api_port}",
                [f"http://127.0.0.1:{e['SOCKET_PORT']}" for e in socket_env.values()],
                address,
                log_dir,
                processes,
                socket_env,
            )
            for name in socket_env:
                # Ready: its status feed holds partitions of the sockets' consumer group.
                stack.start_sockets(name)
            services.wait_until(lambda: requests.get(f"{stack.api}/healthz", timeout=1).ok, 60, "the API")
            yield stack
        finally:
            for proc in processes.values():
                services.stop(proc)


@pytest.fixture()
def server_socket(socket_stack: SocketStack) -> Iterator[SocketClient]:
    """A server's socket (the API key): may act on every customer's records."""
    client = SocketClient(socket_stack.sockets[0], api_key=API_KEY).connect()
    yield client
    client.close()
