"""The WSGI entry point: ``gunicorn -w 2 -b 127.0.0.1:8000 wsgi:app``."""

import sys

from service import create_app
from service.errors import ConfigError

try:
    app = create_app()
except ConfigError as e:
    # One clear line and a non-zero exit. Exit status 4 is gunicorn's
    # "app failed to load": the master stops instead of restarting workers.
    print(f"configuration error: {e}", file=sys.stderr, flush=True)
    raise SystemExit(4) from None
