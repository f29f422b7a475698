"""The one process starter: the zero-setup run, the tests, the drills and the bench start and stop the service's
processes (as the Procfile runs them) and its stand-ins through these functions."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ALL_QUEUES = "payments,payment-methods,webhooks,reads"


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll until `predicate` is truthy (an exception counts as not yet); TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready within {timeout:g} s")


def spawn(
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    *,
    cwd: Path | None = ROOT,
    fresh_log: bool = False,
    own_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `argv` with its output in `log_path` (appended, or a fresh file), stdin closed; in a process group of
    its own unless `own_session` is False (then a terminal's Ctrl-C reaches it too)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb" if fresh_log else "ab") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20, *, group: bool = False) -> None:
    """Signal the process (its whole group with `group`), then SIGKILL it if it is still there after `timeout`."""

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)

    if proc.poll() is not None:
        return
    send(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(10)


def worker_argv(queues: str, concurrency: int, name: str, *, heartbeat: bool = False) -> list[str]:
    """A Celery worker as the Procfile runs it (gevent pool). Without `heartbeat`: Celery 5.7's gevent loop waits
    0.1 s per pass on the heartbeat connection (~10 tasks/s); with it, a dead broker connection is noticed."""
    argv = [PYTHON, "-m", "celery", "-A", "tasks.app", "worker", "-Q", queues, "-P", "gevent", "-c", str(concurrency)]
    argv += ["-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
    if not heartbeat:
        argv.append("--without-heartbeat")
    return [*argv, "--loglevel", "DEBUG"]


def api_argv(bind: str | None = None) -> list[str]:
    """The REST door under gunicorn with gevent workers, as the Procfile runs it; `bind` overrides the address."""
    gunicorn = str(Path(PYTHON).parent / "gunicorn")
    return [gunicorn, "-c", "gunicorn.conf.py", *(["--bind", bind] if bind else []), "api:create_app()"]
