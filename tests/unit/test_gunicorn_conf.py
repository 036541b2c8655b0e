"""The gunicorn settings file: what it does to the master before each fork."""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def test_the_master_freezes_its_objects_before_forking_a_worker(tmp_path, monkeypatch):
    # Loading the file prepares the metrics folder it is given; give it one of our own.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", CONF)
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert conf.preload_app is True
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        conf.pre_fork(server=None, worker=None)
        assert gc.get_freeze_count() > 1000  # the whole preloaded app, not a handful
    finally:
        gc.unfreeze()
