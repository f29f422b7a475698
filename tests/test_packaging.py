"""`pip install .` makes a working service: its packages, its templates and static files, and the `payments` command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pip_install_dot_in_a_fresh_venv_gives_a_working_payments_command_and_every_file(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "var", "build", "__pycache__", "*.egg-info", ".*_cache"),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # Requirements and the build backend (setuptools, locked in requirements-dev.lock) from this run's environment:
    # built without isolation and without an index, so the test never reaches the network; what is installed is ours.
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "requirements-from-the-test-venv.pth").write_text(ours + "\n")
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    elsewhere = tmp_path / "elsewhere"  # not the source folder: only the installed package can answer
    elsewhere.mkdir()
    version = subprocess.run(
        [str(venv / "bin" / "payments"), "--version"], cwd=elsewhere, capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("payments, version "), version.stdout + version.stderr
    files = subprocess.run(
        [
            str(python),
            "-c",
            "import api, socket_door, pathlib; print(pathlib.Path(api.__file__).parent.parent); "
            "print((pathlib.Path(api.__file__).parent / 'templates/ops/index.html').is_file(), "
            "(pathlib.Path(socket_door.__file__).parent / 'static/vendor/socket.io.min.js').is_file())",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where, found = files.stdout.splitlines()
    assert Path(where).is_relative_to(site) and found == "True True", files.stdout + files.stderr
