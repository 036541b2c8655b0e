"""Run every benchmark of the service and print one table of ratios.

    make bench            # or: .venv/bin/python -m bench.run [--quick]

Every figure is a ratio against a baseline measured in the same run,
interleaved (A B A B ...), as the median of several repetitions: these
machines are shared and noisy, so absolute numbers mean little.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import requests

from bench.harness import KEY, ROWS, interleaved, report, ring, us
from service.links import LinkRequest, build_links
from service.store import Settings, open_store
from service.tokens import REQUIRED_CLAIMS, check_epochs, issue_token, verify_token

ROOT = Path(__file__).resolve().parent.parent
ISSUER_KEY = "bench-issuer-key-0123456789abcdefghij"
PORTAL_KEY = "bench-portal-key-0123456789abcdefghij"
ADMIN_KEY = "bench-admin-key-0123456789abcdefghijk"


def redis_url(server) -> str:
    return server.url


# -- 1. in-process ---------------------------------------------------------


def bench_inprocess(tmp: Path, reps: int) -> None:
    keys = ring()
    store = open_store(
        f"sqlite:///{tmp / 'inproc.db'}",
        defaults=Settings(True, 86400),
        options={"instance_path": str(tmp)},
    )
    state = store.token_state("42")
    now = datetime.now(UTC)
    token, _ = issue_token("42", state, target="/tickets/1234", ring=keys, ttl=86400, now=now)
    payload = jwt.decode(token, options={"verify_signature": False})
    options = {"require": list(REQUIRED_CLAIMS), "strict_aud": True}

    def ours_verify() -> None:
        claims = verify_token(token, keys)
        check_epochs(claims, store.token_state(claims.user_id))

    def plain_decode() -> None:
        jwt.decode(
            token,
            KEY,
            algorithms=["HS256"],
            audience="helpdesk-portal",
            issuer="autologin-links",
            leeway=30,
            options=options,
        )

    signing_input = token.rsplit(".", 1)[0].encode()

    def floor() -> None:
        hmac.new(KEY, signing_input, hashlib.sha256).digest()

    a, b, r = interleaved(ours_verify, plain_decode, n=3000, reps=reps)
    report(
        "in-process",
        "verify incl. store read (SQLite) vs jwt.decode",
        us(a),
        us(b),
        r,
        ">= 1.5x",
        r >= 1.5,
    )
    a, b, r = interleaved(ours_verify, floor, n=3000, reps=reps)
    report(
        "in-process",
        "verify incl. store read vs bare HMAC-SHA256",
        us(a),
        us(b),
        r,
        "(floor)",
        None,
    )

    def ours_issue() -> None:
        issue_token(
            "42", state, target="/tickets/1234", ring=keys, ttl=86400, now=datetime.now(UTC)
        )

    def plain_encode() -> None:
        jwt.encode(payload, KEY, algorithm="HS256", headers={"kid": "k1"})

    a, b, r = interleaved(ours_issue, plain_encode, n=3000, reps=reps)
    report("in-process", "issue vs jwt.encode", us(a), us(b), r, ">= 1.5x", r >= 1.5)
    store.close()


# -- 2. the store ----------------------------------------------------------


def bench_store(tmp: Path, redis_server, reps: int) -> None:
    now = datetime.now(UTC)
    sqlite_store = open_store(
        f"sqlite:///{tmp / 'store.db'}",
        defaults=Settings(True, 86400),
        options={"instance_path": str(tmp)},
    )
    raw = sqlite3.connect(tmp / "store.db", isolation_level=None)
    redis_store = open_store(
        redis_url(redis_server),
        defaults=Settings(True, 86400),
        options={"key_prefix": "bench-store:"},
    )
    # Each store's epoch read against the cheapest round trip to the same
    # store, and its bump (SQLite: an fsync) against its read.
    cases = (
        ("SQLite", sqlite_store, "SELECT 1", lambda: raw.execute("SELECT 1").fetchone(), 3000),
        ("Redis", redis_store, "PING", redis_store.redis.ping, 2000),
    )
    for kind, store, floor_name, floor, n_read in cases:

        def read(store=store) -> None:
            store.token_state("42")

        def bump(store=store) -> None:
            store.bump_epoch(actor="bench", reason="bench", now=now)

        a, b, r = interleaved(read, floor, n=n_read, reps=reps)
        report("store", f"{kind} epoch read vs {floor_name}", us(a), us(b), r, "-", None)
        a, b, r = interleaved(bump, read, n=n_read // 20, reps=reps)
        report("store", f"{kind} bump vs epoch read", us(a), us(b), r, "-", None)
    raw.close()
    sqlite_store.close()
    redis_store.close()


# -- 3, 4, 6. HTTP under gunicorn --------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn with 2 sync workers, no access log, the same settings for every app."""

    def __init__(self, target: str, env: dict[str, str], tmp: Path, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        metrics = tmp / f"metrics-{name}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LINKS_")},
            **env,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.log = (tmp / f"{name}.log").open("wb")
        self.process = subprocess.Popen(
            [gunicorn, "-w", "2", "-b", f"127.0.0.1:{self.port}", "--log-level", "warning", target],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/healthz", timeout=0.5)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not start")

    def workers(self) -> list[str]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return children.read_text().split()

    def worker_cpu_seconds(self) -> float:
        """CPU time (user and system) the workers have used so far."""
        ticks = 0
        for pid in self.workers():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def worker_memory_kib(self) -> list[tuple[int, int]]:
        """(RSS, private) of each worker: private is what no other process shares (USS)."""
        out = []
        for pid in self.workers():
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            field = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
            out.append((field["Rss"], field["Private_Clean"] + field["Private_Dirty"]))
        return out

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def wrk(url: str, body: str, headers: dict[str, str], seconds: int, tmp: Path) -> dict:
    script = tmp / "wrk.lua"
    lua_body = body.replace("\\", "\\\\").replace('"', '\\"')
    lines = [
        'wrk.method = "POST"',
        f'wrk.body = "{lua_body}"',
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses during the load:\n{out}")

    def latency(pct: str) -> float:
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]

    return {"rps": rps, "requests": requests_done, "p50": latency("50"), "p99": latency("99")}


