"""Connectors: how an event is put on the wire for a subscription, one small module per
platform behind one contract (base.py), chosen by the subscription's `connector`."""

from __future__ import annotations

from loyalty.webhooks.connectors.base import Connector
from loyalty.webhooks.connectors.klaviyo import KlaviyoConnector
from loyalty.webhooks.connectors.mailchimp import MailchimpConnector
from loyalty.webhooks.connectors.segment import SegmentConnector
from loyalty.webhooks.connectors.standard import StandardConnector

CONNECTORS: dict[str, Connector] = {connector.name: connector for connector in (
    StandardConnector(), KlaviyoConnector(), MailchimpConnector(), SegmentConnector())}


def connector_get(name: str) -> Connector:
    return CONNECTORS[name]
