"""Who may open the operator page and who may act there: OPS_USERS people, API keys and their ops scopes."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from werkzeug.security import generate_password_hash

from api.ops_auth import ACT, READ, key_scopes, operator_of, ops_users, session_secret
from settings import get_settings

ALICE_HASH = generate_password_hash("alice-secret")
BOB_HASH = generate_password_hash("bob-secret")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture()
def settings():
    return dataclasses.replace(
        get_settings(),
        api_keys=("bare-key-0123", "support:support-key-4567", "monitor:monitor-key-89ab"),
        ops_users=(f"alice:{ALICE_HASH}:act", f"bob:{BOB_HASH}:read", "broken-entry", "eve:hash:admin"),
        ops_key_scopes=("support=ops:act", "monitor=ops:read", "odd=ops:everything"),
        ops_secret="",
    )


def test_ops_users_entries_keep_their_hash_with_its_colons_and_skip_malformed_ones(settings):
    users = ops_users(settings.ops_users)
    assert set(users) == {"alice", "bob"}  # "broken-entry" has no role, eve's role is not one
    assert users["alice"] == (ALICE_HASH, frozenset({READ, ACT})) and ":" in ALICE_HASH
    assert users["bob"][1] == frozenset({READ})


def test_a_person_of_ops_users_logs_in_with_their_password_and_gets_their_role(settings):
    alice = operator_of(basic("alice", "alice-secret"), settings)
    assert alice is not None and alice.name == "alice" and alice.can_act
    bob = operator_of(basic("bob", "bob-secret"), settings)
    assert bob is not None and bob.name == "bob" and not bob.can_act and bob.scopes == {READ}
    assert operator_of(basic("alice", "bob-secret"), settings) is None
    assert operator_of(basic("mallory", "alice-secret"), settings) is None
    assert operator_of("Basic !!not base64!!", settings) is None


def test_api_keys_keep_opening_the_page_read_only_unless_ops_key_scopes_grants_ops_act(settings):
    bare = operator_of("Bearer bare-key-0123", settings)
    assert bare is not None and bare.scopes == {READ} and bare.name.startswith("key:")
    support = operator_of("Bearer support-key-4567", settings)
    assert support is not None and support.name == "key:support" and support.can_act
    monitor = operator_of(basic("operator", "monitor-key-89ab"), settings)  # the key as a browser's password
    assert monitor is not None and monitor.name == "key:monitor" and not monitor.can_act
    as_user_name = operator_of(basic("support-key-4567", ""), settings)  # the key as the user name, as Stripe's
    assert as_user_name is not None and as_user_name.can_act
    assert operator_of("Bearer not-a-key", settings) is None


def test_ops_key_scopes_ignores_unknown_scopes_and_act_includes_read():
    assert key_scopes(("a=ops:act", "b=ops:read", "c=payments:write")) == {
        "a": frozenset({READ, ACT}),
        "b": frozenset({READ}),
    }


def test_the_session_secret_is_ops_secret_else_derived_and_empty_without_anything_to_derive_it_from(settings):
    derived = session_secret(settings)
    assert len(derived) == 64 and derived == session_secret(settings)
    assert session_secret(dataclasses.replace(settings, ops_secret="set-by-hand")) == "set-by-hand"
    assert session_secret(dataclasses.replace(settings, api_keys=(), ops_users=())) == ""
    assert "support-key-4567" not in derived


def test_payments_ops_user_prints_an_entry_that_logs_in(settings):
    from click.testing import CliRunner

    from cli import main

    made = CliRunner().invoke(main, ["ops-user", "carol", "--role", "act"], input="carol-pw\ncarol-pw\n")
    assert made.exit_code == 0, made.output
    entry = made.output.strip().splitlines()[-1]
    assert entry.startswith("carol:") and entry.endswith(":act") and "carol-pw" not in entry
    carol = operator_of(basic("carol", "carol-pw"), dataclasses.replace(settings, ops_users=(entry,)))
    assert carol is not None and carol.can_act
    assert CliRunner().invoke(main, ["ops-user", "no:colons"], input="x\nx\n").exit_code == 2


def test_a_passed_password_check_is_remembered_a_minute_and_a_wrong_password_never(settings, monkeypatch):
    import api.ops_auth as ops_auth

    checks: list[str] = []
    real = ops_auth.check_password_hash
    monkeypatch.setattr(ops_auth, "check_password_hash", lambda h, p: checks.append(p) or real(h, p))
    monkeypatch.setattr(ops_auth, "_verified", {})
    for _ in range(3):
        assert operator_of(basic("alice", "alice-secret"), settings) is not None
    assert checks == ["alice-secret"]  # one scrypt, then the remembered digest
    for _ in range(2):
        assert operator_of(basic("alice", "wrong"), settings) is None
    assert checks == ["alice-secret", "wrong", "wrong"]
    assert "alice-secret" not in repr(ops_auth._verified)
    # A changed entry (a new hash) is checked again.
    other = dataclasses.replace(settings, ops_users=(f"alice:{generate_password_hash('alice-secret')}:read",))
    assert not operator_of(basic("alice", "alice-secret"), other).can_act and len(checks) == 4