def load(server: Server, case: tuple, seconds: int, tmp: Path) -> dict:
    """One wrk load on ``server``, with the workers' CPU time per request."""
    before = server.worker_cpu_seconds()
    result = wrk(*case, seconds, tmp)
    result["cpu"] = (server.worker_cpu_seconds() - before) / result["requests"]
    return result


def compare_http(
    label: str,
    ours: tuple[Server, tuple],
    bare: tuple[Server, tuple],
    reps: int,
    seconds: int,
    tmp: Path,
    target_rps: float | None,
    target_p99: float | None,
) -> None:
    runs_ours, runs_bare = [], []
    for _ in range(reps):
        runs_ours.append(load(*ours, seconds, tmp))
        runs_bare.append(load(*bare, seconds, tmp))
    med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
    ratios = [a["rps"] / b["rps"] for a, b in zip(runs_ours, runs_bare, strict=True)]
    r = statistics.median(ratios)
    report(
        "HTTP",
        f"{label}: req/s",
        f"{med(runs_ours, 'rps'):.0f}/s",
        f"{med(runs_bare, 'rps'):.0f}/s",
        r,
        f">= {target_rps}x" if target_rps else "-",
        r >= target_rps if target_rps else None,
    )
    p50 = med(runs_ours, "p50") / med(runs_bare, "p50")
    report(
        "HTTP",
        f"{label}: p50 latency",
        f"{med(runs_ours, 'p50') * 1e3:.2f} ms",
        f"{med(runs_bare, 'p50') * 1e3:.2f} ms",
        p50,
        "-",
        None,
    )
    p99 = med(runs_ours, "p99") / med(runs_bare, "p99")
    report(
        "HTTP",
        f"{label}: p99 latency",
        f"{med(runs_ours, 'p99') * 1e3:.2f} ms",
        f"{med(runs_bare, 'p99') * 1e3:.2f} ms",
        p99,
        f"<= {target_p99}x" if target_p99 else "-",
        p99 <= target_p99 if target_p99 else None,
    )
    # Where a request's time goes: the workers' own CPU, the rest being what
    # they wait for (the store, the client) and what the other processes use.
    cpu = [a["cpu"] / b["cpu"] for a, b in zip(runs_ours, runs_bare, strict=True)]
    report(
        "HTTP",
        f"{label}: worker CPU per request",
        us(med(runs_ours, "cpu")),
        us(med(runs_bare, "cpu")),
        statistics.median(cpu),
        "information",
        None,
    )


