"""The names of the store's keys (the package's docstring draws the whole layout)."""

from __future__ import annotations

#: The single-tenant version's keys (after the prefix), in TAKE_OVER's order.
_LEGACY_KEYS = ("meta", "user_epochs", "seq", "audit", "audit_at", "signins", "signins_at")
#: A tenant incarnation's keys of fixed name (after ``{p}{T}:<inc>:``).
_TENANT_DATA = (
    "user_epochs",
    "seq",
    "audit",
    "audit_at",
    "signins",
    "signins_at",
    "keys",
    "digests",
    "used",
    "links",
    "links_at",
    "links_exp",
    "links_by_user",
    "link_users",  # a tenant's per-user link sets, before links_by_user (layout 2)
    "voided",
    "voided_exp",
    "bound",
    "bound_exp",
)
#: Entries one reaping command removes (a step of the reaper sends several).
_REAP_PER_COMMAND = 50
#: The collections of a deleted tenant that can grow big, shrunk a slice at a time.
_REAP_HASHES = ("user_epochs", "links", "voided", "bound", "keys", "digests", "used")
_REAP_SORTED_SETS = (
    "audit",
    "audit_at",
    "signins",
    "signins_at",
    "links_at",
    "links_exp",
    "links_by_user",
    "voided_exp",
    "bound_exp",
)
# The data keys each script touches (after ``{p}{T}:<inc>:``), declared on a Cluster.
_STATE = ("user_epochs",)
_AUDITED = ("user_epochs", "seq", "audit", "audit_at")
_KEY_NAMES = ("keys", "digests", "used")
_SIGNIN_NAMES = ("seq", "signins", "signins_at", "signin_users", "links")
_LINK_STATE_NAMES = ("voided", "bound", "bound_exp")
_LEDGER_NAMES = ("links", "links_at", "links_exp", "links_by_user")
_CLEANUP_NAMES = _LEDGER_NAMES + ("voided", "voided_exp", "bound", "bound_exp")


def _by_user(user_id: str, issued_at: float, link_id: str) -> str:
    """Return a link's member of ``links_by_user``, as the scripts' ``by_user`` makes it."""
    return f"{user_id}\0{issued_at:017.6f}\0{link_id}"
