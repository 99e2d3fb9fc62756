"""The Celery app of the `tasks_redelivered` scenario's workers: Engage's own app, plus a hook
that publishes every batch task twice more (same id, same arguments, same queue and eta), as a
broker redelivering each message three times would.

Run as `celery -A bench.chaos.redelivery worker`; Engage's code is not changed, the copies are
made beside it in the worker processes that publish the batches.
"""

from __future__ import annotations

from typing import Any

import redis
from celery.signals import after_task_publish, task_prerun

from config.celery import app

__all__ = ["app"]

BATCH_TASK = "communications.tasks.dispatch_batch"
COPIES = 2
# Counters in the broker's Redis database (flushed before each scenario), so the scenario can
# show that the copies were published and run: `published` counts originals and copies.
PUBLISHED_KEY = "engage:chaos:batch_published"
RUN_KEY = "engage:chaos:batch_run"
# Ids already copied in this process: a copy's own publish fires the hook again.
_copied: set[str] = set()


@after_task_publish.connect
def _batch_task_published_again(sender: str | None = None, headers: dict[str, Any] | None = None,
                                body: Any = None, routing_key: str | None = None,
                                **kwargs: Any) -> None:
    headers = headers or {}
    task_id = headers.get("id")
    if sender != BATCH_TASK or not task_id or task_id in _copied:
        return
    _copied.add(task_id)
    _count(PUBLISHED_KEY, 1 + COPIES)
    args, task_kwargs = (body[0], body[1]) if isinstance(body, list | tuple) else ((), {})
    for _ in range(COPIES):
        app.send_task(BATCH_TASK, args=args, kwargs=task_kwargs, task_id=task_id,
                      queue=routing_key, eta=headers.get("eta"))


@task_prerun.connect
def _batch_task_counted(sender: Any = None, **kwargs: Any) -> None:
    if getattr(sender, "name", None) == BATCH_TASK:
        _count(RUN_KEY, 1)


def _count(key: str, n: int) -> None:
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        client.incrby(key, n)
    finally:
        client.close()