def service_env(tmp: Path, store_url: str, name: str) -> dict[str, str]:
    digest = lambda k: hashlib.sha256(k.encode()).hexdigest()  # noqa: E731
    config = tmp / f"{name}.toml"
    config.write_text(
        f'ENV = "production"\nPORTAL_BASE_URL = "https://portal.example.com"\n'
        f'STORE_URL = "{store_url}"\nSTORE_KEY_PREFIX = "bench-{name}:"\n'
        f'SECRET_KEY = "{"s" * 48}"\n'
        f'RATE_LIMIT_LINKS_PER_KEY = "100000000 per minute"\n'
        f'[SIGNING_KEYS]\nk1 = "{KEY.decode()}"\n[API_KEYS]\n'
        f'issuer = {{ sha256 = "{digest(ISSUER_KEY)}", roles = ["issuer"] }}\n'
        f'portal = {{ sha256 = "{digest(PORTAL_KEY)}", roles = ["portal"] }}\n'
        f'admin = {{ sha256 = "{digest(ADMIN_KEY)}", roles = ["admin"] }}\n'
    )
    return {"SERVICE_CONFIG": str(config)}


def link_body(user: str) -> dict:
    email = f"{user}@example.com"
    return {
        "user_id": user,
        "email": email,
        "recipients": {"to": [email]},
        "target": "/tickets/1234",
    }


