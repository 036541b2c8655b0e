"""The example portal (examples/portal/app.py), loaded as a module of its own for each test file."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.support.gunicorn_server import ROOT


def load_example_portal(name: str) -> ModuleType:
    """Load examples/portal/app.py as a fresh module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "portal" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
