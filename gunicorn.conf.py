"""gunicorn settings read from the working folder: shared metrics, fail fast.

The app is loaded once in the master (``preload_app``): a configuration error
stops the server with one line instead of a loop of failing workers, the
store is opened and checked before any worker forks, and the workers share
the master's memory (kept shared by ``pre_fork``).
"""

import gc
import os
import shutil
import tempfile

preload_app = True
worker_class = "sync"
# gunicorn 23+'s control socket lives at one path per user (~/.gunicorn); several
# servers on one machine (hosts of a test, a demo beside `make run`) would take
# it from each other. The service needs none of its commands.
control_socket_disable = True

# prometheus-client's multiprocess mode: every worker writes its counts into
# this folder and /metrics adds them up. It must exist, empty, before the app
# (and so prometheus_client) is imported, which preload_app does right after
# this file is read, before any server hook runs.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_own_dir = not _metrics_dir
if _own_dir:
    _metrics_dir = os.path.join(tempfile.gettempdir(), f"autologin-metrics-{os.getpid()}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
shutil.rmtree(_metrics_dir, ignore_errors=True)
os.makedirs(_metrics_dir, exist_ok=True)


def pre_fork(server, worker):
    # Every object the preloaded app made so far goes to a generation the
    # collector never walks. Walking them writes to their pages, which a
    # worker then stops sharing with the master: about 9 MiB more private
    # memory a worker once a full collection has run (docs/PERFORMANCE.md).
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
