"""Where the Redis store keeps a tenant's keys (service/store/redis/), for tests."""

from __future__ import annotations


def meta(prefix: str, tenant: str = "default") -> str:
    """The tenant's meta hash."""
    return f"{prefix}{{{tenant}}}:meta"


def data(raw, prefix: str, name: str, tenant: str = "default") -> str:
    """The key ``name`` of the tenant's current incarnation (``user_epochs``, ``audit``...)."""
    incarnation = raw.hget(meta(prefix, tenant), "incarnation")
    return f"{prefix}{{{tenant}}}:{incarnation}:{name}"
