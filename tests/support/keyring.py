"""The key ring of the token unit tests: two known keys, the service's token settings."""

from __future__ import annotations

from typing import Any

from service.store import TokenState
from service.tokens import KeyRing

K1 = b"unit-test-signing-key-one-0123456789abcdef"
K2 = b"unit-test-signing-key-two-0123456789abcdef"
#: The store state a token is issued under: incarnation, global epoch, user epoch.
STATE = TokenState("inc-A", 3, 1)


def ring(**overrides: Any) -> KeyRing:
    """A ``KeyRing`` on K1 (active) and K2; ``overrides`` change its arguments."""
    values: dict[str, Any] = {
        "keys": {"k1": K1, "k2": K2},
        "active_key_id": "k1",
        "algorithm": "HS256",
        "issuer": "autologin-links",
        "audience": "helpdesk-portal",
        "max_ttl_seconds": 604800,
        "leeway_seconds": 30,
    }
    values.update(overrides)
    return KeyRing(**values)
