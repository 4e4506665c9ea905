"""WhatsApp's customer service window: free-form messages (anything but a template) may be sent
for 24 hours from the customer's latest message; at exactly 24 hours it is closed.

Meta keeps one window per business phone number and user, counted from the customer's latest
message to that number, so the latest inbound message's own timestamp is what decides. Copies kept
for lists and filters are read too, and the later wins, so a missing or stale copy (or a message
already archived) changes nothing: the conversation's `last_inbound_at` for that number, and the
contact's `last_inbound_at` when nothing says which number the customer wrote to (a contact with no
conversation that heard from them yet: rows from before conversations, imports).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from contacts.models import Contact
from messaging.models import Conversation, Message, PhoneNumber

WHATSAPP_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class WhatsAppWindow:
    is_open: bool
    last_inbound_at: datetime | None  # None: the customer never wrote
    closes_at: datetime | None  # when it closes (or closed); None: it never opened


def whatsapp_window(
    contact: Contact, *, phone_number: PhoneNumber | None = None, now: datetime | None = None
) -> WhatsAppWindow:
    """The window between the contact and the business number `phone_number` (the sender the
    message would leave from); across all numbers when it is None."""
    now = now or timezone.now()
    candidates = []
    per_number = False
    if contact.pk is not None:
        messages = Message.objects.filter(contact=contact, direction=Message.Direction.INBOUND)
        if phone_number is not None:
            copies = dict(
                Conversation.objects.filter(contact=contact, last_inbound_at__isnull=False).values_list(
                    "phone_number_id", "last_inbound_at"
                )
            )
            per_number = bool(copies)
            candidates.append(copies.get(phone_number.pk))
            if per_number:
                messages = messages.filter(phone_number=phone_number)
        candidates.append(messages.order_by("-timestamp").values_list("timestamp", flat=True).first())
    if not per_number:
        candidates.append(contact.last_inbound_at)
    return whatsapp_window_from(candidates, now=now)


def conversation_window(conversation: Conversation, *, now: datetime | None = None) -> WhatsAppWindow:
    """The window of a listed conversation from its row alone (no query): its `last_inbound_at` is
    written by the statement that stores each inbound message, so it is what `whatsapp_window`
    finds for that contact and number. One with no number counts across numbers, as
    `whatsapp_window` does then, with the contact's copy (`conversation.contact` already joined)."""
    candidates = [conversation.last_inbound_at]
    if conversation.phone_number_id is None:
        candidates.append(conversation.contact.last_inbound_at)
    return whatsapp_window_from(candidates, now=now or timezone.now())


def whatsapp_window_from(candidates: list[datetime | None], *, now: datetime) -> WhatsAppWindow:
    """The window counted from the latest of the customer's message times given."""
    candidates = [at for at in candidates if at is not None]
    return whatsapp_window_since(max(candidates, default=None), now=now)


def whatsapp_window_since(last_inbound_at: datetime | None, *, now: datetime | None = None) -> WhatsAppWindow:
    """The window opened by a customer's message at `last_inbound_at` (None: they never wrote).
    Lists use it with a conversation's own copy, so a page costs no query per row."""
    if last_inbound_at is None:
        return WhatsAppWindow(is_open=False, last_inbound_at=None, closes_at=None)
    closes_at = last_inbound_at + WHATSAPP_WINDOW
    return WhatsAppWindow(
        is_open=(now or timezone.now()) < closes_at, last_inbound_at=last_inbound_at, closes_at=closes_at
    )
