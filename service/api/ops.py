"""Operations, no key: health, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from service.metrics import render

bp = Blueprint("ops", __name__)

_OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"


@cache
def _openapi_text() -> str:
    return _OPENAPI.read_text()


@bp.get("/healthz")
def healthz() -> Any:
    """Answer while the process serves."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    """Answer 200 when the store answers, else 503 (the StoreError handler of service.http).

    A store that answers but refuses changes for now (fewer Redis replicas
    than REDIS_MIN_REPLICAS_ACK) is ``degraded``: still 200, since issuing
    and verifying go on, with the reason.
    """
    why = current_app.extensions["store"].ping()
    if why:
        return jsonify({"status": "degraded", "detail": why})
    return jsonify({"status": "ready"})


@bp.get("/metrics")
def metrics() -> Response:
    """Expose Prometheus metrics of every worker."""
    return render(current_app.extensions["metrics"])


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI 3.1 document of every call."""
    return Response(_openapi_text(), mimetype="application/json")


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document as a dict (for tests and tools)."""
    return json.loads(_openapi_text())
