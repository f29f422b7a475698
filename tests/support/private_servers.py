"""Private instances of the real servers, owned by one drill: restarted and killed without touching anyone else.

The machine's MariaDB (3306), RabbitMQ (5672) and Redis (6379) are shared with other engineers' runs; a drill
that restarts a server starts its own on free ports, with its data in a temporary directory, and stops it after.
Each keeps its data across `restart()`, as a real server restart does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

from tests.support import services

START_TIMEOUT_S = 60


class PrivateServer:
    """A server process in its own process group, with a data directory that survives restarts."""

    name = "server"

    def __init__(self, log_dir: Path, tag: str) -> None:
        self.port = services.free_port()
        self.tag = tag
        self.dir = Path(tempfile.mkdtemp(prefix=f"vyp-drill-{self.name}-{tag}-"))
        self.log_path = log_dir / f"{self.name}-{tag}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.downtime_s = 0.0

    # -- to be given by each server
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """One-time set-up of the data directory."""

    def ready(self) -> bool:
        return services.port_open(self.port)

    # -- common
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.starts == 0:
            self.prepare()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.dir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped whole, never by name
            )
        services.wait_until(lambda: self.running and self.ready(), START_TIMEOUT_S, f"private {self.name}", 0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop the whole process group (graceful with SIGTERM), killing it if it does not go in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:  # children left in the group (erl_child_setup…)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def restart(self, sig: int = signal.SIGTERM, down_for_s: float = 0.0) -> float:
        """Stop, stay down `down_for_s`, start again on the same data; returns the seconds it was unreachable."""
        began = time.monotonic()
        self.stop(sig)
        time.sleep(down_for_s)
        self.start()
        self.downtime_s = time.monotonic() - began
        return self.downtime_s

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivateRedis(PrivateServer):
    """`redis-server` with an append-only file: what was acknowledged survives a restart."""

    name = "redis"

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.dir),
            "--protected-mode",
            "no",
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class PrivateRabbitMQ(PrivateServer):
    """A second RabbitMQ node (its own name, ports, Mnesia and logs); no plugins, so no management port."""

    name = "rabbitmq"

    def __init__(self, log_dir: Path, tag: str) -> None:
        super().__init__(log_dir, tag)
        self.dist_port = services.free_port()
        self.node = f"drill-{tag}@localhost"

    def prepare(self) -> None:
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        # The machine's rabbitmq-env.conf names the shared node: this node reads an empty one instead.
        (self.dir / "rabbitmq-env.conf").write_text("")

    def command(self) -> list[str]:
        # The bin/ script, not the sbin/ wrapper that switches to the rabbitmq user.
        return ["/usr/lib/rabbitmq/bin/rabbitmq-server"]

    def environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),  # the Erlang cookie of this node lives here
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"


class PrivateMariaDB(PrivateServer):
    """`mariadbd` on its own data directory (made by mariadb-install-db), root without a password."""

    name = "mariadb"

    def prepare(self) -> None:
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                "--auth-root-authentication-method=normal",
                "--user=root",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def command(self) -> list[str]:
        return [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.dir / 'data'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.dir / 's.sock'}",
            f"--pid-file={self.dir / 'mariadbd.pid'}",
            "--user=root",
            "--skip-grant-tables",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=500",
            "--innodb-lock-wait-timeout=50",
        ]

    def ready(self) -> bool:
        conn = pymysql.connect(**self.connect_params(), connect_timeout=1)
        conn.close()
        return True

    def connect_params(self, database: str | None = None) -> dict:
        params = {"host": "127.0.0.1", "port": self.port, "user": "root", "password": ""}
        if database:
            params["database"] = database
        return params

    def create_database(self, name: str) -> None:
        conn = pymysql.connect(**self.connect_params())
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.close()
