"""Start-up configuration: sources in order, and every refusal names its setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service import close_app, create_app
from service.errors import ConfigError
from tests.conftest import (
    API_KEYS,
    SIGNING_KEYS,
    api_keys_config,
    production_config,
    sqlite_url,
)


@pytest.fixture
def base(tmp_path) -> dict:
    config = production_config(sqlite_url(tmp_path))
    del config["ACTIVE_KEY_ID"]  # its default is under test
    return config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("SERVICE_CONFIG", "LINKS_ENV", "LINKS_STORE_URL", "LINKS_LEEWAY_SECONDS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_contract(base):
    deployment = create_app(base).extensions["deployment"]
    assert deployment.token_param == "auto_login"
    assert deployment.max_ttl_seconds == 604800
    assert deployment.leeway_seconds == 30
    assert deployment.signin_log is True
    assert deployment.log_retention_days == 90
    assert deployment.active_key_id == "k1"
    assert deployment.algorithm == "HS256"


@pytest.mark.parametrize(
    ("change", "setting"),
    (
        ({"SIGNING_KEYS": None}, "SIGNING_KEYS"),
        ({"SIGNING_KEYS": {"k1": "short"}}, "SIGNING_KEYS['k1'] is 5 bytes"),
        ({"SIGNING_KEYS": {"bad/kid": "x" * 40}}, "SIGNING_KEYS"),
        ({"SIGNING_KEYS": {"k1": '{"kty": "oct", "k": "' + "A" * 40 + '"}'}}, "looks like"),
        (
            {
                "SIGNING_KEYS": {
                    "k1": "-----BEGIN PUBLIC KEY-----\n" + "A" * 40 + "\n-----END PUBLIC KEY-----"
                }
            },
            "looks like",
        ),
        ({"ACTIVE_KEY_ID": "k9"}, "ACTIVE_KEY_ID"),
        ({"API_KEYS": None}, "API_KEYS"),
        ({"API_KEYS": {"x": {"sha256": "abc", "roles": ["issuer"]}}}, "API_KEYS['x'].sha256"),
        ({"API_KEYS": {"x": {"sha256": "a" * 64, "roles": ["root"]}}}, "API_KEYS['x'].roles"),
        ({"MAX_TOKEN_TTL_SECONDS": 604801}, "MAX_TOKEN_TTL_SECONDS"),
        ({"MAX_TOKEN_TTL_SECONDS": "a week"}, "MAX_TOKEN_TTL_SECONDS"),
        ({"LEEWAY_SECONDS": -1}, "LEEWAY_SECONDS"),
        ({"PORTAL_BASE_URL": None}, "PORTAL_BASE_URL"),
        ({"PORTAL_BASE_URL": "http://portal.example.com"}, "PORTAL_BASE_URL must use https"),
        ({"PORTAL_BASE_URL": "ftp://portal"}, "PORTAL_BASE_URL"),
        ({"ENV": "staging"}, "ENV"),
        ({"STORE_URL": "postgres://db/links"}, "STORE_URL"),
        ({"STORE_URL": "sqlite:///:memory:"}, "STORE_URL"),
        ({"STORE_URL": "sqlite:////proc/no/such/dir/store.db"}, "STORE_URL"),
        ({"TOKEN_ALGORITHM": "RS256"}, "TOKEN_ALGORITHM"),
        ({"TOKEN_ALGORITHM": "HS512"}, "HS512 needs at least 64"),
        ({"SIGNIN_LOG": "maybe"}, "SIGNIN_LOG"),
    ),
)
def test_bad_setting_stops_the_start_naming_it(base, change, setting):
    with pytest.raises(ConfigError) as exc_info:
        create_app({**base, **change})
    assert setting in str(exc_info.value)
    assert "\n" not in str(exc_info.value)


LONG_KID = "a" * 12  # with HS256 and the default issuer and audience, one too many


@pytest.mark.parametrize(
    "change",
    (
        {"SIGNING_KEYS": {LONG_KID: "s" * 48}, "ACTIVE_KEY_ID": LONG_KID},
        {"SIGNING_KEYS": {"k1": "s" * 64}, "TOKEN_ALGORITHM": "HS512"},
        # Since tokens carry the epoch's identity (eid), HS384's longer
        # signature needs a shorter issuer or audience than the defaults.
        {"SIGNING_KEYS": {"k1": "s" * 48}, "TOKEN_ALGORITHM": "HS384"},
        {"TOKEN_ISSUER": "https://autologin.helpdesk.example.com/links"},
    ),
)
def test_settings_making_tokens_longer_than_the_contract_allows_stop_the_start(base, change):
    with pytest.raises(ConfigError) as exc_info:
        create_app({**base, **change})
    message = str(exc_info.value)
    assert "over the 512" in message and "ACTIVE_KEY_ID" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "change",
    (
        {"SIGNING_KEYS": {LONG_KID[:-1]: "s" * 48}, "ACTIVE_KEY_ID": LONG_KID[:-1]},
        {
            "SIGNING_KEYS": {"k1": "s" * 48},
            "TOKEN_ALGORITHM": "HS384",
            "TOKEN_ISSUER": "autologin",
            "TOKEN_AUDIENCE": "portal",
        },
    ),
)
def test_settings_at_the_contracts_token_length_start(base, change):
    app = create_app({**base, **change})
    close_app(app)


def test_config_error_never_echoes_a_secret(base):
    with pytest.raises(ConfigError) as exc_info:
        create_app({**base, "SIGNING_KEYS": {"k1": "short-secret"}})
    assert "short-secret" not in str(exc_info.value)


def test_store_that_is_not_a_database_stops_the_start(base, tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a sqlite file at all" * 100)
    with pytest.raises(ConfigError) as exc_info:
        create_app({**base, "STORE_URL": f"sqlite:///{path}"})
    assert "STORE_URL" in str(exc_info.value)


def test_service_config_file_then_env_then_test_config(base, tmp_path, monkeypatch):
    toml = tmp_path / "service.toml"
    toml.write_text("LEEWAY_SECONDS = 10\nLOG_RETENTION_DAYS = 7\nSIGNIN_LOG = false\n")
    monkeypatch.setenv("SERVICE_CONFIG", str(toml))
    monkeypatch.setenv("LINKS_LEEWAY_SECONDS", "20")
    deployment = create_app({**base, "LOG_RETENTION_DAYS": 5}).extensions["deployment"]
    assert deployment.signin_log is False  # from the file
    assert deployment.leeway_seconds == 20  # env beats the file
    assert deployment.log_retention_days == 5  # test_config beats everything


def test_settings_of_digits_work_from_the_environment(base, monkeypatch):
    # from_prefixed_env reads values as JSON: LINKS_ACTIVE_KEY_ID=2026 is the number 2026.
    secret = "s" * 40
    del base["SIGNING_KEYS"]
    monkeypatch.setenv("LINKS_SIGNING_KEYS", json.dumps({"2025": secret, "2026": secret + "x"}))
    monkeypatch.setenv("LINKS_ACTIVE_KEY_ID", "2026")
    monkeypatch.setenv("LINKS_TOKEN_AUDIENCE", "42")  # any string setting: the same
    app = create_app(base)
    try:
        assert app.extensions["ring"].active_key_id == "2026"
        assert app.extensions["ring"].audience == "42"
    finally:
        close_app(app)


def test_unreadable_service_config_names_it(base, tmp_path, monkeypatch):
    monkeypatch.setenv("SERVICE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="SERVICE_CONFIG"):
        create_app(base)


def test_invalid_toml_names_service_config(base, tmp_path, monkeypatch):
    toml = tmp_path / "bad.toml"
    toml.write_text("LEEWAY_SECONDS = = 3")
    monkeypatch.setenv("SERVICE_CONFIG", str(toml))
    with pytest.raises(ConfigError, match="SERVICE_CONFIG"):
        create_app(base)


def test_production_never_generates_keys(base, tmp_path):
    config = {k: v for k, v in base.items() if k not in ("SIGNING_KEYS", "API_KEYS")}
    with pytest.raises(ConfigError, match="SIGNING_KEYS"):
        create_app(config)


def test_development_generates_keys_once_and_prints_api_keys_once(tmp_path, capsys):
    config = {"ENV": "development", "STORE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    first = create_app(config, instance_path=str(tmp_path / "instance"))
    printed = capsys.readouterr().err
    keys = [line.split()[-1] for line in printed.splitlines() if line.startswith("  ")]
    assert len(keys) == 3
    assert "not in use" not in printed
    secrets_file = first.instance_path + "/dev-secrets.json"
    stored = json.loads(Path(secrets_file).read_text())
    # Only digests are kept: no plain API key lands on disk.
    for key in keys:
        assert key not in json.dumps(stored)
    second = create_app(config, instance_path=str(tmp_path / "instance"))
    assert capsys.readouterr().err == ""
    assert (
        second.extensions["deployment"].signing_keys == first.extensions["deployment"].signing_keys
    )
    # The printed keys really authenticate.
    client = second.test_client()
    admin_key = next(k for k in keys if k.startswith("dev-admin-"))
    response = client.get("/v1/admin/settings", headers={"Authorization": f"Bearer {admin_key}"})
    assert response.status_code == 200


def test_development_portal_default_is_local(tmp_path):
    config = {
        "ENV": "development",
        "STORE_URL": f"sqlite:///{tmp_path / 's.db'}",
        "SIGNING_KEYS": dict(SIGNING_KEYS),
        "API_KEYS": api_keys_config(),
        "SECRET_KEY": "s" * 48,
    }
    app = create_app(config, instance_path=str(tmp_path / "instance"))
    assert app.extensions["deployment"].portal_base_url.startswith("http://")


def test_relative_sqlite_url_lands_in_the_instance_folder(base, tmp_path):
    app = create_app(
        {**base, "STORE_URL": "sqlite:///sub/links.db"}, instance_path=str(tmp_path / "inst")
    )
    assert app.extensions["store"].path == f"{app.instance_path}/sub/links.db"
    close_app(app)


def test_api_keys_are_held_as_digests_only(base):
    deployment = create_app(base).extensions["deployment"]
    plain = [key for key, _ in API_KEYS.values()]
    assert all(len(k.digest) == 32 for k in deployment.api_keys)
    assert not any(p.encode() in k.digest for p in plain for k in deployment.api_keys)


def test_production_example_documents_every_default_key_and_loads(project_root, tmp_path):
    import tomllib

    example = tomllib.loads((project_root / "config/production.example.toml").read_text())
    defaults = tomllib.loads((project_root / "config/default.toml").read_text())
    assert set(defaults) <= set(example)
    example["SIGNING_KEYS"] = {"2026-11": "s" * 48}
    example["API_KEYS"] = api_keys_config()
    example["STORE_URL"] = f"sqlite:///{tmp_path / 'store.db'}"
    deployment = create_app(example).extensions["deployment"]
    assert deployment.active_key_id == "2026-11"


def test_development_says_generated_api_keys_are_unused_when_api_keys_are_configured(
    tmp_path, capsys
):
    config = {
        "ENV": "development",
        "STORE_URL": f"sqlite:///{tmp_path / 's.db'}",
        "API_KEYS": api_keys_config(),  # SIGNING_KEYS and SECRET_KEY are generated
    }
    app = create_app(config, instance_path=str(tmp_path / "instance"))
    printed = capsys.readouterr().err
    generated = [line.split()[-1] for line in printed.splitlines() if line.startswith("  ")]

    assert "not in use now: API_KEYS is set in the configuration" in printed
    admin_key = next(k for k in generated if k.startswith("dev-admin-"))
    response = app.test_client().get(
        "/v1/admin/settings", headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert response.status_code == 401
    close_app(app)
