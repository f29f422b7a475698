"""Start and stop the real services an integration test needs: no mocks here."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import requests

from stand_ins.processes import (  # noqa: F401 (the tests call them through this module)
    PYTHON,
    ROOT,
    api_argv,
    free_port,
    port_open,
    spawn,
    stop,
    wait_until,
    worker_argv,
)

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def run_id() -> str:
    return uuid.uuid4().hex[:10]


def create_mariadb_database(name: str) -> None:
    conn = pymysql.connect(**MARIADB)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        # Several workers with gevent pools (64 connections each) outgrow MariaDB's default of 151.
        cur.execute("SELECT @@GLOBAL.max_connections")
        if cur.fetchone()[0] < 1000:
            cur.execute("SET GLOBAL max_connections = 1000")
    conn.close()


def drop_mariadb_database(name: str) -> None:
    conn = pymysql.connect(**MARIADB)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def create_rabbit_vhost(name: str) -> str:
    """A vhost of our own, so that concurrent runs on one machine never take each other's tasks (no vhost, no run:
    the shared default vhost would let another run's worker take our tasks)."""
    for argv in (
        ["rabbitmqctl", "-q", "add_vhost", name],
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"RabbitMQ vhost {name} not made: {' '.join(argv[2:4])}: {done.stderr.strip()}")
    return name


def delete_rabbit_vhost(name: str) -> None:
    if name:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60, check=False)


REDIS = ("127.0.0.1", 6379)
# The marker a run leaves in each Redis database it holds (bench/stack.py claims with the same one).
REDIS_CLAIM = "vyp-run-claim"
# 0 is anyone's default; 1 and 3 were the suite's and the drills' fixed databases (an older checkout may use them).
REDIS_DBS = [i for i in range(15, 0, -1) if i not in (1, 3)]


def claim_redis_db(run: str, ttl_s: int = 6 * 3600) -> int:
    """An empty Redis database index for this run alone, claimed atomically by its marker key (SET NX); a run that
    dies leaves it to expire. None left is an error, never a shared database."""
    import redis

    for index in REDIS_DBS:
        client = redis.Redis(*REDIS, db=index)
        try:
            # Empty but for nothing: a database with keys and no marker is someone else's (or a dead run's).
            if client.dbsize() == 0 and client.set(REDIS_CLAIM, run, nx=True, ex=ttl_s):
                return index
        finally:
            client.close()
    raise RuntimeError("no empty Redis database left to claim (15 runs at once, or leftovers: see REDIS_CLAIM)")


def release_redis_db(index: int, run: str) -> None:
    """Empty the run's database and give it back (only if the claim is still this run's)."""
    import redis

    client = redis.Redis(*REDIS, db=index)
    try:
        if client.get(REDIS_CLAIM) == run.encode():
            client.flushdb()
    finally:
        client.close()


@contextlib.contextmanager
def localstripe(port: int, log_path: Path, *options: str) -> Iterator[str]:
    """The localstripe stand-in (stand_ins/localstripe_server.py) on `port`, memory only; `options` are its flags
    (`--rate-limit 25`)."""
    argv = [PYTHON, "-m", "stand_ins.localstripe_server", "--port", str(port), *options]
    proc = spawn(argv, log_path, own_session=False)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: requests.get(f"{base}/v1/customers", auth=("sk_test_probe", ""), timeout=1).ok,
            30,
            "localstripe",
        )
        yield base
    finally:
        stop(proc)


def start_worker(
    env: dict[str, str], log_path: Path, queues: str, name: str, concurrency: int = 50
) -> subprocess.Popen:
    """A real Celery worker process on the real broker, as the Procfile runs it (gevent pool)."""
    return spawn(worker_argv(queues, concurrency, name), log_path, {**os.environ, **env}, own_session=False)


def start_api(env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen:
    """The REST door under gunicorn with gevent workers, exactly as the Procfile runs it."""
    return spawn(api_argv(), log_path, {**os.environ, **env, "APP_PORT": str(port)}, own_session=False)
