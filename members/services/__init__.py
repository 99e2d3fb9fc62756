"""Member use cases that change state, re-exported from their sub-domain modules."""

from members.services.audit import audit_record
from members.services.consents import (
    consent_record,
    consent_withdraw_all,
    email_double_opt_in_pending,
)
from members.services.double_opt_in import email_confirm, email_confirmation_url
from members.services.keywords import sms_inbound_apply
from members.services.phones import phone_normalize
from members.services.privacy import member_data_export, member_erase
from members.services.profiles import (
    custom_attributes_validate,
    email_normalize,
    member_fields_clean,
    member_upsert,
)
from members.services.suppressions import (
    address_normalize,
    suppression_add,
    suppression_remove,
)
from members.services.unsubscribe import (
    member_preferences_save,
    member_unsubscribe_all,
    unsubscribe_one_click,
)

__all__ = [
    "address_normalize",
    "audit_record",
    "consent_record",
    "consent_withdraw_all",
    "custom_attributes_validate",
    "email_confirm",
    "email_confirmation_url",
    "email_double_opt_in_pending",
    "email_normalize",
    "member_data_export",
    "member_erase",
    "member_fields_clean",
    "member_preferences_save",
    "member_unsubscribe_all",
    "member_upsert",
    "phone_normalize",
    "sms_inbound_apply",
    "suppression_add",
    "suppression_remove",
    "unsubscribe_one_click",
]
