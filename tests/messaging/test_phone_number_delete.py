"""Deleting a sender number keeps its messages and conversations, without the number."""

from datetime import timedelta

import pytest
from django.urls import reverse

from messaging.models import Conversation, Message, PhoneNumber
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory

pytestmark = pytest.mark.django_db


def test_deleting_a_sender_number_folds_its_conversations_into_the_contacts_numberless_one(admin_client):
    number = PhoneNumberFactory()
    written = MessageFactory(phone_number=number, text="to the number")
    mine = Conversation.objects.create(
        contact=written.contact,
        phone_number=number,
        status=Conversation.Status.OPEN,
        unread_count=2,
        last_message_at=written.timestamp,
        last_message_preview="to the number",
        waiting_since=written.timestamp,
    )
    Message.objects.filter(pk=written.pk).update(conversation=mine)
    earlier = written.timestamp - timedelta(days=1)
    numberless = Conversation.objects.create(
        contact=written.contact,
        phone_number=None,
        status=Conversation.Status.RESOLVED,
        unread_count=1,
        last_message_at=earlier,
        last_message_preview="long ago",
    )
    other = Conversation.objects.create(contact=ContactFactory(), phone_number=number)

    response = admin_client.post(
        reverse("admin:messaging_phonenumber_delete", args=[number.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not PhoneNumber.objects.filter(pk=number.pk).exists()
    assert not Conversation.objects.filter(pk=mine.pk).exists()
    numberless.refresh_from_db()
    assert numberless.unread_count == 3
    assert numberless.status == Conversation.Status.OPEN
    assert numberless.last_message_preview == "to the number"
    assert numberless.waiting_since == written.timestamp
    assert Message.objects.get(pk=written.pk).conversation_id == numberless.pk
    other.refresh_from_db()
    assert other.phone_number_id is None
