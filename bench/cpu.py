"""CPU time of each side of a measured run (the workers, the peer, PostgreSQL), read from the
kernel's accounting of their processes.

On a shared machine a run's messages/s move with whatever else runs beside it, while the CPU
each message costs each side stays put (Huawei push measured 0.66-0.68 ms per message over runs
whose rate went from 636 to 1,391/s): the figure that says what a message costs, and so how
many cores a rate needs.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

Sides = dict[str, Callable[[], list[psutil.Process]]]


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        main = psutil.Process(pid)
        return [main, *main.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def postgres_processes() -> list[psutil.Process]:
    """Every PostgreSQL process: the backends of every connection and the writers behind them
    (WAL, checkpoints), whose work the statements caused."""
    return [process for process in psutil.process_iter(["name"])
            if process.info["name"] == "postgres"]


def _seconds(processes: list[psutil.Process]) -> dict[int, float]:
    spent = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        # children_*: what the process's ended and reaped children spent (a PostgreSQL
        # backend whose connection closed during the run, a replaced pool child).
        spent[process.pid] = (times.user + times.system + times.children_user
                              + times.children_system)
    return spent


class CpuMeter:
    """`with CpuMeter(sides) as meter:` around a run, then `meter.per_message_ms(n)`.

    Processes that start during the run count from zero; one that ends during it is counted
    through its parent (the postmaster, the worker), which reaps it."""

    def __init__(self, sides: Sides) -> None:
        self._sides = sides
        self._start: dict[str, dict[int, float]] = {}
        self._end: dict[str, dict[int, float]] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: _seconds(find()) for name, find in self._sides.items()}
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._end = {name: _seconds(find()) for name, find in self._sides.items()}

    def per_message_ms(self, messages: int) -> dict[str, float]:
        spent = {}
        for name, end in self._end.items():
            start = self._start[name]
            seconds = sum(value - start.get(pid, 0.0) for pid, value in end.items())
            spent[name] = round(1000 * seconds / max(messages, 1), 4)
        spent["total"] = round(sum(spent.values()), 4)
        return spent


def cpu_per_message(runs: list[dict]) -> dict[str, object]:
    """A scenario's extra keys for its runs' `cpu_ms_per_message`."""
    return {
        "cpu_ms_per_message_per_run": [run["cpu_ms_per_message"] for run in runs],
        "cpu_what": "CPU ms per message of each side over the mailing's run (the celery "
                    "workers' process tree, the peer's, every PostgreSQL process), from the "
                    "kernel's accounting: steady where msg/s moves with other load; "
                    "2 cores / total = the rate this machine could reach with nothing else",
    }
