"""The one place that reads the wall clock.

Everything else asks :func:`utcnow` when it needs the time, so freezegun
controls every timestamp the service writes or compares.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["isoformat", "utcnow"]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """Format ``moment`` as ``2026-11-26T10:00:00Z`` (whole seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_seconds(seconds: float) -> datetime:
    """Return the aware UTC datetime of ``seconds`` since the Unix epoch."""
    return datetime.fromtimestamp(seconds, UTC)
