"""Run the real service under gunicorn on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(type(value))


def write_toml(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as a TOML file for ``$SERVICE_CONFIG``."""
    path.write_text("".join(f"{key} = {_toml_value(v)}\n" for key, v in config.items()))
    return path


class GunicornServer:
    """``gunicorn -w N wsgi:app`` in a subprocess, with its output in a file."""

    def __init__(self, config: dict[str, Any], workdir: Path, *, workers: int = 2) -> None:
        self.config_path = write_toml(workdir / "service.toml", config)
        self.workdir = workdir
        self.workers = workers
        self.port = free_port()
        self.metrics_dir = workdir / "metrics"
        self.log_path = workdir / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINKS_")}
        env["SERVICE_CONFIG"] = str(self.config_path)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        return env

    def command(self) -> list[str]:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        return [
            gunicorn,
            "-w",
            str(self.workers),
            "-b",
            f"127.0.0.1:{self.port}",
            "--access-logfile",
            "-",
            "--log-level",
            "debug",
            "wsgi:app",
        ]

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout}s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def worker_pids(self) -> set[int]:
        """Return the pids of the workers that wrote metrics (i.e. served requests)."""
        pids = set()
        for path in self.metrics_dir.glob("*.db"):
            tail = path.stem.rsplit("_", 1)[-1]
            if tail.isdigit():
                pids.add(int(tail))
        return pids

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> GunicornServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
