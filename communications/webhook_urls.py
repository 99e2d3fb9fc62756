from django.urls import path

from communications import webhooks, webhooks_http_sms, webhooks_messengers, webhooks_push

# Included at "hooks/" (config/urls.py).
urlpatterns = [
    path("twilio/<int:gateway_id>/status", webhooks_http_sms.twilio_status, name="twilio-status"),
    path("http-sms/<int:gateway_id>/receipts", webhooks_http_sms.http_sms_receipts,
         name="http-sms-receipts"),
    path("sms/<int:gateway_id>/inbound", webhooks.sms_inbound, name="sms-inbound"),
    path("gateways/<int:gateway_id>/receipts", webhooks.receipts_inbound,
         name="gateway-receipts"),
    path("viber/<int:gateway_id>/callback", webhooks_messengers.viber_callback,
         name="viber-callback"),
    path("hms/<int:gateway_id>/receipts", webhooks_push.hms_receipts, name="hms-receipts"),
]
