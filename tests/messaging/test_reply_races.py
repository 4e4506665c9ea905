"""Two operators reply to one customer at the same moment, through the conversation page: both
messages are queued, and sent once each, in the order they were queued."""

import threading
import uuid

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from messaging.models import Message
from messaging.outbound.drain import outgoing_drain
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory
from tests.messaging.test_outbound_send import Sandbox
from tests.waiting import wait_until

OPERATOR = ["messaging.view_message", "messaging.add_message", "messaging.view_conversation"]


@pytest.fixture
def sandbox():
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    sandbox.config(statuses=False)
    yield sandbox
    sandbox.post("reset")


def test_two_operators_replying_at_once_both_send_in_order_none_lost(transactional_db, sandbox):
    number = PhoneNumberFactory(phone_number_id="106540352242922")
    contact = ContactFactory(wa_id="447700900123", phone="+447700900123")
    MessageFactory(contact=contact, phone_number=number, timestamp=timezone.now())  # the window is open
    page = reverse("admin:messaging_message_conversation", args=[contact.pk])
    start = threading.Barrier(2)
    answers: dict[str, int] = {}

    def reply(name: str) -> None:
        client = Client()
        client.force_login(UserFactory(username=name, is_staff=True, permissions=OPERATOR))
        form = {
            "reply_kind": "text",
            "body": f"{name} here, looking into it",
            "reply_key": uuid.uuid4().hex,
            "phone_number": number.pk,
        }
        try:
            start.wait(timeout=10)
            answers[name] = client.post(f"{page}?sender={number.pk}", form).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=reply, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert answers == {"alice": 302, "bob": 302}
    replies = list(Message.objects.filter(direction="outbound").order_by("id"))
    assert sorted(m.created_by.username for m in replies) == ["alice", "bob"]

    def both_sent() -> bool:
        outgoing_drain()  # the second waits its turn for the same recipient: drained again when due
        return Message.objects.filter(direction="outbound", status="sent").count() == 2

    wait_until(both_sent, timeout=30, interval=0.2, message="both replies to be sent")
    sent = list(Message.objects.filter(direction="outbound").order_by("sent_at"))
    assert [m.pk for m in sent] == [m.pk for m in replies]  # in the order they were queued
    assert all(m.status == "sent" and m.wamid.startswith("wamid.") for m in sent)
    accepted = sandbox.stats()["by_wamid"]
    assert sorted(accepted[m.wamid]["biz_opaque_callback_data"] for m in sent) == sorted(
        str(m.pk) for m in sent
    )
