from django.urls import path

from communications import webhooks

# Included at "hooks/" (config/urls.py).
urlpatterns = [
    path("sms/<int:gateway_id>/inbound", webhooks.sms_inbound, name="sms-inbound"),
    path("gateways/<int:gateway_id>/receipts", webhooks.receipts_inbound,
         name="gateway-receipts"),
]
