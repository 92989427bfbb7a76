"""gunicorn settings: ``gunicorn -c server/gunicorn.conf.py 'server:create_app()'``.

SCALING_BIND (e.g. 0.0.0.0:8080) or PORT choose the address (default 127.0.0.1:8000);
SCALING_WORKERS (or WEB_CONCURRENCY) the number of worker processes.
"""

import multiprocessing
import os

bind = os.environ.get("SCALING_BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(
    os.environ.get("SCALING_WORKERS")
    or os.environ.get("WEB_CONCURRENCY")
    # Answers are CPU-bound and short: one worker per core plus one keeps the tail latency
    # low (2 * cores + 1, gunicorn's rule for I/O-bound apps, doubled p99 on 2 cores).
    or min(multiprocessing.cpu_count() + 1, 8)
)
worker_class = "sync"
# Laws are loaded once in the master and shared by the forked workers.
preload_app = True
timeout = 30
graceful_timeout = 10
# Bounded requests: oversized headers or lines are refused by gunicorn itself.
limit_request_line = 8190
limit_request_fields = 50
accesslog = os.environ.get("SCALING_ACCESS_LOG")  # "-" for stdout; off by default
errorlog = "-"
loglevel = os.environ.get("SCALING_LOG_LEVEL", "info")
