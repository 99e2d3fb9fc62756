from __future__ import annotations

from django.conf import settings

from config.celery import app as celery_app


def test_the_scheduler_runs_the_due_mailings_task_every_few_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["start-due-mailings"]

    celery_app.loader.import_default_modules()
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"].total_seconds() <= 60


def test_the_scheduler_prunes_unmatched_receipts_every_hour():
    entry = settings.CELERY_BEAT_SCHEDULE["prune-unmatched-receipts"]

    celery_app.loader.import_default_modules()
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"].total_seconds() == 3600
