"""The sandbox's own sender number in Wharf, so that what the sandbox posts as Meta is routed."""

from __future__ import annotations

from core.models import AuditLog
from devstack.sandbox import payloads
from messaging.models import PhoneNumber
from messaging.services import phone_number_create


def sandbox_number_ensure() -> tuple[PhoneNumber, bool]:
    """The sandbox's number as a PhoneNumber (the sandbox's default phone number id, WABA and
    display number), made when Wharf has none; (the number, whether it was made now)."""
    number = PhoneNumber.objects.filter(phone_number_id=payloads.DEFAULT_PHONE_NUMBER_ID).first()
    if number is not None:
        return number, False
    number = phone_number_create(
        phone_number_id=payloads.DEFAULT_PHONE_NUMBER_ID,
        display_phone_number=payloads.DEFAULT_DISPLAY_PHONE_NUMBER,
        verified_name="Wharf sandbox",
        waba_id=payloads.DEFAULT_WABA_ID,
        actor=None,
        source=AuditLog.Source.SYSTEM,
    )
    return number, True
