"""The operator commands: epoch bump and key management."""

from __future__ import annotations

import hashlib
import re
import tomllib

from tests.conftest import SIGNING_KEYS


def test_epoch_bump_needs_a_reason_and_bumps(service_app):
    runner = service_app.test_cli_runner()
    assert runner.invoke(args=["epoch", "bump"]).exit_code != 0
    result = runner.invoke(args=["epoch", "bump", "--reason", "key leaked"])
    assert result.exit_code == 0
    assert service_app.extensions["store"].epoch().epoch == 2
    event = service_app.extensions["store"].audit_events(limit=1)[0]
    assert (event.action, event.actor, event.detail["reason"]) == (
        "epoch.bump",
        "cli",
        "key leaked",
    )


def test_keys_list_shows_ids_and_names_never_secrets(service_app):
    result = service_app.test_cli_runner().invoke(args=["keys", "list"])
    assert result.exit_code == 0
    assert "signing key k1 (active" in result.output
    assert "API key issuer-key: roles issuer" in result.output
    for secret in SIGNING_KEYS.values():
        assert secret not in result.output


def test_keys_new_prints_a_valid_signing_key_line(service_app):
    result = service_app.test_cli_runner().invoke(args=["keys", "new", "--kid", "2026-12"])
    assert result.exit_code == 0
    line = result.stdout.strip().splitlines()[0]
    table = tomllib.loads(f"[SIGNING_KEYS]\n{line}")["SIGNING_KEYS"]
    assert len(table["2026-12"].encode()) >= 48


def test_keys_rotate_prints_config_with_new_active_key_and_old_ids(service_app):
    result = service_app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0
    text = result.stdout.replace("<keep the current secret of k1>", "x" * 40).replace(
        "<keep the current secret of k2>", "y" * 40
    )
    config = tomllib.loads(text)
    assert config["ACTIVE_KEY_ID"] in config["SIGNING_KEYS"]
    assert {"k1", "k2"} <= set(config["SIGNING_KEYS"])
    assert "remove the old keys after" in result.output
    for secret in SIGNING_KEYS.values():
        assert secret not in result.output


def test_keys_api_key_prints_a_key_whose_digest_is_in_the_config_line(service_app):
    result = service_app.test_cli_runner().invoke(
        args=["keys", "api-key", "--name", "mail-helper", "--role", "issuer"]
    )
    assert result.exit_code == 0
    key = re.search(r"it is not stored anywhere\): (\S+)", result.output).group(1)
    entry = tomllib.loads(f"[API_KEYS]\n{result.stdout.strip()}")["API_KEYS"]["mail-helper"]
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert entry["roles"] == ["issuer"]
