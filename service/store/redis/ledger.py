"""The ledger: the links issued, read a page or one at a time, and revoked one by one."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from redis.exceptions import NoScriptError

from service.clock import from_seconds
from service.errors import LinkNotFoundError, StoreDataError
from service.store import (
    LEDGER_CLEANUP_EXTRA,
    LEDGER_GRACE_SECONDS,
    LinkRecord,
    LinkRevocation,
)
from service.store.redis.layout import _AUDITED, _CLEANUP_NAMES, _by_user

#: Ledger entries one page call looks at, at most (a filter that matches few
#: answers a short page with ``next`` rather than scan the whole ledger).
_LEDGER_SCAN = 5000
#: A ledger record's JSON: one encoder for every record (json.dumps with
#: separators makes a new one a call).
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _ledger_cuts(now: datetime) -> tuple[str, str]:
    """Return the ledger cleanup's cuts: entries past expiry plus a day, the rest past their own."""
    at = now.timestamp()
    return f"({at - LEDGER_GRACE_SECONDS!r}", f"({at!r}"


class _Ledger:
    """:class:`~service.store.redis.RedisStore`'s ledger (a mixin of it)."""

    def record_links(self, links: Sequence[LinkRecord], incarnation: str, now: datetime) -> None:
        """Add newly issued links to the ledger, and drop a few that outlived theirs."""
        with self._guard:
            self._script(
                self._record_links_script,
                _CLEANUP_NAMES,
                self._record_args(links, incarnation, now),
            )

    def record_link_chunks(
        self, chunks: Iterable[Sequence[LinkRecord]], incarnation: str, now: datetime
    ) -> None:
        """:meth:`record_links` for each chunk, sent as it comes, the replies read at the end.

        Redis works on a chunk while the caller makes the next (signs its
        tokens): a batch's write overlaps its signing instead of following
        it. Pipelined on one connection, not a thread: a thread's hand-offs
        of the GIL cost what the overlap saved. On a Cluster, chunk by chunk.
        """
        if self._cluster:
            for chunk in chunks:
                self.record_links(chunk, incarnation, now)
            return
        script = self._record_links_script
        keys = self._declared(_CLEANUP_NAMES)
        pool = self.redis.connection_pool
        sent: list[Sequence[LinkRecord]] = []
        unloaded: list[Sequence[LinkRecord]] = []
        with self._guard:
            connection = pool.get_connection()
            try:
                for chunk in chunks:
                    args = [self._base, *self._record_args(chunk, incarnation, now)]
                    connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    sent.append(chunk)
                for chunk in sent:
                    try:
                        connection.read_response()
                    except NoScriptError:
                        unloaded.append(chunk)  # Redis restarted, or SCRIPT FLUSH
            except BaseException:
                # A reply left unread would answer the next user of the connection.
                connection.disconnect()
                raise
            finally:
                pool.release(connection)
            for chunk in unloaded:  # the script's own way: it loads itself, then runs
                self._script(script, _CLEANUP_NAMES, self._record_args(chunk, incarnation, now))

    def _record_args(
        self, links: Sequence[LinkRecord], incarnation: str, now: datetime
    ) -> list[Any]:
        """RECORD_LINKS's arguments (after the key base) for ``links``."""
        quote = encode_basestring_ascii  # what json.dumps does to a string
        rows = []
        for link in links:
            issued_at, expires_at = link.issued_at.timestamp(), link.expires_at.timestamp()
            reference = "null" if link.reference is None else quote(link.reference)
            # The record as _link_record reads it, written out as json.dumps
            # would (the same text, at a third of the cost of a list through it).
            record = (
                f"[{quote(link.user_id)},{quote(link.target)},{reference},"
                f"{quote(link.issued_by)},{issued_at!r},{expires_at!r},{int(link.epoch)},"
                f"{int(link.user_epoch)},0,null,null,null,{int(link.epoch_id)}]"
            )
            # Times as strings: Lua's cjson would round a number to 14 digits.
            rows.append(
                (
                    link.link_id,
                    repr(issued_at),
                    repr(expires_at),
                    record,
                    _by_user(link.user_id, issued_at, link.link_id),
                )
            )
        args = [incarnation, *_ledger_cuts(now), len(links) + LEDGER_CLEANUP_EXTRA]
        args.append(_COMPACT.encode(rows))
        return args

    def _link_record(self, link_id: str, record: str, status: str, bound: int) -> LinkRecord:
        try:
            # A 13th field, the epoch identity, since identities (none: 0).
            (user_id, target, reference, issued_by, issued_at, expires_at, epoch, user_epoch,
             uses, first, last, ip, *identity) = json.loads(record)  # fmt: skip
            return LinkRecord(
                link_id,
                user_id,
                target,
                reference,
                issued_by,
                from_seconds(float(issued_at)),
                from_seconds(float(expires_at)),
                int(epoch),
                int(user_epoch),
                status,
                int(uses),
                None if first is None else from_seconds(float(first)),
                None if last is None else from_seconds(float(last)),
                ip,
                bound == 1,
                epoch_id=int(identity[0]) if identity else 0,
            )
        except (TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"link {link_id!r} has the wrong shape: {e!r}") from e

    def links(
        self,
        *,
        user_id: str | None,
        status: str | None,
        after: str | None,
        limit: int,
        expired_before: float,
    ) -> tuple[list[LinkRecord], str | None]:
        """Return a page of the ledger, newest first, and the ``after`` of the next page."""
        args = [user_id or "", after or "", limit, status or "", repr(expired_before), _LEDGER_SCAN]
        names = ("links", "user_epochs", "voided", "bound", "links_at", "links_by_user")
        reply = self._run(self._links_script, args, names)
        if reply == "!no-link":
            raise LinkNotFoundError(after or "")
        following, flat = reply[0], reply[1:]
        page = [self._link_record(*flat[i : i + 4]) for i in range(0, len(flat), 4)]
        return page, following

    def link(self, link_id: str, *, expired_before: float) -> LinkRecord | None:
        """Return one link of the ledger, or ``None``."""
        names = ("links", "user_epochs", "voided", "bound")
        reply = self._run(self._link_script, [link_id, repr(expired_before)], names)
        return None if reply is None else self._link_record(*reply)

    def revoke_link(
        self,
        link_id: str,
        *,
        ledger: bool,
        max_ttl: int,
        leeway: int,
        actor: str,
        reason: str,
        now: datetime,
    ) -> LinkRevocation:
        """Void one link; audited as ``link.revoke`` (see the protocol)."""
        at = now.timestamp()
        args = [link_id, "1" if ledger else "0", repr(at), repr(at + max_ttl + leeway)]
        reply = self._run(
            self._revoke_link_script,
            [*args, leeway, actor, reason],
            _AUDITED + ("links", "voided", "voided_exp"),
            change=True,
        )
        if reply == "!no-link":
            raise LinkNotFoundError(link_id)
        return LinkRevocation(link_id, now, expired=reply == "expired")
