"""The marketer screens of communications, one module per model family; importing them
registers them with the admin site."""
from communications.admin import (  # noqa: F401
    compliance,
    credits,
    gateways,
    mailings,
    templates,
    triggers,
)
