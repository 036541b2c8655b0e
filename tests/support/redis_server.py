"""A throwaway ``redis-server`` for tests: free loopback port, private temp dir.

Used by the store fixtures (parametrised over SQLite and Redis) and by the
Redis store's own tests, which stop, restart and kill it to check recovery
and durability.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["RedisServer", "RedisServerNotFoundError", "redis_server_binary"]

#: Longest wait for a fresh server to answer PING (loading a big AOF included).
START_TIMEOUT_SECONDS = 10.0
#: Longest wait for a stopped server to exit.
STOP_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.02


class RedisServerNotFoundError(RuntimeError):
    """No ``redis-server`` binary on this machine."""


def redis_server_binary() -> str:
    """Return the path of ``redis-server`` ($REDIS_SERVER_BIN or $PATH)."""
    path = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not path:
        raise RedisServerNotFoundError(
            "redis-server not found: install it (apt-get install redis-server, "
            "brew install redis) or set REDIS_SERVER_BIN to its path"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answering_pid(port: int) -> int | None:
    """Return the pid of the Redis that answers PING on ``port``, if one does."""
    # Raw RESP keeps this module free of redis-py. "-LOADING" is not ready yet, and
    # the pid tells our server from another one that took the port first.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\nINFO server\r\n")
            data = b""
            while b"\r\n" not in data.partition(b"process_id:")[2]:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    pid = data.partition(b"process_id:")[2].partition(b"\r\n")[0]
    return int(pid) if data.startswith(b"+PONG") and pid.isdigit() else None


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1`` that tests may stop, restart or kill."""

    def __init__(self, *, appendonly: bool = False, extra_args: Sequence[str] = ()) -> None:
        self.binary = redis_server_binary()
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        #: Working directory: AOF files and ``redis.log`` live here across restarts.
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        # Removed by close(), or when this object goes away after a mere stop(),
        # without the ResourceWarning that TemporaryDirectory would give then.
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain redis-py client of this server (strings in, strings out); close it after."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start the server (again on the same port and dir) and wait until it answers."""
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        if self.port:
            self._spawn()
            return self
        # First start: another process may grab the free port before we bind it.
        for _ in range(5):
            self.port = _free_port()
            try:
                self._spawn()
                return self
            except RuntimeError:
                if "Address already in use" not in self._log_tail():
                    raise
        raise RuntimeError("redis-server: no free port found after 5 tries")

    def _spawn(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.dir),
            "--logfile", "redis.log",
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while _answering_pid(self.port) != self._process.pid:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"redis-server exited at start:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING:\n{self._log_tail()}")
            time.sleep(_POLL_SECONDS)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM: the AOF is flushed) and wait for it."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, and wait for it."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open but nothing answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            process.send_signal(signal.SIGCONT)  # a paused server must see the signal too
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Kill the server if it runs and delete its directory."""
        self.kill()
        self._remove_dir()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
