"""Benchmarks: `make bench` runs every scenario at full size and prints one JSON line each.

Each scenario lives in the module of its group (`seed`, `segments`, `snapshot`, `dispatch`) and
is registered by name in `bench.__main__`. The shared parts: `results` (the JSON line, median of
runs), `database` (the bench database and its seed marker), `mailings` (create a mailing, run it
to completion), `workers` (real Celery workers as subprocesses, their memory) and `smtp_sink`
(Postfix's smtp-sink on loopback and a bare client for its ceiling).

Scenario names and units are fixed in DESIGN.md ("Benchmarks") so results stay comparable.
"""
