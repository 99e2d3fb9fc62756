"""The pipeline fault scenarios (bench/chaos/pipeline.py) at small size: each keeps Engage's
promise — no message duplicated, none lost, every message of the audience accounted for —
while the fault it injects really happened."""

from __future__ import annotations

import pytest

from bench.chaos import pipeline

pytestmark = [pytest.mark.pipeline, pytest.mark.slow, pytest.mark.timeout(150)]


def _accounted(line: dict) -> bool:
    return line["audience"] == line["sent"] + line["failed"] + line["skipped"] + line["unknown"]


def _kept_the_promise(line: dict) -> None:
    assert line["state"] == "completed", line
    assert line["duplicates"] == 0, line
    assert line["lost"] == 0, line
    assert line["unexpected"] == 0, line
    assert line["audience"] > 0 and _accounted(line), line


def test_killing_the_worker_three_times_duplicates_and_loses_nothing(transactional_db):
    line = pipeline.worker_killed("small")

    _kept_the_promise(line)
    assert line["kills"] == 3, line
    # Each kill leaves in doubt at most the chunk each worker process was handing over; the
    # rest of their claims went back to the queue.
    assert line["unknown"] <= line["in_doubt_bound"], line


def test_batch_tasks_delivered_three_times_to_two_workers_send_each_message_once(
        transactional_db):
    line = pipeline.tasks_redelivered("small")

    _kept_the_promise(line)
    # Every batch task was published three times, and every copy ran.
    assert line["batch_tasks_published"] >= 3 and line["batch_tasks_published"] % 3 == 0, line
    assert line["batch_tasks_run"] == line["batch_tasks_published"], line


def test_redis_shut_down_twice_without_saving_duplicates_and_loses_nothing(transactional_db):
    line = pipeline.redis_restart("small")

    _kept_the_promise(line)
    assert line["restarts"] == 2, line


def test_poison_members_fail_alone_within_five_attempts_and_the_queue_drains(
        transactional_db):
    line = pipeline.poison_members("small")

    _kept_the_promise(line)
    assert line["poison_sent"] == 0 and line["poison_attempts_max"] <= 5, line
    assert line["siblings_unsent"] == 0, line
    assert line["queue_left"] == 0, line
