"""Load and validate the deployment settings.

Order (each later source wins): ``config/default.toml``, the TOML file named
by ``$SERVICE_CONFIG``, ``LINKS_<KEY>`` environment variables, then the
``test_config`` mapping. Validation happens once at start-up and fails with a
:class:`~service.errors.ConfigError` whose message names the setting and says
what to do; nothing here falls back to a built-in secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

from service.errors import ConfigError
from service.store.redis_urls import ha_scheme
from service.tokens import (
    CONTRACT_TARGET_CHARS,
    CONTRACT_TOKEN_CHARS,
    CONTRACT_USER_ID_CHARS,
    KeyRing,
    longest_token,
)

__all__ = [
    "ApiKey",
    "Deployment",
    "ROLES",
    "check_portal_base_url",
    "load_config",
    "validate_config",
]

ROLES = frozenset({"issuer", "portal", "admin"})
ALGORITHMS = ("HS256", "HS384", "HS512")
#: The hard ceiling of any link lifetime: 7 days.
TTL_CEILING_SECONDS = 7 * 24 * 3600
MIN_TTL_SECONDS = 60
MIN_SECRET_BYTES = 32
DEV_SECRETS_FILE = "dev-secrets.json"
DEV_PORTAL_BASE_URL = "http://127.0.0.1:8080"
_DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "default.toml"
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: A portal address: http(s), a DNS host name, an optional port, an optional
#: path of RFC 3986 characters; no user, query, fragment, space or control
#: character (the same pattern as PortalBaseUrl in service/openapi.json).
_PORTAL_URL = re.compile(
    r"(?P<scheme>https?)://[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::(?P<port>[0-9]{1,5}))?"
    r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)*"
)


@dataclass(frozen=True)
class ApiKey:
    """One caller's API key, known only by its SHA-256 digest."""

    name: str
    digest: bytes
    roles: frozenset[str]


@dataclass(frozen=True)
class Deployment:
    """Validated deployment settings, prepared once at start-up."""

    env: str
    portal_base_url: str
    token_param: str
    store_url: str
    store_options: Mapping[str, Any]
    signing_keys: Mapping[str, bytes]
    active_key_id: str
    algorithm: str
    issuer: str
    audience: str
    api_keys: tuple[ApiKey, ...]
    max_ttl_seconds: int
    default_ttl_seconds: int
    leeway_seconds: int
    signin_log: bool
    log_retention_days: int
    #: Flask's SECRET_KEY: signs admin console sessions, never a token.
    secret_key: bytes = field(repr=False)
    #: ``LINK_LEDGER``: keep every issued link in the ledger.
    link_ledger: bool
    console_idle_timeout_seconds: int
    #: Reverse proxies in front of the console whose X-Forwarded-For/-Proto are believed.
    console_trusted_proxies: int

    @property
    def development(self) -> bool:
        return self.env == "development"


