"""The Dockerfile, checked without a Docker engine: parsed with dockerfile-parse, scanned with checkov."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from dockerfile_parse import DockerfileParser

from tests.support.deployment import ROOT, procfile, run_checkov

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|make|build-essential|apt-get|apk|pip install|uv pip install)\b")


@pytest.fixture(scope="module")
def stages() -> list[list[dict]]:
    """The Dockerfile's instructions, one list per stage (FROM … up to the next FROM)."""
    found: list[list[dict]] = []
    for instruction in DockerfileParser(str(ROOT / "Dockerfile")).structure:
        if instruction["instruction"] == "FROM":
            found.append([])
        if found and instruction["instruction"] != "COMMENT":
            found[-1].append(instruction)
    return found


def values(stage: list[dict], kind: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == kind]


def test_the_image_is_built_in_stages_and_the_last_copies_the_built_virtualenv_from_the_first(stages):
    assert len(stages) >= 2
    assert values(stages[0], "FROM")[0].endswith(" AS build")
    assert any(v.startswith("--from=build /opt/venv") for v in values(stages[-1], "COPY"))


def test_the_runtime_is_installed_from_the_hashed_lock_and_no_package_cache_is_kept(stages):
    installs = [v for v in values(stages[0], "RUN") if "install" in v]
    assert any("--require-hashes" in v and "-c requirements.lock" in v for v in installs), installs
    assert all("--no-cache" in part for v in installs for part in v.split("&&") if " install " in part), installs


def test_the_line_that_takes_uv_from_the_dev_lock_yields_uv_with_its_hashes(stages):
    # The build runs this awk on requirements-dev.lock; here on the lock of this checkout.
    awk = next(v for v in values(stages[0], "RUN") if v.startswith("awk "))
    program = re.match(r"awk '([^']*)'", awk).group(1)
    taken = subprocess.run(
        ["awk", program, "requirements-dev.lock"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert re.match(r"uv==[\d.]+ \\\n", taken) and taken.count("--hash=sha256:") >= 1
    assert len(re.findall(r"^\S", taken, re.M)) == 1  # uv alone, not the package after it


def test_the_final_stage_installs_nothing_and_runs_as_an_unprivileged_user(stages):
    final = stages[-1]
    assert not any(BUILD_TOOLS.search(v) for v in values(final, "RUN")), values(final, "RUN")
    user = values(final, "USER")[-1]
    assert user.split(":")[0] not in {"0", "root"} and int(user.split(":")[0]) >= 10000
    # The positive control: the build stage's install lines are what the pattern catches.
    assert any(BUILD_TOOLS.search(v) for v in values(stages[0], "RUN"))


def test_the_web_process_has_a_healthcheck_on_healthz_and_is_the_default_command(stages):
    final = stages[-1]
    (healthcheck,) = values(final, "HEALTHCHECK")
    assert "/healthz" in healthcheck and "APP_PORT" in healthcheck
    web = procfile()["web"]
    assert json.loads(values(final, "CMD")[-1]) == ["python", "-m", web.module, *web.args]


def test_every_procfile_process_is_a_python_m_entry_point_of_the_one_image():
    processes = procfile()
    assert {"web", "worker", "reads", "relay", "publisher", "sockets", "beat"} <= set(processes)
    assert all(p.module for p in processes.values())


def test_the_build_context_leaves_out_the_local_environment_and_the_tests():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".env", "var", "tests", ".git"} <= ignored


def test_checkov_passes_the_dockerfile():
    scan = run_checkov("-f", "Dockerfile", "--framework", "dockerfile")
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", scan.stdout), scan.stdout


def test_checkov_fails_a_dockerfile_that_runs_as_root_without_a_healthcheck(tmp_path):
    # The positive control of the check above: checkov here does see what it is there to see.
    (tmp_path / "Dockerfile").write_text('FROM python:3.11-slim-bookworm\nCMD ["python"]\n')
    scan = run_checkov("-f", str(tmp_path / "Dockerfile"), "--framework", "dockerfile")
    assert scan.returncode != 0 and "CKV_DOCKER_2" in scan.stdout and "CKV_DOCKER_3" in scan.stdout
