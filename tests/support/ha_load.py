"""A steady load on a running service, for failover tests: issue, verify and bump in threads.

Every answer is counted by status; the time of the failure (a SIGKILL) is
marked, and the load notes when issuing, verifying and bumping work again
after it. Each bump that answered 200 is kept with a token issued just
before it, so a test can check afterwards that the bump is still in force.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from tests.conftest import API_KEYS

__all__ = ["AckedBump", "Load", "call"]

ISSUER = {"Authorization": f"Bearer {API_KEYS['issuer-key'][0]}"}
PORTAL_KEY = {"Authorization": f"Bearer {API_KEYS['portal-key'][0]}"}
ADMIN = {"Authorization": f"Bearer {API_KEYS['admin-key'][0]}"}
#: Generous bound for one answer: the Redis timeouts are 0.5 s.
ANSWER_SECONDS = 10


def call(base: str, method: str, path: str, body: dict | None = None) -> requests.Response:
    """Call the service at ``base`` with the key a path needs."""
    if path.startswith("/v1/admin") or "/admin/" in path:
        headers = ADMIN
    elif path.endswith("/verify"):
        headers = PORTAL_KEY
    else:
        headers = ISSUER
    return requests.request(method, base + path, json=body, headers=headers, timeout=ANSWER_SECONDS)


def link(user_id: str) -> dict:
    address = f"{user_id}@example.com"
    return {"user_id": user_id, "email": address, "recipients": {"to": [address]}}


def token_of(response: requests.Response) -> str | None:
    """Return the token of a 200 link answer with auto-login, else None."""
    if response.status_code != 200 or not response.json()["auto_login"]:
        return None
    return response.json()["url"].split("auto_login=", 1)[1]


@dataclass
class AckedBump:
    """A bump that answered 200, and a token that verified before it was sent."""

    epoch: int
    token: str
    #: When it answered (time.monotonic()).
    at: float


@dataclass
class Load:
    """Issue and verify (``clickers`` threads) and bump (one thread) against ``base``."""

    base: str
    prefix: str = "/v1"  # "/v1/tenants/<id>" to act in a tenant
    clickers: int = 2
    bump_pause: float = 0.05
    statuses: Counter = field(default_factory=Counter)
    #: (method, path, status, body) of every 5xx but 503, and of anything unexpected.
    wrong: list[tuple[str, str, int, str]] = field(default_factory=list)
    acked: list[AckedBump] = field(default_factory=list)
    #: Bumps that answered 503: they may or may not have been applied.
    unsure: int = 0
    failed_at: float | None = None
    #: First 503 after ``failed_at`` ...
    down_at: float | None = None
    #: ... and the first success after it, by kind ("verify", "issue", "bump").
    back: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _note(self, kind: str, method: str, path: str, response: requests.Response) -> bool:
        """Count an answer; return whether it was a 200."""
        status = response.status_code
        with self._lock:
            self.statuses[status] += 1
            expected = {200, 503} | ({401} if kind == "verify" else set())
            if status not in expected:
                self.wrong.append((method, path, status, response.text[:300]))
            if self.failed_at is not None:
                if status == 503 and self.down_at is None:
                    self.down_at = time.monotonic()
                if status == 200 and self.down_at is not None and kind not in self.back:
                    self.back[kind] = time.monotonic()
        return status == 200

    def _request(self, kind: str, method: str, path: str, body: dict) -> requests.Response | None:
        try:
            response = call(self.base, method, self.prefix + path, body)
        except requests.RequestException as e:  # the service itself never drops a call
            with self._lock:
                self.wrong.append((method, path, 0, repr(e)))
            return None
        self._note(kind, method, path, response)
        return response

    def _click(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            response = self._request("issue", "POST", "/links", link(f"c{n}-{i % 50}"))
            token = response is not None and token_of(response)
            if token:
                self._request("verify", "POST", "/tokens/verify", {"token": token})
            else:
                time.sleep(0.01)

    def _bump(self) -> None:
        while not self._stop.is_set():
            before = self._request("issue", "POST", "/links", link("bumped"))
            token = before is not None and token_of(before)
            if token:
                check = self._request("verify", "POST", "/tokens/verify", {"token": token})
                if check is not None and check.status_code == 200:
                    bump = self._request(
                        "bump", "POST", "/admin/epoch/bump", {"reason": "failover test"}
                    )
                    if bump is not None and bump.status_code == 200:
                        with self._lock:
                            epoch = bump.json()["epoch"]
                            self.acked.append(AckedBump(epoch, token, time.monotonic()))
                    elif bump is not None and bump.status_code == 503:
                        with self._lock:
                            self.unsure += 1
            time.sleep(self.bump_pause)

    def start(self) -> Load:
        targets: list[Callable[[], None]] = [self._bump]
        targets += [lambda n=n: self._click(n) for n in range(self.clickers)]
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for thread in self._threads:
            thread.start()
        return self

    def mark_failure(self) -> None:
        self.failed_at = time.monotonic()

    def wait_back(self, kinds: tuple[str, ...] = ("issue", "verify", "bump"), timeout=60.0) -> None:
        """Wait until the service failed after the failure and every kind of call works again."""
        deadline = time.monotonic() + timeout
        while self.down_at is None or not all(kind in self.back for kind in kinds):
            if time.monotonic() > deadline:
                raise AssertionError(f"not back within {timeout} s: {kinds}, {self.back}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=ANSWER_SECONDS * 3)

    def acked_after_failure(self) -> list[AckedBump]:
        with self._lock:
            return [a for a in self.acked if self.failed_at is not None and a.at > self.failed_at]

    def lost(self) -> list[AckedBump]:
        """Bumps acknowledged before the failure whose epoch number was given out again after."""
        after = self.acked_after_failure()
        if not after:
            return []
        again = min(a.epoch for a in after)
        return [a for a in self.acked if a.at < self.failed_at and a.epoch >= again]

    def outage(self) -> str:
        """Say how long each kind of call went without service after the failure."""
        assert self.failed_at is not None
        parts = [
            f"{kind} {self.back[kind] - self.failed_at:.2f} s"
            for kind in ("issue", "verify", "bump")
            if kind in self.back
        ]
        return "time without service after the kill: " + ", ".join(parts)
