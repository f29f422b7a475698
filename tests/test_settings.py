"""Settings come from the environment through python-decouple, in one module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playhouse.pool import PooledMySQLDatabase

import settings as settings_module
from models.base import make_database, mysql_connect_params

ROOT = Path(__file__).resolve().parents[1]


def env_example_names() -> set[str]:
    return {
        line.split("=", 1)[0]
        for line in (ROOT / ".env-example").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    }


def settings_names() -> set[str]:
    named = set(re.findall(r'config\(\s*"([A-Z_]+)"', (ROOT / "settings.py").read_text()))
    # The event topics' names are read from one table (own topic, the PRD's topic per type).
    for own, platform in settings_module.EVENT_TOPIC_SETTINGS.values():
        named |= {own[0]} | ({platform[0]} if platform else set())
    return named


def test_env_example_lists_exactly_the_variables_settings_reads():
    assert env_example_names() == settings_names()


def test_env_example_defaults_are_safe_no_real_secrets():
    text = (ROOT / ".env-example").read_text()
    assert not re.search(r"sk_live_|rk_live_|whsec_[A-Za-z0-9]{20,}", text)


def test_no_module_but_settings_reads_the_environment():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if any(part in {".venv", "tests", "bench"} for part in path.parts) or path.name == "settings.py":
            continue
        # Writing a variable for a library (gunicorn.conf.py) is allowed; reading one is not.
        if re.search(r"os\.getenv|os\.environ(?!\[[^\]]+\]\s*=[^=])|decouple", path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_platform_names_are_read(monkeypatch):
    monkeypatch.setenv("APP_PORT", "9123")
    monkeypatch.setenv("LOG_STREAM_LEVEL", "DebugMedium")
    monkeypatch.setenv("API_KEYS", "a, b,,c")
    monkeypatch.setenv("REST_TIMEOUT", "1500")
    loaded = settings_module.load_settings()
    assert (loaded.app_port, loaded.log_stream_level, loaded.api_keys, loaded.rest_timeout_ms) == (
        9123,
        10,
        ("a", "b", "c"),
        1500,
    )


def test_event_topics_are_comma_separated_lists_beside_the_prds_names_and_empty_turns_one_off(monkeypatch):
    default = settings_module.load_settings()
    assert default.event_routes["succeeded-payment"] == (
        ("succeeded-payment", "service"),
        ("PaymentSucceeded", "platform"),
    )
    assert default.event_routes["payment-status-changed"] == (("payment-status-changed", "service"),)
    monkeypatch.setenv("EVENT_TOPIC_SUCCEEDED_PAYMENT", " succeeded-payment, payments.succeeded ,")
    monkeypatch.setenv("EVENT_TOPIC_PAYMENT_FAILED", "")
    monkeypatch.setenv("EVENT_TOPIC_CREATED_REFUND", "")
    loaded = settings_module.load_settings()
    assert loaded.event_routes["succeeded-payment"] == (
        ("succeeded-payment", "service"),
        ("payments.succeeded", "service"),
        ("PaymentSucceeded", "platform"),
    )
    assert loaded.event_routes["failed-payment"] == (("failed-payment", "service"),)
    assert loaded.event_routes["created-refund"] == (("RefundCreated", "platform"),)
    assert loaded.event_topics["created-refund"] == ""  # no own topic: a reader of one has none
    assert "PaymentFailed" not in loaded.published_event_topics and "PaymentFailed" in default.published_event_topics


def test_numeric_log_level_is_accepted(monkeypatch):
    monkeypatch.setenv("LOG_STREAM_LEVEL", "-1")
    assert settings_module.load_settings().log_stream_level == -1


def test_sqlite_stands_in_when_tidb_host_is_empty(monkeypatch, tmp_path):
    monkeypatch.setenv("TIDB_HOST", "")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "x.sqlite3"))
    loaded = settings_module.load_settings()
    assert loaded.uses_sqlite
    assert type(make_database(loaded)).__name__ == "SqliteDatabase"


def test_tidb_gets_a_pool_and_tls_that_verifies_certificate_and_host(monkeypatch):
    monkeypatch.setenv("TIDB_HOST", "gateway.tidb.example")
    monkeypatch.setenv("TIDB_ENABLE_SSL", "true")
    monkeypatch.setenv("TIDB_CA_PATH", "/etc/ssl/tidb-ca.pem")
    loaded = settings_module.load_settings()
    params = mysql_connect_params(loaded)
    assert params["ssl_verify_cert"] is True and params["ssl_verify_identity"] is True
    assert params["ssl_ca"] == "/etc/ssl/tidb-ca.pem"
    assert "ssl_disabled" not in params
    db = make_database(loaded)
    assert isinstance(db, PooledMySQLDatabase)


def test_tls_is_off_unless_enabled_and_no_tls_context_is_built_when_off(monkeypatch):
    monkeypatch.setenv("TIDB_HOST", "127.0.0.1")
    monkeypatch.setenv("TIDB_ENABLE_SSL", "false")
    params = mysql_connect_params(settings_module.load_settings())
    assert "ssl_verify_cert" not in params
    # PyMySQL would otherwise build a default TLS context for every connection (bench/FINDINGS.md, P6).
    assert params["ssl_disabled"] is True


@pytest.mark.parametrize(("broker", "backend"), [("redis://r:6379/0", "redis://r:6379/0"), ("amqp://g@h//", "rpc://")])
def test_results_default_to_the_broker_when_redis_else_rpc(monkeypatch, broker, backend):
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "")
    assert settings_module.load_settings().result_backend == backend


def test_empty_settings_name_the_local_services_make_run_starts_and_never_real_stripe(monkeypatch):
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "STRIPE_SECRET_KEY", "STRIPE_API_BASE"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("LOCAL_REDIS_PORT", "6555")
    monkeypatch.setenv("LOCAL_STRIPE_PORT", "8555")
    local = settings_module.load_settings()
    assert (local.broker_url, local.result_backend) == ("redis://127.0.0.1:6555/0", "redis://127.0.0.1:6555/1")
    assert local.stripe_api_url == "http://127.0.0.1:8555"  # no key: the local stand-in, never Stripe itself
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_x")
    assert settings_module.load_settings().stripe_api_url == "https://api.stripe.com"
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9999")
    assert settings_module.load_settings().stripe_api_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize(
    ("key", "setting", "per_s"),
    [
        ("sk_live_x", "", 100),
        ("rk_live_x", "", 100),
        ("sk_test_x", "", 25),
        ("rk_test_x", "", 25),
        ("", "", 25),  # no key: the local stand-in, in test mode
        ("sk_live_x", "40", 40),
        ("sk_live_x", "0", 0),
    ],
)
def test_stripe_is_paced_at_the_setting_else_at_stripes_default_for_the_keys_mode(monkeypatch, key, setting, per_s):
    monkeypatch.setenv("STRIPE_SECRET_KEY", key)
    monkeypatch.setenv("STRIPE_RATE_LIMIT", setting)
    assert settings_module.load_settings().stripe_calls_per_s == per_s


def readme_configuration() -> dict[str, str]:
    """The README's configuration table: variable → default."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", (ROOT / "README.md").read_text(), flags=re.M)
    return {name: "" if default.strip() == "*(empty)*" else default.strip().strip("`") for name, default in rows}


def env_example_defaults() -> dict[str, str]:
    lines = (ROOT / ".env-example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))


def test_readme_configuration_table_matches_env_example():
    assert readme_configuration() == env_example_defaults()


def test_pyproject_declares_the_runtime_requirements_with_their_pins():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert declared == pinned
    assert any(d.startswith("click==") for d in declared)  # the `payments` command's own


def test_pyproject_offers_the_stand_ins_as_an_extra_with_requirements_local_pins():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    pinned = [
        line.strip()
        for line in (ROOT / "requirements-local.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert declared == pinned


def test_deptry_finds_no_missing_unused_or_transitive_dependency():
    import subprocess
    import sys

    deptry = Path(sys.executable).parent / "deptry"
    found = subprocess.run([str(deptry), "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stdout + found.stderr


def test_payments_reports_its_version():
    from importlib import metadata

    from click.testing import CliRunner

    from cli import main

    answer = CliRunner().invoke(main, ["--version"])
    assert (
        answer.exit_code == 0
        and answer.output.strip() == f"payments, version {metadata.version('vy-finance-payments')}"
    )
