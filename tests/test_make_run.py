"""`make run` in a fresh copy with no backing settings: ready, the demo passes over both doors and as the platform's
checkout, Ctrl-C leaves nothing behind, and a second `make run` finds the data again."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support import services
from tests.support.sockets import SocketClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = re.findall(r"^([A-Z_]+)=", (ROOT / ".env-example").read_text(), flags=re.M)


def venv_is_current(root: Path) -> bool:
    """What `make run` checks before installing (the Makefile's RUN_STAMP): a stamp named after these locks' hash,
    newer than both of them."""
    sources = [root / "requirements.lock", root / "pyproject.toml"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    stamp = root / ".venv" / f".run-{digest}"
    return stamp.exists() and all(stamp.stat().st_mtime >= p.stat().st_mtime for p in sources)


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    """The project as a fresh clone has it (no .env, no var/), sharing this checkout's installed .venv — only when
    that .venv is installed from these very locks: a stale one would send `make run` to the package index to
    install into it, the other tests' .venv, while they run."""
    if not venv_is_current(ROOT):
        pytest.fail(f"{ROOT / '.venv'} is not installed from the current locks: run `make install` first")
    target = tmp_path / "service"
    shutil.copytree(
        ROOT,
        target,
        ignore=shutil.ignore_patterns(
            ".venv", "var", ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", ".env"
        ),
    )
    (target / ".venv").symlink_to(ROOT / ".venv")
    assert venv_is_current(target)  # the copy's `make run` installs nothing
    return target


def clean_env(ports: dict[str, int]) -> dict[str, str]:
    """The machine's environment without any of the service's settings, plus free ports for this run."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith("KAFKA_")}
    env.update(
        {
            "APP_PORT": str(ports["api"]),
            "LOCAL_REDIS_PORT": str(ports["redis"]),
            "LOCAL_KAFKA_PORT": str(ports["kafka"]),
            "LOCAL_STRIPE_PORT": str(ports["stripe"]),
            "WORKER_METRICS_PORT": str(ports["m1"]),
            "READS_METRICS_PORT": str(ports["m2"]),
            "RELAY_METRICS_PORT": str(ports["m3"]),
            "SOCKET_PORT": str(ports["sockets"]),
        }
    )
    return env


def start(copy: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        # Its own process group, like a terminal's foreground job: Ctrl-C goes to the whole group.
        return subprocess.Popen(
            ["make", "run"], cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "is ready" in text:
            return re.search(r"API key\s+(\S+)", text).group(1)
        assert proc.poll() is None, text[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"not ready in {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


def ctrl_c(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(90)


def leftovers(copy: Path, ports: dict[str, int]) -> list[str]:
    """Processes still running from the copy, and ports still listening."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if str(copy) in cmdline or cwd.startswith(str(copy)):
                found.append(f"{entry.name}: {cmdline[:120]}")
    found += [f"port {name} {port}" for name, port in ports.items() if services.port_open(port)]
    return found


def test_make_run_demo_stop_and_restart_keeps_the_data(copy, tmp_path):
    ports = {name: services.free_port() for name in ("api", "redis", "kafka", "stripe", "m1", "m2", "m3", "sockets")}
    env = clean_env(ports)
    base = f"http://127.0.0.1:{ports['api']}"
    first_log = tmp_path / "run-1.log"
    proc = start(copy, env, first_log)
    try:
        api_key = wait_ready(proc, first_log)  # how soon is the bench's to measure, not a test's
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        demo = subprocess.run(["make", "demo"], cwd=copy, env=env, capture_output=True, text=True, timeout=180)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "== REST" in demo.stdout and "== Kafka" in demo.stdout and "demo finished" in demo.stdout
        intent_id = re.search(r"paid\s+(vypi_\w+)", demo.stdout).group(1)
        # The third run, the platform's checkout: the web app's cart and confirm over Socket.IO authorise, the order
        # service's capture over Kafka pays, and PaymentSucceeded reaches the order service.
        assert "== Platform" in demo.stdout
        checkout_id = re.search(r"checkout\s+(vypi_\w+)\s+29\.99 USD", demo.stdout).group(1)
        assert re.search(r"confirmed\s+success=True\s+requires_capture", demo.stdout), demo.stdout
        assert re.search(r"capture\s+sent by the order service under OrderService-\d{13}-0\.\d+", demo.stdout)
        assert re.search(rf"PaymentSucceeded\s+consumed: paymentIntentId {checkout_id}", demo.stdout), demo.stdout
        assert re.search(r"pushed\s+to the web app's socket: .*succeeded", demo.stdout), demo.stdout
        # The Socket.IO door: a browser's token from the API, a socket that reads the demo's payment, the demo page.
        sockets = f"http://127.0.0.1:{ports['sockets']}"
        assert f"{sockets}/demo/" in first_log.read_text()
        services.wait_until(lambda: requests.get(f"{sockets}/readyz", timeout=2).ok, 60, "the Socket.IO door")
        auth = {"Authorization": f"Bearer {api_key}"}
        owner = requests.get(f"{base}/payment-intents/{intent_id}", headers=auth, timeout=60).json()["customerId"]
        paid = requests.get(f"{base}/payment-intents/{checkout_id}", headers=auth, timeout=60).json()
        assert (paid["status"], paid["amountReceived"], paid["captureMethod"]) == ("succeeded", 2999, "manual")
        assert [a["operation"] for a in paid["attempts"]] == ["confirm", "capture"]  # captured once
        token = requests.post(f"{base}/socket-tokens", json={"customerId": owner}, headers=auth, timeout=30).json()
        browser = SocketClient(sockets, token=token["token"]).connect()
        try:
            status = browser.call("get-payment-intent-status", {"paymentIntentId": intent_id})
            assert status["response"]["status"] == "succeeded", status
        finally:
            browser.close()
        assert requests.get(f"{sockets}/demo/", timeout=10).status_code == 200  # test keys: the demo page is on
        # Redis is the broker here: the operator page reads its queues (kombu refuses a passive declare of an empty
        # Redis queue, and the page said the broker did not answer).
        ops = requests.get(f"{base}/ops/", headers=auth, timeout=60)
        assert ops.status_code == 200 and 'id="queues"' in ops.text
        assert "unknown: the broker does not answer" not in ops.text
        assert re.search(r"<td>payments</td><td class=\"n\">\d+</td>", ops.text), ops.text
        # `payments` from a second terminal, with no settings either, reaches the very services `make run` started.
        check = subprocess.run(
            [str(copy / ".venv" / "bin" / "python"), "-c", "from cli import main; main()", "check"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        for dependency in ("database", "broker", "worker", "stripe", "kafka"):
            assert re.search(rf"^{dependency}\s+ok", check.stdout, flags=re.M), check.stdout
    finally:
        ctrl_c(proc)
    assert leftovers(copy, ports) == []
    assert (copy / "var" / "payments.sqlite3").exists()

    second_log = tmp_path / "run-2.log"
    proc = start(copy, env, second_log)
    try:
        assert wait_ready(proc, second_log) == api_key
        again = requests.get(
            f"{base}/payment-intents/{intent_id}", headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        )
        assert again.status_code == 200 and again.json()["amountRefunded"] == 1000
    finally:
        ctrl_c(proc)
    assert leftovers(copy, ports) == []


def test_make_run_installs_only_what_running_needs_after_checking_python_and_make_test_adds_the_tools(tmp_path):
    for name in (
        "Makefile",
        "requirements.lock",
        "requirements-dev.lock",
        "requirements-checkov.lock",
        "pyproject.toml",
    ):
        shutil.copy(ROOT / name, tmp_path / name)
    # As from a terminal, not as a sub-make of `make test` (which would print "Entering directory" lines).
    alone = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    dry = ["make", "--no-print-directory", "-n"]
    run = subprocess.run([*dry, "run"], cwd=tmp_path, env=alone, capture_output=True, text=True, timeout=60).stdout
    lines = run.splitlines()
    assert "sys.version_info >= (3, 11)" in lines[0]  # the Python version is checked before anything
    assert any("--require-hashes -r requirements.lock" in line for line in lines)
    assert "requirements-dev" not in run and lines[-1].endswith("-m stand_ins.run")
    test = subprocess.run([*dry, "test"], cwd=tmp_path, env=alone, capture_output=True, text=True, timeout=60).stdout
    assert "--require-hashes -r requirements-dev.lock" in test and "-m pytest" in test
    # checkov in its own virtualenv, from its own hashed lock; `make run` never installs it.
    assert "--require-hashes -r requirements-checkov.lock" in test and "checkov" not in run


def test_the_procfile_assumes_no_virtualenv_and_beat_makes_its_folder():
    procfile = (ROOT / "Procfile").read_text()
    commands = [line.split(":", 1)[1] for line in procfile.splitlines() if line and not line.startswith("#")]
    assert commands and not any(".venv" in command for command in commands)
    assert "mkdir -p var &&" in next(c for c in commands if "celery -A tasks.app beat" in c)


def test_a_port_taken_by_another_program_is_named_before_a_stand_in_starts(tmp_path):
    import socket as sockets

    from stand_ins import local

    with sockets.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(local.StandInFailed) as refused:
            local.start_redis(port, tmp_path / "redis")
    assert f"port {port}" in str(refused.value) and "LOCAL_REDIS_PORT" in str(refused.value)


def test_a_stand_in_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    from stand_ins import local

    log = tmp_path / "dead.log"
    proc = subprocess.Popen(["sh", "-c", "echo broken >&2; exit 3"], stderr=open(log, "wb"))
    with pytest.raises(local.StandInFailed) as failed:
        local.wait_for(lambda: False, 10, "a stand-in", proc, log)
    assert "exited with code 3" in str(failed.value) and str(log) in str(failed.value)
