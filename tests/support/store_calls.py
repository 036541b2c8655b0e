"""Count the store calls a request makes, on whichever store the app has."""

from __future__ import annotations

#: The store's reads by which a request finds its tenant, key and state.
READS = ("token_state", "issue_state", "find_key", "get_tenant", "tenant_info", "settings")


def count_store_calls(monkeypatch, app, names=READS) -> list[str]:
    """Return a list that records each later call of ``names``, on every tenant view."""
    calls: list[str] = []
    store_class = type(app.extensions["store"])  # views are copies: patch the class
    for name in names:
        real = getattr(store_class, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(store_class, name, counted)
    return calls