def prepare(server: Server) -> str:
    """Switch auto-login on and return a valid token."""
    requests.patch(
        server.url + "/v1/admin/settings",
        json={"auto_login_enabled": True},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    answer = requests.post(
        server.url + "/v1/links",
        json=link_body("42"),
        headers={"Authorization": f"Bearer {ISSUER_KEY}"},
        timeout=10,
    ).json()
    return answer["url"].split("auto_login=", 1)[1]


def bench_http(tmp: Path, redis_server, reps: int, seconds: int) -> None:
    import json

    bare = Server("bench.bare_app:app", {}, tmp, "bare")
    sqlite_server = Server(
        "wsgi:app", service_env(tmp, f"sqlite:///{tmp / 'http.db'}", "sqlite"), tmp, "sqlite"
    )
    redis_server_http = Server(
        "wsgi:app", service_env(tmp, redis_url(redis_server), "redis"), tmp, "redis"
    )
    try:
        bare_case = (bare, (bare.url + "/bare", "{}", {}))
        for label, server in (
            ("verify, SQLite, sign-in log on", sqlite_server),
            ("verify, Redis, sign-in log on", redis_server_http),
        ):
            token = prepare(server)
            body = json.dumps({"token": token, "client": {"ip": "203.0.113.7"}})
            ours = (
                server,
                (server.url + "/v1/tokens/verify", body, {"Authorization": f"Bearer {PORTAL_KEY}"}),
            )
            is_sqlite = server is sqlite_server
            compare_http(
                label,
                ours,
                bare_case,
                reps,
                seconds,
                tmp,
                0.85 if is_sqlite else 0.75,
                1.5 if is_sqlite else None,
            )
        ours = (
            sqlite_server,
            (
                sqlite_server.url + "/v1/links",
                json.dumps(link_body("42")),
                {"Authorization": f"Bearer {ISSUER_KEY}"},
            ),
        )
        compare_http("issue link, SQLite", ours, bare_case, reps, seconds, tmp, None, None)

        # 4. A batch of 1000 over HTTP against 1000 plain jwt.encode calls.
        session = requests.Session()
        batch = {"items": [link_body(f"user-{i}") for i in range(1000)]}
        headers = {"Authorization": f"Bearer {ISSUER_KEY}"}
        payload = jwt.decode(token, options={"verify_signature": False})

        def post_batch() -> None:
            response = session.post(
                sqlite_server.url + "/v1/links/batch", json=batch, headers=headers, timeout=30
            )
            response.raise_for_status()

        def encodes() -> None:
            for _ in range(1000):
                jwt.encode(payload, KEY, algorithm="HS256", headers={"kid": "k1"})

        a, b, r = interleaved(post_batch, encodes, n=3, reps=reps * 2)
        report(
            "batch",
            "POST /v1/links/batch, 1000 items (ledger on) vs 1000 jwt.encode",
            f"{a * 1e3:.1f} ms",
            f"{b * 1e3:.1f} ms",
            1 / r,
            "<= 1.5x time",
            1 / r <= 1.5,
        )
        session.close()

        # 6. Memory of one worker after all that load: RSS is the target; the
        # private part (not shared with the preloading master) is what each
        # further worker really adds, printed for information.
        bare_rss, bare_private = max(bare.worker_memory_kib())
        for kind, server in (("SQLite", sqlite_server), ("Redis", redis_server_http)):
            ours_rss, ours_private = max(server.worker_memory_kib())
            report(
                "memory",
                f"worker RSS after load ({kind}) vs bare Flask worker",
                f"{ours_rss / 1024:.1f} MiB",
                f"{bare_rss / 1024:.1f} MiB",
                ours_rss / bare_rss,
                "<= 1.2x",
                ours_rss / bare_rss <= 1.2,
            )
            report(
                "memory",
                f"worker private memory (USS) after load ({kind}) vs bare Flask worker",
                f"{ours_private / 1024:.1f} MiB",
                f"{bare_private / 1024:.1f} MiB",
                ours_private / bare_private,
                "information",
                None,
            )
    finally:
        for server in (bare, sqlite_server, redis_server_http):
            server.stop()


# -- 5. growth ---------------------------------------------------------------


def fill_sqlite(store, path: Path, users: int) -> None:
    """Revoke ``users`` users of ``store``'s tenant at once, in the rows revoke_user writes."""
    incarnation = store.token_state("nobody").incarnation  # the tenant's rows are keyed by it
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT OR REPLACE INTO user_epochs (tenant, user_id, epoch, revoked_at)"
        " VALUES (?, ?, 1, 0)",
        ((incarnation, f"user-{i}") for i in range(users)),
    )
    conn.execute("COMMIT")
    conn.close()


def fill_redis(store, users: int) -> None:
    """The same in Redis: the fields of the tenant incarnation's user_epochs hash."""
    user_epochs = f"{store._data()}user_epochs"
    pipe = store.redis.pipeline(transaction=False)
    for start in range(0, users, 10000):
        pipe.hset(
            user_epochs,
            mapping={f"user-{i}": 1 for i in range(start, min(users, start + 10000))},
        )
        pipe.execute()


