from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("engage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect
def _forget_queries(**kwargs: object) -> None:
    # With DEBUG on, Django keeps the SQL of every query on the connection; a long-lived
    # development worker would grow by that much per batch.
    from django.db import reset_queries

    reset_queries()
