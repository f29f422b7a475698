"""The locks (requirements*.lock) `make run` and `make test` install from: every pin of the requirement files, every
file's hash, and what a fresh resolution gives (so a lock not made again after a change fails here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.M)


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    return {normal(name): version for name, version in PIN.findall(path.read_text())}


def locked(path: Path) -> dict[str, str]:
    """name → version of a lock; each entry must carry at least one sha256."""
    text = path.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    found = {}
    for entry in entries:
        match = PIN.match(entry)
        assert match, entry[:80]
        assert "--hash=sha256:" in entry, f"{match.group(1)} has no hash"
        found[normal(match.group(1))] = match.group(2)
    return found


def test_each_lock_holds_every_pin_of_its_requirements_with_hashes():
    runtime, dev = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-dev.lock")
    wanted = pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-local.txt")
    assert {name: runtime.get(name) for name in wanted} == wanted
    dev_wanted = wanted | pins(ROOT / "requirements-dev.txt")
    assert {name: dev.get(name) for name in dev_wanted} == dev_wanted
    assert {name: dev.get(name) for name in runtime} == runtime  # the tools never change what runs


def test_the_locks_are_what_resolving_the_requirements_gives_now(tmp_path):
    uv = Path(sys.executable).parent / "uv"
    for lock, sources in (
        ("requirements.lock", ["requirements.txt", "requirements-local.txt"]),
        ("requirements-dev.lock", ["requirements-dev.txt"]),
    ):
        fresh = tmp_path / lock
        made = subprocess.run(
            [
                str(uv),
                "pip",
                "compile",
                "--quiet",
                "--generate-hashes",
                "--python-version",
                "3.11",
                *sources,
                "-o",
                str(fresh),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert made.returncode == 0, made.stderr
        assert locked(fresh) == locked(ROOT / lock), f"{lock} is stale: run `make lock`"
