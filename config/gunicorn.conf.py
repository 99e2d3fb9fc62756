"""gunicorn's settings for serving Engage: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Command-line options override these (`--workers 8`), and so does GUNICORN_CMD_ARGS.

Threaded workers (gthread) keep clients' connections alive between calls: the mobile app and
the proxy in front of Engage send many calls over one connection, where gunicorn's sync workers
close it after every answer. On the member API's benchmark (api_member_home_p95) a new
connection per call cost the server about 0.5 ms of CPU per call and the client as much again.
Each thread holds a database connection of its own (workers x threads in all).
"""

import os

bind = os.environ.get("ENGAGE_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", str(2 * (os.cpu_count() or 1))))
worker_class = "gthread"
threads = int(os.environ.get("ENGAGE_WEB_THREADS", "4"))
# Seconds an idle kept-alive connection waits for its next call.
keepalive = 5
backlog = 2048
