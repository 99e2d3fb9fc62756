"""Django's PostgreSQL backend, with the connection health check run at most once a second.

Django's check (CONN_HEALTH_CHECKS) is a `SELECT 1` round trip before the first query of every
request: on the app's home call that was a fifth of its statements and about 0.1 ms of CPU on
each side. It guards against a persistent connection that died while idle (the server
restarted, a proxy cut it), so a connection that passed it less than
HEALTH_CHECK_INTERVAL_S ago skips it: one that dies within that second fails its next query, as
any connection under load does when the server goes away mid-request, and Django closes it at
the end of that request (errors_occurred), so the next one connects anew.
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

HEALTH_CHECK_INTERVAL_S = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _health_checked_at = float("-inf")

    def close_if_health_check_failed(self) -> None:
        if (self.connection is not None and self.health_check_enabled
                and not self.health_check_done
                and time.monotonic() - self._health_checked_at < HEALTH_CHECK_INTERVAL_S):
            self.health_check_done = True
            return
        checking = self.connection is not None and not self.health_check_done
        super().close_if_health_check_failed()
        if checking and self.connection is not None:
            self._health_checked_at = time.monotonic()

    def connect(self) -> None:
        super().connect()
        # A new connection is as good as a checked one.
        self._health_checked_at = time.monotonic()
