"""The benchmark's smoke mode runs in the suite, so the harness cannot rot; no timing is asserted here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from bench.workloads import WORKLOADS, phases
from tests.support.services import MARIADB

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


# Issue 27's original service needs npm and a build (network, minutes): the smoke run leaves it out, and no other.
BUILT_BASELINES = {"B-nestjs"}


def test_smoke_run_answers_every_workload_and_baseline_then_drops_its_database(tmp_path):
    env = {**os.environ, "VYP_BENCH_LOG_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=150
    )
    assert result.returncode == 0, result.stderr[-4000:]
    expected = set(WORKLOADS) - BUILT_BASELINES
    assert {n for p in phases(("amqp",), None, variants=False, original=False) for n in p.workloads} == expected
    assert f"smoke: {len(expected)} workloads answered" in result.stdout
    assert "nestjs" not in result.stderr  # nothing of the original was built or started
    for name in expected:
        assert re.search(rf"^\s+{re.escape(name)}\s+4/s", result.stderr, re.M), f"{name} did not run"
    database = re.search(r"database (vyp_bench_\w+)", result.stderr).group(1)
    conn = pymysql.connect(**MARIADB)
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (database,))
        assert cur.fetchall() == (), "the run's database was left behind"
    conn.close()
