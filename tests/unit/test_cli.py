"""The operator commands: epoch bump and key management."""

from __future__ import annotations

import hashlib
import re
import tomllib

import pytest

from service import create_app
from tests.conftest import SIGNING_KEYS


@pytest.fixture
def cli_app(tmp_path):
    from tests.conftest import PORTAL, api_keys_config

    app = create_app(
        {
            "ENV": "production",
            "PORTAL_BASE_URL": PORTAL,
            "STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "SIGNING_KEYS": dict(SIGNING_KEYS),
            "ACTIVE_KEY_ID": "k1",
            "API_KEYS": api_keys_config(),
            "SECRET_KEY": "s" * 48,
        }
    )
    yield app
    app.extensions["store"].close()


def test_epoch_bump_needs_a_reason_and_bumps(cli_app):
    runner = cli_app.test_cli_runner()
    assert runner.invoke(args=["epoch", "bump"]).exit_code != 0
    result = runner.invoke(args=["epoch", "bump", "--reason", "key leaked"])
    assert result.exit_code == 0
    assert cli_app.extensions["store"].epoch().epoch == 2
    event = cli_app.extensions["store"].audit_events(limit=1)[0]
    assert (event.action, event.actor, event.detail["reason"]) == (
        "epoch.bump",
        "cli",
        "key leaked",
    )


def test_keys_list_shows_ids_and_names_never_secrets(cli_app):
    result = cli_app.test_cli_runner().invoke(args=["keys", "list"])
    assert result.exit_code == 0
    assert "signing key k1 (active" in result.output
    assert "API key issuer-key: roles issuer" in result.output
    for secret in SIGNING_KEYS.values():
        assert secret not in result.output


def test_keys_new_prints_a_valid_signing_key_line(cli_app):
    result = cli_app.test_cli_runner().invoke(args=["keys", "new", "--kid", "2026-12"])
    assert result.exit_code == 0
    line = result.stdout.strip().splitlines()[0]
    table = tomllib.loads(f"[SIGNING_KEYS]\n{line}")["SIGNING_KEYS"]
    assert len(table["2026-12"].encode()) >= 48


def test_keys_rotate_prints_config_with_new_active_key_and_old_ids(cli_app):
    result = cli_app.test_cli_runner().invoke(args=["keys", "rotate"])
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


def test_keys_api_key_prints_a_key_whose_digest_is_in_the_config_line(cli_app):
    result = cli_app.test_cli_runner().invoke(
        args=["keys", "api-key", "--name", "mail-helper", "--role", "issuer"]
    )
    assert result.exit_code == 0
    key = re.search(r"it is not stored anywhere\): (\S+)", result.output).group(1)
    entry = tomllib.loads(f"[API_KEYS]\n{result.stdout.strip()}")["API_KEYS"]["mail-helper"]
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert entry["roles"] == ["issuer"]
