"""gunicorn settings read from the working folder: shared metrics, fail fast.

The app is loaded once in the master (``preload_app``): a configuration error
stops the server with one line instead of a loop of failing workers, and the
store is opened and checked before any worker forks.
"""

import os
import shutil
import tempfile

preload_app = True
worker_class = "sync"


def on_starting(server):
    # prometheus-client's multiprocess mode: every worker writes its counts
    # into this folder, /metrics adds them up. It must be set (and emptied)
    # before the app, and so prometheus_client, is imported.
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = os.path.join(tempfile.gettempdir(), f"autologin-metrics-{os.getpid()}")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(path).startswith("autologin-metrics-"):
        shutil.rmtree(path, ignore_errors=True)
