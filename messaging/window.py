"""WhatsApp's customer service window: free-form messages (anything but a template) may be sent
for 24 hours from the customer's latest message; at exactly 24 hours it is closed.

Meta counts from the customer's latest message, so the latest inbound message's own timestamp is
what decides. `Contact.last_inbound_at` is a copy kept for lists and filters; it is also read here,
and the later of the two wins, so a missing or stale copy (or a message already archived) changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from contacts.models import Contact
from messaging.models import Message, PhoneNumber

WHATSAPP_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class WhatsAppWindow:
    is_open: bool
    last_inbound_at: datetime | None  # None: the customer never wrote
    closes_at: datetime | None  # when it closes (or closed); None: it never opened


def whatsapp_window(
    contact: Contact, *, phone_number: PhoneNumber | None = None, now: datetime | None = None
) -> WhatsAppWindow:
    """The window between the contact and the business.

    `phone_number` is the sender the message would leave from. Meta keeps a window per business
    number; Wharf keeps it per contact for now (a customer who wrote to one number opens it for
    every number), so the argument does not narrow the answer yet.
    """
    now = now or timezone.now()
    latest = None
    if contact.pk is not None:
        latest = (
            Message.objects.filter(contact=contact, direction=Message.Direction.INBOUND)
            .order_by("-timestamp")
            .values_list("timestamp", flat=True)
            .first()
        )
    candidates = [at for at in (latest, contact.last_inbound_at) if at is not None]
    if not candidates:
        return WhatsAppWindow(is_open=False, last_inbound_at=None, closes_at=None)
    last = max(candidates)
    closes_at = last + WHATSAPP_WINDOW
    return WhatsAppWindow(is_open=now < closes_at, last_inbound_at=last, closes_at=closes_at)
