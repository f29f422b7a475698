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


LOCKS = {
    "requirements.lock": ["requirements.txt", "requirements-local.txt"],
    "requirements-dev.lock": ["requirements-dev.txt"],
    "requirements-checkov.lock": ["requirements-checkov.txt"],
}
INDEX_DATE = re.compile(r"--exclude-newer (\S+)")


def index_date(lock: Path) -> str:
    """The moment of the package index a lock was resolved against, as `make lock` wrote it in the lock's header."""
    header = lock.read_text().split("\n", 2)[1]
    found = INDEX_DATE.search(header)
    assert found, f"{lock.name} records no --exclude-newer date: run `make lock`"
    return found.group(1)


def resolve(sources: list[str], cwd: Path, date: str, out: Path) -> dict[str, str]:
    """What uv resolves from `sources` with the index as of `date` (a fresh file: no earlier pins preferred)."""
    uv = Path(sys.executable).parent / "uv"
    command = [str(uv), "pip", "compile", "--quiet", "--generate-hashes", "--python-version", "3.11"]
    made = subprocess.run(
        [*command, "--exclude-newer", date, *sources, "-o", str(out)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    return locked(out)


def test_each_lock_was_made_by_make_lock_from_its_requirement_files_at_a_recorded_index_date():
    for lock, sources in LOCKS.items():
        header = (ROOT / lock).read_text().split("\n", 2)[1]
        assert header.split()[-len(sources) - 2 : -2] == sources, header
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", index_date(ROOT / lock))


def test_the_locks_are_what_resolving_the_requirements_gives_at_the_locks_index_date(tmp_path):
    # Resolved as of the date in the lock's header: a release published later never makes this fail.
    for lock, sources in LOCKS.items():
        fresh = resolve(sources, ROOT, index_date(ROOT / lock), tmp_path / lock)
        assert fresh == locked(ROOT / lock), f"{lock} is stale: a requirement file changed, run `make lock`"


def test_a_requirement_edited_by_hand_without_make_lock_fails_the_check(tmp_path):
    # The positive control of the test above: the same resolution on an edited copy no longer matches the lock.
    for name in ("requirements.txt", "requirements-local.txt", "requirements-dev.txt"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    with (tmp_path / "requirements.txt").open("a") as file:
        file.write("six==1.16.0\n")
    date = index_date(ROOT / "requirements.lock")
    fresh = resolve(LOCKS["requirements.lock"], tmp_path, date, tmp_path / "out.lock")
    assert fresh != locked(ROOT / "requirements.lock") and fresh["six"] == "1.16.0"
