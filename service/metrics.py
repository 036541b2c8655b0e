"""Prometheus metrics, counted over every worker of the server.

Under gunicorn, ``gunicorn.conf.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh folder before any worker starts; prometheus-client then keeps each
worker's counts in files there and ``/metrics`` adds them up. Without it (the
test client, ``flask run``) the counts live in the process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

__all__ = ["Metrics", "init_app", "render"]


class Metrics:
    """The service's counters and its request latency histogram."""

    def __init__(self) -> None:
        #: Counts of this process (single-process mode only).
        self.registry = CollectorRegistry(auto_describe=True)
        self.links = Counter(
            "autologin_links_issued",
            "Links answered, with or without a token, by reason",
            ["auto_login", "reason"],
            registry=self.registry,
        )
        self.verifications = Counter(
            "autologin_verifications",
            "Token verifications by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.epoch_bumps = Counter(
            "autologin_epoch_bumps", "Global epoch bumps", registry=self.registry
        )
        self.user_revocations = Counter(
            "autologin_user_revocations", "Per-user revocations", registry=self.registry
        )
        self.link_revocations = Counter(
            "autologin_link_revocations", "Single links voided", registry=self.registry
        )
        self.latency = Histogram(
            "autologin_request_duration_seconds",
            "Request latency by endpoint",
            ["endpoint", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )


def render(metrics: Metrics) -> Response:
    """Return the exposition of every worker's counts (or this process's)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = metrics.registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Attach the metrics and time every request."""
    # The *_created series double the exposition and say nothing useful here.
    disable_created_metrics()
    metrics = Metrics()
    app.extensions["metrics"] = metrics

    @app.after_request
    def observe(response: Any) -> Any:
        # The request's start, taken once by service.logs for its log line.
        started = g.get("request_started")
        if started is not None:
            endpoint = request.endpoint or "unmatched"
            metrics.latency.labels(endpoint, request.method).observe(time.perf_counter() - started)
        return response
