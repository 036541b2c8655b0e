"""Serve a WSGI app over real HTTP in a thread, and a canned fake of the service."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server


@contextmanager
def serving(app, port: int = 0, **options: Any) -> Iterator[str]:
    """Serve a WSGI app over real HTTP on a loopback port (a free one by default), in a thread.

    ``options`` go to werkzeug's ``make_server`` (``request_handler``, for one).
    """
    server = make_server("127.0.0.1", port, app, threaded=True, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


class Canned:
    """A fake service: records each request, answers ``status`` and ``body``."""

    def __init__(self, status: int = 200, body: bytes = b"{}") -> None:
        self.status, self.body = status, body
        self.requests: list[dict] = []
        #: When set, every answer waits for ``release`` (a slow service).
        self.slow = False
        self.release = threading.Event()
        #: Where it answers, once served (see :func:`serving_canned`).
        self.url = ""

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.requests.append(
            {
                "path": environ["PATH_INFO"],
                "authorization": environ.get("HTTP_AUTHORIZATION"),
                "json": json.loads(environ["wsgi.input"].read(length) or b"null"),
            }
        )
        if self.slow:
            self.release.wait(10)
        start_response(f"{self.status} Canned", [("Content-Type", "application/json")])
        return [self.body]

    def answer(self, status: int, body) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()


@contextmanager
def serving_canned(canned: Canned) -> Iterator[Canned]:
    """Serve ``canned`` in a thread; release any answer still waiting before stopping it."""
    with serving(canned) as url:
        canned.url = url
        try:
            yield canned
        finally:
            canned.release.set()
