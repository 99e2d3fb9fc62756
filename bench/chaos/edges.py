"""The fault suite's edge scenarios of issue 10 (4, 5, 7, 8, 9, 10), gathered for the runner,
in the order of their value."""

from __future__ import annotations

from bench.chaos.edges_caps import SCENARIOS as CAPS
from bench.chaos.edges_database import SCENARIOS as DATABASE
from bench.chaos.edges_opt_outs import SCENARIOS as OPT_OUTS
from bench.chaos.edges_providers import SCENARIOS as PROVIDERS
from bench.chaos.edges_receipts import SCENARIOS as RECEIPTS
from bench.chaos.edges_webhooks import SCENARIOS as WEBHOOKS

SCENARIOS = [*RECEIPTS, *WEBHOOKS, *OPT_OUTS, *PROVIDERS, *DATABASE, *CAPS]
