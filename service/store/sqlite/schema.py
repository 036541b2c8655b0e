"""The SQL text of the embedded store.

Its tables, the columns and indexes a start adds to a store made by an
earlier version, and the fixed statements the store's parts run.
"""

from __future__ import annotations

__all__ = [
    "_ADDED_COLUMNS",
    "_BACKFILLS",
    "_CLEANUPS",
    "_COUNTER_INCR",
    "_INSERT_LINK",
    "_INSERT_SIGNINS",
    "_LATE_SCHEMA",
    "_LINK_SELECT",
    "_META",
    "_REAP_TABLES",
    "_SCHEMA",
    "_SETTING_UPDATES",
    "_SETTINGS_COLUMNS",
    "_SIGNIN_CHUNKS",
    "_TOKEN_STATE",
    "_TOKEN_STATE_AND_KEY",
    "_USE_LINK",
    "_USER_LINK_SELECT",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id TEXT PRIMARY KEY,
    incarnation TEXT NOT NULL UNIQUE,
    portal_base_url TEXT,
    created_at REAL NOT NULL,
    epoch INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    changed_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    auto_login_enabled INTEGER NOT NULL,
    token_ttl_seconds INTEGER NOT NULL,
    bind_to_first_device INTEGER NOT NULL DEFAULT 0,
    role_mailboxes TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_epochs (
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    revoked_at REAL NOT NULL,
    PRIMARY KEY (tenant, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    tenant TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    tenant TEXT NOT NULL,
    link_id TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant_keys (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    digest BLOB NOT NULL,
    roles TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trash (
    incarnation TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    deleted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS platform_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    tenant TEXT NOT NULL,
    link_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    target TEXT NOT NULL,
    reference TEXT,
    issued_by TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    epoch INTEGER NOT NULL,
    user_epoch INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    first_used_at REAL,
    last_used_at REAL,
    last_ip TEXT,
    epoch_id INTEGER NOT NULL DEFAULT 0,
    issue_hour INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, link_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS voided_links (
    tenant TEXT NOT NULL,
    link_id TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    keep_until REAL NOT NULL,
    PRIMARY KEY (tenant, link_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bindings (
    tenant TEXT NOT NULL,
    link_id TEXT NOT NULL,
    device TEXT NOT NULL,
    keep_until REAL NOT NULL,
    PRIMARY KEY (tenant, link_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_info (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tenant_key_digest ON tenant_keys (tenant, digest);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, id);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS signins_tenant ON signins (tenant, at);
CREATE INDEX IF NOT EXISTS signins_tenant_user ON signins (tenant, user_id, at);
CREATE INDEX IF NOT EXISTS signins_at ON signins (at);
CREATE INDEX IF NOT EXISTS platform_audit_at ON platform_audit (at);
CREATE INDEX IF NOT EXISTS links_order ON links (tenant, issued_at, link_id);
CREATE INDEX IF NOT EXISTS links_expiry ON links (expires_at);
CREATE INDEX IF NOT EXISTS voided_expiry ON voided_links (keep_until);
CREATE INDEX IF NOT EXISTS bindings_expiry ON bindings (keep_until);
"""
#: Columns added since the tables were first made: a store made before gets
#: them on its next start (with their defaults: binding off, the default
#: role mailboxes, no link id in older sign-ins).
_ADDED_COLUMNS = (
    ("tenants", "bind_to_first_device", "INTEGER NOT NULL DEFAULT 0"),
    ("tenants", "role_mailboxes", "TEXT"),
    ("signins", "link_id", "TEXT"),
    ("tenants", "epoch_id", "INTEGER NOT NULL DEFAULT 0"),
    ("links", "epoch_id", "INTEGER NOT NULL DEFAULT 0"),
    ("links", "issue_hour", "INTEGER NOT NULL DEFAULT 0"),
)
#: What fills a column added above in rows written before it (once, when it is added).
_BACKFILLS = {
    ("links", "issue_hour"): "UPDATE links SET issue_hour = CAST(issued_at / 3600 AS INTEGER)",
}
# After the columns: a user's links are found by the hour they were issued in,
# then the user. A batch's links all go into the current hour's part of the
# index, a few pages, where an index by user first (the one dropped here) took
# a random page for each link: at 100,000 links in the ledger most of the
# time of a batch's write went into writing those pages out again.
_LATE_SCHEMA = (
    "DROP INDEX IF EXISTS links_user",
    "CREATE INDEX IF NOT EXISTS links_user_hour ON links (tenant, issue_hour, user_id)",
)


# One statement, so concurrent hits from several workers never lose a count:
# a window that has ended starts again at ``amount``.
_COUNTER_INCR = (
    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3 + ?4)"
    " ON CONFLICT (key) DO UPDATE SET"
    " value = CASE WHEN expires_at <= ?3 THEN ?2 ELSE value + ?2 END,"
    " expires_at = CASE WHEN expires_at <= ?3 THEN ?3 + ?4 ELSE expires_at END"
    " RETURNING value"
)

# One statement, one round trip: the tenant's incarnation, its global epoch,
# the user's epoch (0 for a user never revoked), the tenant's binding
# setting, whether the link is voided and the device it is bound to, and the
# global epoch's random identity, as of the same instant. No row: no such
# tenant. A tenant's rows elsewhere are keyed by its incarnation, so a tenant
# deleted and made again shares nothing with the old.
_STATE_COLUMNS = (
    "SELECT t.incarnation, t.epoch,"
    " COALESCE((SELECT u.epoch FROM user_epochs u"
    " WHERE u.tenant = t.incarnation AND u.user_id = :user), 0),"
    " t.bind_to_first_device,"
    " EXISTS (SELECT 1 FROM voided_links v WHERE v.tenant = t.incarnation AND v.link_id = :link),"
    " (SELECT b.device FROM bindings b WHERE b.tenant = t.incarnation AND b.link_id = :link),"
    " t.epoch_id"
)
_TOKEN_STATE = _STATE_COLUMNS + " FROM tenants t WHERE t.tenant_id = :tenant"
# The same, and the tenant key of a digest (NULLs when there is none).
_TOKEN_STATE_AND_KEY = (
    _STATE_COLUMNS + ", k.name, k.digest, k.roles, k.created_at, k.last_used_at"
    " FROM tenants t LEFT JOIN tenant_keys k ON k.tenant = t.incarnation AND k.digest = :digest"
    " WHERE t.tenant_id = :tenant"
)
# A link of the ledger with its status as a verification would answer now:
# expired whatever else, else revoked by the store, a bump, its user or
# itself, else active. :expired is now less the leeway.
_LINK_SELECT = (
    "SELECT l.link_id, l.user_id, l.target, l.reference, l.issued_by, l.issued_at,"
    " l.expires_at, l.epoch, l.user_epoch, l.uses, l.first_used_at, l.last_used_at, l.last_ip,"
    " CASE WHEN l.expires_at < :expired THEN 'expired'"
    " WHEN l.epoch != t.epoch OR l.epoch_id != t.epoch_id"
    " OR l.user_epoch != COALESCE((SELECT u.epoch FROM user_epochs u"
    " WHERE u.tenant = l.tenant AND u.user_id = l.user_id), 0)"
    " OR EXISTS (SELECT 1 FROM voided_links v WHERE v.tenant = l.tenant AND v.link_id = l.link_id)"
    " THEN 'revoked' ELSE 'active' END AS status,"
    " EXISTS (SELECT 1 FROM bindings b WHERE b.tenant = l.tenant AND b.link_id = l.link_id)"
    " FROM links l {index}JOIN tenants t ON t.incarnation = l.tenant WHERE t.tenant_id = :tenant"
)
_INSERT_LINK = (
    "INSERT OR IGNORE INTO links (tenant, link_id, user_id, target, reference, issued_by,"
    " issued_at, expires_at, epoch, user_epoch, epoch_id, issue_hour)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# One user's links: looked up hour by hour in links_user_hour, over the hours
# from the tenant's oldest link to its newest (SQLite would otherwise walk
# the whole ledger in issue order, the ORDER BY's index), then sorted.
_USER_LINK_SELECT = (
    "WITH RECURSIVE hours(h) AS ("  # noqa: S608 (fixed SQL only)
    " SELECT CAST(MAX(issued_at) / 3600 AS INTEGER) FROM links WHERE tenant = :inc"
    " UNION ALL SELECT h - 1 FROM hours, (SELECT CAST(MIN(issued_at) / 3600 AS INTEGER) AS low"
    " FROM links WHERE tenant = :inc) WHERE h > low) "
    + _LINK_SELECT.format(index="INDEXED BY links_user_hour ")
    + " AND l.issue_hour IN hours AND l.user_id = :user"
)
_LINK_SELECT = _LINK_SELECT.format(index="")
# A successful sign-in counts on its link: first use, last use and from where
# (the latest click wins, whichever worker wrote it first).
_USE_LINK = (
    "UPDATE links SET uses = uses + 1,"
    " first_used_at = MIN(COALESCE(first_used_at, :at), :at),"
    " last_ip = CASE WHEN last_used_at IS NULL OR :at >= last_used_at THEN :ip ELSE last_ip END,"
    " last_used_at = MAX(COALESCE(last_used_at, :at), :at)"
    " WHERE tenant = :tenant AND link_id = :link"
)
# Bounded removal of what outlived its link (WITHOUT ROWID: by primary key).
_CLEANUPS = (
    "DELETE FROM links WHERE (tenant, link_id) IN"
    " (SELECT tenant, link_id FROM links WHERE expires_at < ? LIMIT ?)",
    "DELETE FROM voided_links WHERE (tenant, link_id) IN"
    " (SELECT tenant, link_id FROM voided_links WHERE keep_until < ? LIMIT ?)",
    "DELETE FROM bindings WHERE (tenant, link_id) IN"
    " (SELECT tenant, link_id FROM bindings WHERE keep_until < ? LIMIT ?)",
)
# Sign-ins go in with one statement per power of two of rows, not one step a
# row: while SQLite works, the GIL passes to the clicking thread and back,
# a context switch each time. A handful of fixed statements stay cached.
_SIGNIN_CHUNKS = (64, 16, 4, 1)
_INSERT_SIGNINS = {
    n: "INSERT INTO signins (tenant, at, user_id, outcome, ip, user_agent, link_id) VALUES "  # noqa: S608 (placeholders only)
    + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n)
    for n in _SIGNIN_CHUNKS
}
_SETTING_UPDATES = {
    "auto_login_enabled": "UPDATE tenants SET auto_login_enabled = ? WHERE tenant_id = ?",
    "token_ttl_seconds": "UPDATE tenants SET token_ttl_seconds = ? WHERE tenant_id = ?",
    "bind_to_first_device": "UPDATE tenants SET bind_to_first_device = ? WHERE tenant_id = ?",
    "role_mailboxes": "UPDATE tenants SET role_mailboxes = ? WHERE tenant_id = ?",
}
#: The settings' columns, in Settings' order.
_SETTINGS_COLUMNS = "auto_login_enabled, token_ttl_seconds, bind_to_first_device, role_mailboxes"
_META = (
    "SELECT incarnation, epoch, changed_at, changed_by, reason, portal_base_url, created_at,"
    " auto_login_enabled, token_ttl_seconds, bind_to_first_device, role_mailboxes"
    " FROM tenants WHERE tenant_id = ?"
)
#: Rows of a deleted tenant removed per step of the reaper: short
#: transactions, so other tenants' writes never wait long behind one.
_REAP_TABLES = (
    ("user_epochs", "user_id"),
    ("signins", "id"),
    ("audit", "id"),
    ("tenant_keys", "name"),
    ("links", "link_id"),
    ("voided_links", "link_id"),
    ("bindings", "link_id"),
)
