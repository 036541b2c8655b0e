"""``make demo``: the service and the example portal, and an email whose link works.

1. Generates throwaway demo keys (signing key, admin/issuer/portal API keys)
   into a temporary folder, with a service config naming only their digests.
2. Starts the service (development, SQLite, gunicorn on 127.0.0.1:8000) with
   that config, and the portal on 127.0.0.1:8080.
3. Switches auto-login on through the admin API.
4. Prints a rendered ticket email for user 42 (one recipient: a link with a
   token) and the link the same email gets with a Cc (plain).

Ctrl-C stops both servers and deletes the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from service.client import LinkClient
from service.emails import describe, render_ticket_update

ROOT = Path(__file__).resolve().parents[2]

HOST = "127.0.0.1"
SERVICE_PORT = int(os.environ.get("DEMO_SERVICE_PORT", "8000"))
PORTAL_PORT = int(os.environ.get("DEMO_PORTAL_PORT", "8080"))
SERVICE = f"http://{HOST}:{SERVICE_PORT}"
PORTAL = f"http://{HOST}:{PORTAL_PORT}"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) != 0


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: {url} exited ({process.returncode}):\n{log.read_text()}")
        try:
            requests.get(url, timeout=0.5, allow_redirects=False)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"demo: {url} did not answer within {timeout:.0f}s:\n{log.read_text()}")


def _toml_table(table: dict[str, str]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in table.items()) + "}"


def _write_config(folder: Path) -> dict[str, str]:
    """Write the demo service config; return the plain API keys by role."""
    keys = {
        role: f"demo-{role}-{secrets.token_urlsafe(24)}" for role in ("admin", "issuer", "portal")
    }
    api_keys = ", ".join(
        f'"demo-{role}" = {{sha256 = "{hashlib.sha256(key.encode()).hexdigest()}", '
        f'roles = ["{role}"]}}'
        for role, key in keys.items()
    )
    (folder / "service.toml").write_text(
        'ENV = "development"\n'
        f'PORTAL_BASE_URL = "{PORTAL}"\n'
        f'STORE_URL = "sqlite:///{folder / "demo.db"}"\n'
        f"SIGNING_KEYS = {_toml_table({'demo1': secrets.token_urlsafe(48)})}\n"
        # Set, like the keys: nothing is generated into (or printed from) ./instance.
        f'SECRET_KEY = "{secrets.token_urlsafe(48)}"\n'
        f"API_KEYS = {{{api_keys}}}\n"
    )
    return keys


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def main() -> int:
    for port in (SERVICE_PORT, PORTAL_PORT):
        if not _port_free(port):
            print(f"demo: port {port} is in use (is `make run` running?); stop it first.")
            return 1
    folder = Path(tempfile.mkdtemp(prefix="autologin-demo-"))
    processes: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C (and a closed terminal or a kill) stops both servers, in order:
    # they run in their own sessions, so only this process gets the signal.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        keys = _write_config(folder)
        bin_dir = Path(sys.executable).parent
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINKS_")}
        service_env = {**env, "SERVICE_CONFIG": str(folder / "service.toml")}
        service_log, portal_log = folder / "service.log", folder / "portal.log"
        processes.append(
            _start(
                [str(bin_dir / "gunicorn"), "-w", "2", "-b", f"{HOST}:{SERVICE_PORT}", "wsgi:app"],
                service_env,
                service_log,
            )
        )
        _wait(SERVICE + "/healthz", processes[0], service_log)
        portal_env = {
            **env,
            "AUTOLOGIN_SERVICE_URL": SERVICE,
            "AUTOLOGIN_PORTAL_KEY": keys["portal"],
            "PORTAL_SECRET_KEY": secrets.token_hex(32),
            "PYTHONUNBUFFERED": "1",
        }
        processes.append(
            _start(
                [
                    sys.executable,
                    str(Path(__file__).with_name("app.py")),
                    "--port",
                    str(PORTAL_PORT),
                ],
                portal_env,
                portal_log,
            )
        )
        _wait(PORTAL + "/login", processes[1], portal_log)

        admin = {"Authorization": f"Bearer {keys['admin']}"}
        response = requests.patch(
            SERVICE + "/v1/admin/settings",
            json={"auto_login_enabled": True},
            headers=admin,
            timeout=5,
        )
        response.raise_for_status()

        with LinkClient(SERVICE, keys["issuer"], portal_base_url=PORTAL) as client:
            one = render_ticket_update(
                client,
                user_id="42",
                email="alice@example.com",
                to=["alice@example.com"],
                target="/tickets/1234",
            )
            two = render_ticket_update(
                client,
                user_id="42",
                email="alice@example.com",
                to=["alice@example.com"],
                cc=["bob@example.com"],
                target="/tickets/1234",
            )
        rule = "=" * 78
        print(f"\n{rule}\nThe ticket email to alice@example.com alone:\n{rule}")
        print(one.message.as_string())
        print(f"{rule}\nThe link: {describe(one.link)}\n  {one.link.url}\n")
        print(f"The same email with Cc bob@example.com gets a {describe(two.link)}:")
        print(f"  {two.link.url}\n{rule}")
        print(
            f"""
Open the first link in a browser: you land signed in on ticket 1234, and the
token is gone from the address bar. The demo keys (throwaway, for this run only):

  export ADMIN={keys["admin"]}
  export ISSUER={keys["issuer"]}
  export PORTAL={keys["portal"]}

Void every link, then open the same link in a private window: the portal asks
you to sign in ("expired or revoked"). Password sign-in: 42 / alice.

  curl -s {SERVICE}/v1/admin/epoch/bump -H "Authorization: Bearer $ADMIN" \\
       -H 'Content-Type: application/json' -d '{{"reason": "demo"}}'

Render more emails (the key comes from the environment, never the command line):

  AUTOLOGIN_ISSUER_KEY=$ISSUER .venv/bin/python -m service.emails --user 42 \\
      --email alice@example.com --to alice@example.com --target /tickets/1235

Logs: {service_log} and {portal_log}
Service {SERVICE}, portal {PORTAL}. Ctrl-C stops both.
""",
            flush=True,
        )
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        for log in (service_log, portal_log):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        print("demo: a server stopped on its own (its log is above).")
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping the service and the portal")
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
