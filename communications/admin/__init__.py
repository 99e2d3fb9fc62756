"""The marketer screens of communications, one module per model family; importing them
registers them with the admin site."""
from communications.admin import compliance, gateways, mailings, templates, triggers  # noqa: F401