def bench_growth(tmp: Path, redis_server, reps: int, big: int) -> None:
    keys = ring()
    now = datetime.now(UTC)
    for kind in ("SQLite", "Redis"):
        stores = []
        for size in (10, big):
            if kind == "SQLite":
                path = tmp / f"growth-{size}.db"
                store = open_store(
                    f"sqlite:///{path}",
                    defaults=Settings(True, 86400),
                    options={"instance_path": str(tmp)},
                )
                fill_sqlite(store, path, size)
            else:
                store = open_store(
                    redis_url(redis_server),
                    defaults=Settings(True, 86400),
                    options={"key_prefix": f"bench-growth-{size}:"},
                )
                fill_redis(store, size)
            user = f"user-{size // 2}"
            token, _ = issue_token(
                user, store.token_state(user), target="/", ring=keys, ttl=86400, now=now
            )

            def verify(store=store, token=token) -> None:
                claims = verify_token(token, keys)
                check_epochs(claims, store.token_state(claims.user_id))

            stores.append((store, verify))
        a, b, r = interleaved(stores[1][1], stores[0][1], n=2000, reps=reps)
        # The cost ratio, 1 / r: the median of the repetitions' ratios, as everywhere.
        report(
            "growth",
            f"verify, {big:,} vs 10 revoked users ({kind})",
            us(a),
            us(b),
            1 / r,
            "<= 1.1x cost",
            1 / r <= 1.1,
        )
        for store, _ in stores:
            store.close()

    # Per-item cost of issuing in a batch of 1000 against a batch of 1.
    store = open_store(
        f"sqlite:///{tmp / 'batch.db'}",
        defaults=Settings(True, 86400),
        options={"instance_path": str(tmp)},
    )

    def requests_for(n: int) -> list[LinkRequest]:
        return [
            LinkRequest(
                f"user-{i}", f"user-{i}@example.com", (f"user-{i}@example.com",), "/tickets/1", None
            )
            for i in range(n)
        ]

    one, thousand = requests_for(1), requests_for(1000)

    def issue(batch: list[LinkRequest]) -> None:
        state = store.issue_state([r.user_id for r in batch])
        build_links(
            batch,
            state,
            ring=keys,
            base_url="https://portal.example.com",
            token_param="auto_login",
            now=datetime.now(UTC),
        )

    # Both sides do 1000 links per call, so they interleave like every other figure.
    def one_by_one() -> None:
        for _ in range(1000):
            issue(one)

    a, b, r = interleaved(lambda: issue(thousand), one_by_one, n=3, reps=reps)
    report(
        "growth",
        "issue per item: batch of 1000 vs batch of 1",
        us(a / 1000),
        us(b / 1000),
        1 / r,
        "<= 1.1x cost",
        1 / r <= 1.1,
    )
    tokens = [
        u.url.split("auto_login=")[1]
        for u in build_links(
            thousand,
            store.issue_state([r.user_id for r in thousand]),
            ring=keys,
            base_url="https://p",
            token_param="auto_login",
            now=datetime.now(UTC),
        )[0]
    ]

    def verify_all() -> None:
        for token in tokens:
            claims = verify_token(token, keys)
            check_epochs(claims, store.token_state(claims.user_id))

    def verify_one_1000_times() -> None:
        for _ in range(1000):
            claims = verify_token(tokens[0], keys)
            check_epochs(claims, store.token_state(claims.user_id))

    a, b, r = interleaved(verify_all, verify_one_1000_times, n=3, reps=reps)
    report(
        "growth",
        "verify per token: 1000 distinct tokens vs 1",
        us(a / 1000),
        us(b / 1000),
        1 / r,
        "<= 1.1x cost",
        1 / r <= 1.1,
    )
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter loads")
    sections = ["inprocess", "store", "http", "growth", "ledger", "tenants", "ha"]
    parser.add_argument("--only", choices=sections)
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    seconds = 2 if args.quick else 5
    big = 100_000 if args.quick else 1_000_000
    # The tenants' rows: tenants made one by one, revoked users of the deleted tenant.
    tenants = 10_000 if args.quick else 100_000

    from tests.support.redis_server import RedisServer

    print(
        f"# bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PyJWT {jwt.__version__}, {'quick' if args.quick else 'full'} run\n"
    )
    print("| section | what | ours | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp(prefix="autologin-bench-"))
    try:
        with RedisServer() as redis_server:
            if args.only in (None, "inprocess"):
                bench_inprocess(tmp, reps)
            if args.only in (None, "store"):
                bench_store(tmp, redis_server, reps)
            if args.only in (None, "growth"):
                bench_growth(tmp, redis_server, reps, big)
            if args.only in (None, "ledger"):
                from bench.ledger import bench_ledger

                bench_ledger(tmp, redis_url(redis_server), reps, quick=args.quick)
            if args.only in (None, "tenants"):
                from bench.tenants import bench_tenants

                bench_tenants(tmp, reps, count=tenants, users=tenants, quick=args.quick)
            if args.only in (None, "http"):
                bench_http(tmp, redis_server, reps if not args.quick else 2, seconds)
            if args.only in (None, "ha"):
                from bench.ha import bench_ha  # replicated Redis: bench/ha.py

                bench_ha(reps, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    missed = [row for row in ROWS if row.met is False]
    print(f"\n{len(ROWS)} figures, {len(missed)} targets missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