def load_config(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Fill ``app.config`` from every source, in order."""
    app.config.from_file(str(_DEFAULTS_FILE), load=tomllib.load, text=False)
    path = os.environ.get("SERVICE_CONFIG")
    if path:
        try:
            app.config.from_file(os.path.abspath(path), load=tomllib.load, text=False)
        except OSError as e:
            raise ConfigError(f"SERVICE_CONFIG names {path!r}, which cannot be read: {e}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"SERVICE_CONFIG file {path!r} is not valid TOML: {e}") from e
    app.config.from_prefixed_env("LINKS")
    if test_config:
        app.config.from_mapping(test_config)


def _int(config: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = config.get(key)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{key} is {value}; it must be between {low} and {high}")
    return value


def _float(config: Mapping[str, Any], key: str) -> float:
    value = config.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 60:
        raise ConfigError(f"{key} must be a number of seconds above 0 and at most 60")
    return float(value)


def _bool(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key)
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
        value = value.lower() in {"true", "1"}
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {value!r}")
    return value


def _text(value: Any) -> Any:
    # LINKS_<KEY> values are read as JSON (from_prefixed_env): LINKS_ACTIVE_KEY_ID=2026
    # arrives as the number 2026. A whole number stands for its digits where a
    # string is meant.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _str(config: Mapping[str, Any], key: str) -> str:
    value = _text(config.get(key))
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string")
    return value.strip()


def _min_replicas_ack(config: Mapping[str, Any], store_url: str) -> int:
    """Return REDIS_MIN_REPLICAS_ACK: unset, 1 for Sentinel and Cluster URLs, else 0."""
    if config.get("REDIS_MIN_REPLICAS_ACK") is None:
        return 1 if ha_scheme(store_url) else 0
    value = _int(config, "REDIS_MIN_REPLICAS_ACK", 0, 16)
    if value and store_url.startswith("sqlite:"):
        raise ConfigError(
            "REDIS_MIN_REPLICAS_ACK is for a Redis STORE_URL; an SQLite store has no replicas"
        )
    return value


def check_portal_base_url(value: Any, development: bool) -> str:
    """Return a portal address (origin and optional path), or raise ``ConfigError`` saying why."""
    if not isinstance(value, str) or not value:
        raise ConfigError(
            "PORTAL_BASE_URL is required outside development: set it to the portal's origin, "
            "e.g. https://portal.example.com (in $SERVICE_CONFIG or LINKS_PORTAL_BASE_URL)"
        )
    # The pattern leaves no user, query, fragment, space or control character.
    match = _PORTAL_URL.fullmatch(value)
    if match is None:
        raise ConfigError(
            f"PORTAL_BASE_URL {value!r} must be an http(s) origin with a host name, an "
            "optional port and path (URI characters only), nothing more"
        )
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise ConfigError(f"PORTAL_BASE_URL {value!r} has a port outside 1 .. 65535")
    if match["scheme"] != "https" and not development:
        raise ConfigError(
            "PORTAL_BASE_URL must use https outside development: a login link sent over "
            "plain http can be read on the way"
        )
    return value.rstrip("/")


def _signing_keys(value: Any) -> dict[str, bytes]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            "SIGNING_KEYS is missing: set a table of key id -> secret of at least 32 bytes "
            "in $SERVICE_CONFIG (generate one with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))')"
        )
    keys: dict[str, bytes] = {}
    for kid, secret in value.items():
        if not isinstance(kid, str) or not _KEY_ID.match(kid):
            raise ConfigError(
                f"SIGNING_KEYS has a key id {kid!r}; use 1 to 64 of A-Z a-z 0-9 . _ -"
            )
        if not isinstance(secret, str):
            raise ConfigError(f"SIGNING_KEYS[{kid!r}] must be a string secret")
        raw = secret.encode()
        try:
            HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(raw)
        except InvalidKeyError:
            raise ConfigError(
                f"SIGNING_KEYS[{kid!r}] looks like a PEM, SSH or JWK key; an HMAC secret "
                "is a random string (python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            ) from None
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"SIGNING_KEYS[{kid!r}] is {len(raw)} bytes; at least {MIN_SECRET_BYTES} "
                "are needed (set it in $SERVICE_CONFIG)"
            )
        keys[kid] = raw
    return keys


def _api_keys(value: Any) -> tuple[ApiKey, ...]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            'API_KEYS is missing: set a table of key name -> {sha256 = "<hex digest>", '
            'roles = ["issuer"]} in $SERVICE_CONFIG'
        )
    keys = []
    for name, entry in value.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"API_KEYS[{name!r}] must be a table with sha256 and roles")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
            raise ConfigError(
                f"API_KEYS[{name!r}].sha256 must be the 64-character hex SHA-256 digest of "
                "the key (python -c 'import hashlib,sys; "
                "print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' KEY)"
            )
        roles = entry.get("roles")
        if (
            not isinstance(roles, list)
            or not roles
            or not all(isinstance(r, str) and r in ROLES for r in roles)
        ):
            raise ConfigError(
                f"API_KEYS[{name!r}].roles must be a non-empty list of {sorted(ROLES)}"
            )
        keys.append(ApiKey(str(name), bytes.fromhex(digest.lower()), frozenset(roles)))
    return tuple(keys)


def _secret_key(value: Any, signing_keys: Mapping[str, bytes]) -> bytes:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            "SECRET_KEY is missing: set a random string of at least 32 bytes in "
            "$SERVICE_CONFIG; it signs admin console sessions (generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    raw = value.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"SECRET_KEY is {len(raw)} bytes; at least {MIN_SECRET_BYTES} are needed "
            "(set it in $SERVICE_CONFIG)"
        )
    # One secret, one job: a console session must never be a token key.
    if raw in signing_keys.values():
        raise ConfigError("SECRET_KEY must differ from every secret of SIGNING_KEYS")
    return raw


def _add_dev_secret_key(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Add a SECRET_KEY to a development secrets file written before the console."""
    data = {**data, "SECRET_KEY": secrets.token_urlsafe(48)}
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(temporary, path)
    return data


def _dev_secrets(instance_path: str, *, api_keys_configured: bool) -> dict[str, Any]:
    """Load, or create once, the development signing and API keys and SECRET_KEY.

    Only SHA-256 digests of the API keys are written; the keys themselves are
    printed once, to the terminal that started the service (saying so when
    the configuration's own ``API_KEYS`` are the ones in use).
    """
    path = Path(instance_path) / DEV_SECRETS_FILE
    Path(instance_path).mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"{path} is unreadable ({e}); delete it to generate new development keys"
            ) from e
        # A file written before the console existed has no SECRET_KEY: add one.
        if isinstance(data, dict) and "SECRET_KEY" not in data:
            data = _add_dev_secret_key(path, data)
        return data
    plain = {role: f"dev-{role}-{secrets.token_urlsafe(24)}" for role in sorted(ROLES)}
    data = {
        "SIGNING_KEYS": {"dev1": secrets.token_urlsafe(48)},
        "SECRET_KEY": secrets.token_urlsafe(48),
        "API_KEYS": {
            f"dev-{role}": {"sha256": hashlib.sha256(key.encode()).hexdigest(), "roles": [role]}
            for role, key in plain.items()
        },
    }
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    lines = [
        "",
        "Development API keys (shown this once; only their SHA-256 digests are kept in",
        f"{path}; delete that file and restart to get new ones):",
    ]
    lines += [f"  {role:<7} {key}" for role, key in plain.items()]
    if api_keys_configured:
        lines.append("They are not in use now: API_KEYS is set in the configuration.")
    print("\n".join(lines) + "\n", file=sys.stderr, flush=True)
    return data


