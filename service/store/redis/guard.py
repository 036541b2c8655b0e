"""Translate redis-py's errors into the store's: unavailable (503) or bad data."""

from __future__ import annotations

from types import TracebackType

from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from service.errors import StoreDataError, StoreError, StoreUnavailableError

# Replies that mean "Redis is not serving us now", not "our data has a bad shape".
_UNAVAILABLE = (
    ConnectionError,  # BusyLoadingError (still loading its data) is one too
    TimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    NoPermissionError,
    TryAgainError,
    ClusterDownError,
)
_UNAVAILABLE_CODES = ("BUSY ", "MISCONF ", "NOREPLICAS ")


class _Guard:
    """Translate redis-py errors into store errors; one instance, no per-call cost."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, _t: type[BaseException] | None, e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if isinstance(e, UnicodeDecodeError):
            raise StoreDataError(f"Redis at {self.where}: undecodable bytes: {e}") from e
        if isinstance(e, OSError | RedisClusterException):
            # redis-py wraps socket errors in ConnectionError nearly everywhere;
            # one that slips through is the same failure: fail closed, 503. So
            # is a Cluster with a slot no shard serves (SlotNotCoveredError).
            raise StoreUnavailableError(f"Redis at {self.where}: {e}") from e
        if not isinstance(e, RedisError):
            return
        error: StoreError
        if isinstance(e, ResponseError) and not (
            isinstance(e, _UNAVAILABLE) or str(e).startswith(_UNAVAILABLE_CODES)
        ):
            error = StoreDataError(f"Redis at {self.where}: {e}")  # WRONGTYPE, not an integer
        else:
            error = StoreUnavailableError(f"Redis at {self.where}: {e}")
        raise error from e
