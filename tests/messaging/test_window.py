"""WhatsApp's 24-hour customer service window: one rule for the send service and the console."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from messaging.models import Message
from messaging.outbound.send import WINDOW_CLOSED, message_send
from messaging.window import whatsapp_window
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory

pytestmark = pytest.mark.django_db


def test_the_window_is_open_for_24_hours_from_the_latest_message_and_closed_at_24_hours():
    wrote = timezone.now() - timedelta(hours=30)
    contact = ContactFactory(last_inbound_at=wrote)
    MessageFactory(contact=contact, timestamp=wrote)

    just_before = whatsapp_window(contact, now=wrote + timedelta(hours=24) - timedelta(microseconds=1))
    at_24_hours = whatsapp_window(contact, now=wrote + timedelta(hours=24))

    assert just_before.is_open and just_before.closes_at == wrote + timedelta(hours=24)
    assert not at_24_hours.is_open and at_24_hours.closes_at == wrote + timedelta(hours=24)


def test_the_latest_inbound_message_decides_when_the_contacts_copy_is_stale_or_missing():
    wrote = timezone.now() - timedelta(hours=1)
    stale = ContactFactory(last_inbound_at=wrote - timedelta(days=3))
    MessageFactory(contact=stale, timestamp=wrote)
    missing = ContactFactory(last_inbound_at=None)
    MessageFactory(contact=missing, timestamp=wrote)
    MessageFactory(contact=missing, direction="outbound")  # our own messages open nothing

    for contact in (stale, missing):
        window = whatsapp_window(contact)
        assert window.is_open and window.last_inbound_at == wrote


def test_without_any_message_from_the_customer_the_window_never_opened():
    contact = ContactFactory(last_inbound_at=None)
    MessageFactory(contact=contact, direction="outbound")
    assert whatsapp_window(contact) == whatsapp_window(contact, phone_number=PhoneNumberFactory())
    assert not whatsapp_window(contact).is_open and whatsapp_window(contact).closes_at is None


def test_the_send_service_reads_the_same_window(monkeypatch):
    sender = PhoneNumberFactory()
    contact = ContactFactory(wa_id="447700900555", last_inbound_at=timezone.now() - timedelta(days=2))
    MessageFactory(contact=contact, phone_number=sender, timestamp=timezone.now() - timedelta(minutes=5))

    def text():
        return message_send(
            phone_number=sender,
            contact=contact,
            kind="text",
            content={"body": "Hi"},
            actor=None,
            source="api",
        )

    assert text().status == "queued"  # the stale copy on the contact no longer refuses it

    Message.objects.filter(contact=contact).update(timestamp=timezone.now() - timedelta(hours=24))
    with pytest.raises(ValidationError) as refused:
        text()
    assert refused.value.message_dict == {"type": [WINDOW_CLOSED]}
