"""Member use cases that change state, re-exported from their sub-domain modules."""

from members.services.audit import audit_record
from members.services.consents import (
    consent_record,
    consent_withdraw_all,
    email_double_opt_in_pending,
)
from members.services.privacy import member_data_export, member_erase
from members.services.profiles import (
    custom_attributes_validate,
    email_normalize,
    member_upsert,
    phone_normalize,
)
from members.services.suppressions import (
    address_normalize,
    suppression_add,
    suppression_remove,
)

__all__ = [
    "address_normalize",
    "audit_record",
    "consent_record",
    "consent_withdraw_all",
    "email_double_opt_in_pending",
    "custom_attributes_validate",
    "email_normalize",
    "member_upsert",
    "phone_normalize",
    "suppression_add",
    "suppression_remove",
    "member_data_export",
    "member_erase",
]
