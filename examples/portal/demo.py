"""``make demo``: one service, one portal, two tenants, and an email of each whose link works.

1. Generates throwaway demo keys (signing key, platform admin/issuer/portal
   API keys) into a temporary folder, with a service config naming only their
   digests.
2. Starts the service (development, SQLite, gunicorn on 127.0.0.1:8000) with
   that config, and the portal on port 8080 serving two tenants by host name:
   ``acme.localhost`` and ``globex.localhost`` (browsers resolve every
   ``*.localhost`` name to this machine; this script sends the ``Host`` header
   to 127.0.0.1 itself, since the system resolver may not).
3. With the platform admin key: creates tenants ``acme`` and ``globex``, each
   with its portal address, makes each its own issuer key (a tenant key), and
   switches auto-login on in each.
4. Prints a rendered ticket email of each tenant for its user 42 (two people:
   Alice of acme, Gloria of globex), checks that each link signs in on its own
   host, and that acme's link pasted on globex's host is refused.

The API keys go into a file of the demo folder (``source`` it), not onto the
screen. Ctrl-C stops both servers and deletes the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
from service.emails import RenderedEmail, describe, render_ticket_update

ROOT = Path(__file__).resolve().parents[2]

HOST = "127.0.0.1"
SERVICE_PORT = int(os.environ.get("DEMO_SERVICE_PORT", "8000"))
PORTAL_PORT = int(os.environ.get("DEMO_PORTAL_PORT", "8080"))
SERVICE = f"http://{HOST}:{SERVICE_PORT}"
#: The default tenant's portal: the deployment's PORTAL_BASE_URL.
PORTAL = f"http://{HOST}:{PORTAL_PORT}"
#: The demo's tenants: their user 42 and the host name of their portal.
TENANTS = {
    "acme": {"email": "alice@acme.example.com", "host": "acme.localhost"},
    "globex": {"email": "gloria@globex.example.com", "host": "globex.localhost"},
}


def portal_of(tenant: str) -> str:
    """Return the portal address of a demo tenant (its ``portal_base_url``)."""
    return f"http://{TENANTS[tenant]['host']}:{PORTAL_PORT}"


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


def _call(method: str, path: str, key: str, body: dict[str, object]) -> dict[str, object]:
    """Call the service's API; stop the demo with the problem document if it refuses."""
    response = requests.request(
        method, SERVICE + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=5
    )
    if not response.ok:
        # A problem document: its code and detail, never the key.
        raise SystemExit(f"demo: {method} {path} answered {response.status_code} {response.text}")
    return response.json()


def _set_up_tenant(tenant: str, admin_key: str) -> str:
    """Create ``tenant`` with its portal, switch auto-login on; return its new issuer key."""
    _call(
        "POST",
        "/v1/admin/tenants",
        admin_key,
        {"tenant_id": tenant, "portal_base_url": portal_of(tenant), "reason": "make demo"},
    )
    made = _call(
        "POST",
        f"/v1/tenants/{tenant}/admin/keys",
        admin_key,
        {"name": f"{tenant}-mail", "roles": ["issuer"], "reason": "make demo: the mail system"},
    )
    _call("PATCH", f"/v1/tenants/{tenant}/admin/settings", admin_key, {"auto_login_enabled": True})
    return str(made["key"])


def _open(url: str, host: str) -> requests.Response:
    """GET ``url`` of the portal as a browser on ``host`` would, following its redirects.

    The request goes to 127.0.0.1 with ``Host: <host>:<port>``, so the name
    need not resolve here; a fresh session keeps that browser's cookies.
    """
    path = url.split(f":{PORTAL_PORT}", 1)[1]
    with requests.Session() as browser:
        for _ in range(5):
            response = browser.get(
                f"http://{HOST}:{PORTAL_PORT}{path}",
                headers={"Host": f"{host}:{PORTAL_PORT}"},
                allow_redirects=False,
                timeout=5,
            )
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            path = response.headers["Location"]
    raise SystemExit(f"demo: too many redirects on {host}")


def _signed_in_as(response: requests.Response) -> str:
    match = re.search(r'id="signed-in">Signed in as <strong>([^<]+)</strong>', response.text)
    return match.group(1) if match else "nobody"


def _message(response: requests.Response) -> str:
    match = re.search(r'<ul class="messages"[^>]*>\s*<li[^>]*>([^<]+)</li>', response.text)
    return match.group(1) if match else ""