def validate_config(config: Mapping[str, Any], instance_path: str) -> Deployment:
    """Check every setting and return them prepared; raise ``ConfigError`` on the first fault."""
    env = config.get("ENV")
    if env not in ("production", "development"):
        raise ConfigError(f"ENV must be 'production' or 'development', not {env!r}")
    development = env == "development"

    signing_value = config.get("SIGNING_KEYS")
    api_value = config.get("API_KEYS")
    secret_value = config.get("SECRET_KEY")
    if development and (not signing_value or not api_value or not secret_value):
        generated = _dev_secrets(instance_path, api_keys_configured=bool(api_value))
        signing_value = signing_value or generated["SIGNING_KEYS"]
        api_value = api_value or generated["API_KEYS"]
        secret_value = secret_value or generated["SECRET_KEY"]
    signing_keys = _signing_keys(signing_value)
    active = _text(config.get("ACTIVE_KEY_ID")) or next(iter(signing_keys))
    if active not in signing_keys:
        raise ConfigError(
            f"ACTIVE_KEY_ID is {active!r}, which is not a key id of SIGNING_KEYS "
            f"({', '.join(sorted(signing_keys))})"
        )
    algorithm = config.get("TOKEN_ALGORITHM")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"TOKEN_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
    # An HMAC key shorter than the hash output weakens it (RFC 7518 3.2).
    needed = {"HS256": 32, "HS384": 48, "HS512": 64}[algorithm]
    for kid, secret in signing_keys.items():
        if len(secret) < needed:
            raise ConfigError(
                f"SIGNING_KEYS[{kid!r}] is {len(secret)} bytes; {algorithm} needs at least "
                f"{needed} (set it in $SERVICE_CONFIG)"
            )

    max_ttl = _int(config, "MAX_TOKEN_TTL_SECONDS", MIN_TTL_SECONDS, TTL_CEILING_SECONDS)
    default_ttl = min(
        _int(config, "DEFAULT_TOKEN_TTL_SECONDS", MIN_TTL_SECONDS, TTL_CEILING_SECONDS), max_ttl
    )
    token_param = _str(config, "TOKEN_PARAM")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", token_param):
        raise ConfigError("TOKEN_PARAM must be 1 to 64 of A-Z a-z 0-9 . _ -")

    base = config.get("PORTAL_BASE_URL") or (DEV_PORTAL_BASE_URL if development else None)
    store_url = config.get("STORE_URL") or "sqlite:///autologin.db"
    if not isinstance(store_url, str):
        raise ConfigError("STORE_URL must be a string")
    prefix = _str(config, "STORE_KEY_PREFIX")
    deployment = Deployment(
        env=env,
        portal_base_url=check_portal_base_url(base, development),
        token_param=token_param,
        store_url=store_url,
        store_options={
            "instance_path": instance_path,
            "key_prefix": prefix,
            "redis_socket_timeout_seconds": _float(config, "REDIS_SOCKET_TIMEOUT_SECONDS"),
            "redis_connect_timeout_seconds": _float(config, "REDIS_CONNECT_TIMEOUT_SECONDS"),
            "sqlite_timeout_seconds": _float(config, "SQLITE_TIMEOUT_SECONDS"),
            "redis_min_replicas_ack": _min_replicas_ack(config, store_url),
        },
        signing_keys=signing_keys,
        active_key_id=active,
        algorithm=algorithm,
        issuer=_str(config, "TOKEN_ISSUER"),
        audience=_str(config, "TOKEN_AUDIENCE"),
        api_keys=_api_keys(api_value),
        max_ttl_seconds=max_ttl,
        default_ttl_seconds=default_ttl,
        leeway_seconds=_int(config, "LEEWAY_SECONDS", 0, 300),
        signin_log=_bool(config, "SIGNIN_LOG"),
        log_retention_days=_int(config, "LOG_RETENTION_DAYS", 1, 3650),
        secret_key=_secret_key(secret_value, signing_keys),
        link_ledger=_bool(config, "LINK_LEDGER"),
        console_idle_timeout_seconds=_int(config, "CONSOLE_IDLE_TIMEOUT_SECONDS", 60, 86400),
        console_trusted_proxies=_int(config, "CONSOLE_TRUSTED_PROXIES", 0, 10),
    )
    longest = longest_token(key_ring(deployment))
    if longest > CONTRACT_TOKEN_CHARS:
        raise ConfigError(
            f"tokens would be up to {longest} characters for a {CONTRACT_USER_ID_CHARS}-character "
            f"user id and a {CONTRACT_TARGET_CHARS}-character target, over the "
            f"{CONTRACT_TOKEN_CHARS} the contract allows: use a shorter ACTIVE_KEY_ID "
            f"({active!r}), TOKEN_ISSUER or TOKEN_AUDIENCE, or TOKEN_ALGORITHM HS256"
        )
    return deployment


def key_ring(deployment: Deployment) -> KeyRing:
    """Return the key ring that signs and checks tokens under ``deployment``."""
    return KeyRing(
        keys=deployment.signing_keys,
        active_key_id=deployment.active_key_id,
        algorithm=deployment.algorithm,
        issuer=deployment.issuer,
        audience=deployment.audience,
        max_ttl_seconds=deployment.max_ttl_seconds,
        leeway_seconds=deployment.leeway_seconds,
    )
