"""The embedded store: one SQLite file in WAL mode, for one host.

Every worker process (and thread) opens its own connection; WAL lets
readers run while one writer commits, and every write is one ``BEGIN
IMMEDIATE`` transaction, so concurrent bumps from several gunicorn workers
serialise in SQLite and none is lost.

The store is one class, :class:`SqliteStore`, put together from a part per
concern, each in its own module:

- ``schema.py``: the SQL text: the tables, what a start adds to an older
  store, and the fixed statements the parts run;
- ``rows.py``: values between SQLite and the store (moments, settings);
- ``connection.py``: the connections (one per thread and process) and the
  translation of sqlite3's errors;
- ``takeover.py``: taking over the single-tenant version's store;
- ``store.py``: :class:`SqliteStore` itself: opening and creating the store,
  the tenant's row, settings, epochs and user revocations;
- ``state.py``: what a verification and an issue read, in one trip each;
- ``tenants.py``: the platform's tenants, their creation, deletion and reaping;
- ``keys.py``: a tenant's API keys;
- ``ledger.py``: the ledger of issued links, their revocations and bindings;
- ``logs.py``: the audit logs and the sign-in log, and pruning;
- ``counters.py``: the rate-limit counters.
"""

from __future__ import annotations

from service.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