def _write_keys(folder: Path, keys: dict[str, str]) -> Path:
    """Write the demo's API keys as shell exports, readable by this user only."""
    path = folder / "keys.env"
    path.touch(mode=0o600)
    path.write_text("".join(f"export {name}={key}\n" for name, key in keys.items()))
    return path


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
            # One platform key with the portal role verifies in every tenant.
            "AUTOLOGIN_PORTAL_KEY": keys["portal"],
            "AUTOLOGIN_TENANT_HOSTS": ",".join(
                [f"{t['host']}={tenant}" for tenant, t in TENANTS.items()] + [f"{HOST}=default"]
            ),
            "PORTAL_SECRET_KEY": secrets.token_hex(32),
            # Plain http on loopback: the device cookie is not Secure.
            "PORTAL_ENV": "development",
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

        issuer_keys = {tenant: _set_up_tenant(tenant, keys["admin"]) for tenant in TENANTS}
        emails: dict[str, RenderedEmail] = {}
        for tenant, user in TENANTS.items():
            # Each tenant's mail system: its own issuer key and portal address.
            with LinkClient(
                SERVICE, issuer_keys[tenant], tenant=tenant, portal_base_url=portal_of(tenant)
            ) as client:
                emails[tenant] = render_ticket_update(
                    client,
                    user_id="42",
                    email=user["email"],
                    to=[user["email"]],
                    target="/tickets/1234",
                )
        with LinkClient(
            SERVICE, issuer_keys["acme"], tenant="acme", portal_base_url=portal_of("acme")
        ) as client:
            cc = render_ticket_update(
                client,
                user_id="42",
                email=TENANTS["acme"]["email"],
                to=[TENANTS["acme"]["email"]],
                cc=["bob@acme.example.com"],
                target="/tickets/1234",
            )

        rule = "=" * 78
        for tenant, rendered in emails.items():
            print(f"\n{rule}\nTenant {tenant}: the ticket email to {TENANTS[tenant]['email']}")
            print(f"{rule}\n{rendered.message.as_string()}")
        print(rule)
        for tenant, rendered in emails.items():
            print(f"{tenant}'s link: {describe(rendered.link)}\n  {rendered.link.url}")
        print(f"acme's email with Cc bob@acme.example.com gets a {describe(cc.link)}:")
        print(f"  {cc.link.url}\n{rule}")

        # Check each link where it belongs, and acme's where it does not.
        checks = [
            ("acme", "acme.localhost", "Alice Acme"),
            ("globex", "globex.localhost", "Gloria Globex"),
            ("acme", "globex.localhost", "nobody"),
        ]
        failed = False
        for tenant, host, expected in checks:
            page = _open(emails[tenant].link.url, host)
            who = _signed_in_as(page)
            said = _message(page)
            print(
                f"checked: {tenant}'s link opened on {host}: signed in as {who}"
                + (f' ("{said}")' if said else "")
            )
            failed |= who != expected
        if failed:
            print("demo: a link did not do what it should (see above and the logs)")

        key_file = _write_keys(
            folder,
            {
                "ADMIN": keys["admin"],
                "ISSUER": keys["issuer"],
                "PORTAL": keys["portal"],
                "ACME_ISSUER": issuer_keys["acme"],
                "GLOBEX_ISSUER": issuer_keys["globex"],
            },
        )
        print(
            f"""
Open each link in Chromium or Firefox (they resolve *.localhost to this machine):
you land signed in on ticket 1234 of that tenant's helpdesk, and the token is
gone from the address bar. Paste acme's link on globex.localhost instead: the
portal asks globex's tenant, which refuses it ("This sign-in link is not
valid"). Password sign-in: 42 / alice (acme), 42 / gloria (globex).

The demo keys (throwaway, for this run only) are in a file, not on screen:

  source {key_file}

Void every link of acme, and only acme's (globex's link still works):

  curl -s {SERVICE}/v1/tenants/acme/admin/epoch/bump -H "Authorization: Bearer $ADMIN" \\
       -H 'Content-Type: application/json' -d '{{"reason": "demo"}}'

Or void one link: find its link_id in globex's ledger, then void it (the page
then says "This sign-in link no longer works" and asks for a password):

  curl -s '{SERVICE}/v1/tenants/globex/admin/links?user_id=42' -H "Authorization: Bearer $ADMIN"
  curl -s {SERVICE}/v1/tenants/globex/admin/links/<link_id>/revoke \\
       -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \\
       -d '{{"reason": "demo: this email was forwarded"}}'

Bind each link of globex to the browser that opens it first; then render a new
email (below), open its link in one browser, and in another (or a private
window) it asks for a password:

  curl -s -X PATCH {SERVICE}/v1/tenants/globex/admin/settings \\
       -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \\
       -d '{{"bind_to_first_device": true}}'

Render more emails (the key comes from the environment, never the command line):

  AUTOLOGIN_ISSUER_KEY=$GLOBEX_ISSUER .venv/bin/python -m service.emails \\
      --tenant globex --portal-url {portal_of("globex")} --user 42 \\
      --email {TENANTS["globex"]["email"]} --to {TENANTS["globex"]["email"]} \\
      --target /tickets/1235

Without a browser: curl -si --resolve acme.localhost:{PORTAL_PORT}:{HOST} '<acme's link>'
The default tenant's portal is {PORTAL} (the platform keys $ISSUER and $PORTAL).
Logs: {service_log} and {portal_log}
Service {SERVICE}, portal {portal_of("acme")} and {portal_of("globex")}. Ctrl-C stops both.
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
