"""Extension points apps above `loyalty` plug into from their `AppConfig.ready()`, so `loyalty`
never imports them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (order) -> None: an order was refunded, in part or in full; called inside the refund's
# transaction with the order row locked, so what a handler writes (communications' order
# credit) commits or rolls back with the refund.
ORDER_REFUNDED: list[Callable[[Any], None]] = []
