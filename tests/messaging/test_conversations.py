"""Conversations per contact and sender number: kept current by the inbound path and the send
service, changed by operators through the services, listed by the inbox's selector."""

import importlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.utils import timezone

from contacts.models import Contact
from core.models import AuditLog
from messaging.bulk import BulkEntry, TemplateBatch, template_messages_queue
from messaging.conversations import (
    conversation_assign,
    conversation_labels_set,
    conversation_read,
    conversation_status_set,
    conversations_wake,
)
from messaging.inbound.events import inbound_events_drain
from messaging.models import Conversation, Message
from messaging.outbound.send import WINDOW_CLOSED, message_send
from messaging.selectors import conversation_list
from messaging.tasks import conversations_wake_task
from messaging.window import whatsapp_window
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory, labels_make
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_message, webhook_post

pytestmark = pytest.mark.django_db

CUSTOMER = "447700900123"
Status = Conversation.Status

backfill = importlib.import_module("messaging.migrations.0007_conversations_backfill")


@pytest.fixture
def number_a(db):
    return PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID)


@pytest.fixture
def number_b(db):
    return PhoneNumberFactory(phone_number_id="106540352299999")


def body(
    wamid: str, text: str, *, at: int | None = None, number: str = PHONE_NUMBER_ID, indent=None
) -> bytes:
    payload = text_message(wamid=wamid, text=text, wa_id=CUSTOMER, timestamp=at or int(time.time()))
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number
    return json.dumps(payload, indent=indent).encode()


def customer_writes(client, wamid: str, text: str, **kwargs) -> Message:
    assert webhook_post(client, body(wamid, text, **kwargs)).status_code == 200
    inbound_events_drain()
    return Message.objects.get(wamid=wamid)


def conversation_of(message: Message) -> Conversation:
    return Conversation.objects.get(pk=message.conversation_id)


# -- kept current by the message paths -------------------------------------------------------------


def test_a_customer_message_opens_a_conversation_and_a_replayed_webhook_counts_it_once(client, number_a):
    first = body("wamid.conv.1", "Hello, is my order shipped?")
    replay = body("wamid.conv.1", "Hello, is my order shipped?", indent=2)  # another body, same message
    assert first != replay

    for raw in (first, replay, first):
        assert webhook_post(client, raw).status_code == 200
        inbound_events_drain()

    message = Message.objects.get(wamid="wamid.conv.1")
    conversation = conversation_of(message)
    assert Conversation.objects.count() == 1
    assert (conversation.contact.wa_id, conversation.phone_number) == (CUSTOMER, number_a)
    assert conversation.status == Status.OPEN
    assert conversation.unread_count == 1
    assert conversation.last_inbound_at == conversation.last_message_at == message.timestamp
    assert conversation.waiting_since == message.timestamp
    assert conversation.last_message_preview == "Hello, is my order shipped?"


def test_a_resolved_or_snoozed_conversation_reopens_when_the_customer_writes(client, number_a):
    now = int(time.time())
    conversation = conversation_of(customer_writes(client, "wamid.r.1", "first", at=now - 60))
    conversation_status_set(conversation=conversation, status=Status.RESOLVED, actor=None)
    assert conversation.waiting_since is None

    customer_writes(client, "wamid.r.2", "again", at=now - 30)
    conversation.refresh_from_db()
    assert (conversation.status, conversation.unread_count) == (Status.OPEN, 2)
    assert conversation.waiting_since == datetime.fromtimestamp(now - 30, UTC)

    conversation_status_set(
        conversation=conversation,
        status=Status.SNOOZED,
        snoozed_until=timezone.now() + timedelta(hours=1),
        actor=None,
    )
    customer_writes(client, "wamid.r.3", "hello?", at=now)
    conversation.refresh_from_db()
    assert (conversation.status, conversation.snoozed_until, conversation.unread_count) == (
        Status.OPEN,
        None,
        3,
    )
    assert conversation.last_message_preview == "hello?"


def test_a_message_arriving_late_leaves_the_latest_times_and_preview(client, number_a):
    now = int(time.time())
    customer_writes(client, "wamid.late.2", "second", at=now)
    conversation = conversation_of(customer_writes(client, "wamid.late.1", "first", at=now - 120))

    assert conversation.last_message_preview == "second"
    assert conversation.last_inbound_at == datetime.fromtimestamp(now, UTC)
    assert conversation.waiting_since == datetime.fromtimestamp(now - 120, UTC)  # the oldest unanswered
    assert conversation.unread_count == 2


def test_an_operator_reply_makes_the_conversation_pending_on_the_customer(client, number_a, admin_user):
    inbound = customer_writes(client, "wamid.reply.1", "Where is my parcel?")
    contact = inbound.contact

    reply = message_send(
        phone_number=number_a,
        contact=contact,
        kind="text",
        content={"body": "On its way"},
        actor=admin_user,
        source="admin",
    )

    conversation = conversation_of(inbound)
    assert reply.conversation_id == conversation.pk
    assert Message.objects.get(pk=reply.pk).conversation_id == conversation.pk
    assert conversation.status == Status.PENDING
    assert conversation.waiting_since is None
    assert conversation.last_outbound_at == conversation.last_message_at == reply.timestamp
    assert conversation.last_message_preview == "On its way"


def test_a_campaign_message_neither_answers_nor_hides_a_waiting_customer(client, number_a):
    inbound = customer_writes(client, "wamid.camp.1", "I have a question")
    stranger = ContactFactory(wa_id="447700900999")
    batch = TemplateBatch(phone_number=number_a, name="promo", language="en", keys=(), text="Our sale")

    ids = template_messages_queue(
        batch=batch,
        entries=[
            BulkEntry(contact_id=inbound.contact_id, to=CUSTOMER, values={}),
            BulkEntry(contact_id=stranger.pk, to="447700900999", values={}),
        ],
    )

    waiting = conversation_of(inbound)
    assert waiting.status == Status.OPEN and waiting.waiting_since == inbound.timestamp
    assert waiting.last_outbound_at is not None and waiting.last_message_preview == "Our sale"
    new = Conversation.objects.get(contact=stranger)
    assert (new.phone_number, new.status, new.unread_count) == (number_a, Status.PENDING, 0)
    linked = dict(Message.objects.filter(pk__in=ids).values_list("contact_id", "conversation_id"))
    assert linked == {inbound.contact_id: waiting.pk, stranger.pk: new.pk}


# -- the 24-hour window per number -----------------------------------------------------------------


def test_a_message_to_one_number_opens_that_numbers_window_only(client, number_a, number_b):
    inbound = customer_writes(client, "wamid.win.1", "hi A", number=number_a.phone_number_id)
    contact = inbound.contact

    assert whatsapp_window(contact, phone_number=number_a).is_open
    assert not whatsapp_window(contact, phone_number=number_b).is_open
    assert whatsapp_window(contact).is_open  # across numbers
    with pytest.raises(ValidationError) as refused:
        message_send(
            phone_number=number_b,
            contact=contact,
            kind="text",
            content={"body": "x"},
            actor=None,
            source="api",
        )
    assert refused.value.message_dict == {"type": [WINDOW_CLOSED]}

    customer_writes(client, "wamid.win.2", "hi B", number=number_b.phone_number_id)
    assert whatsapp_window(contact, phone_number=number_b).is_open
    assert Conversation.objects.filter(contact=contact).count() == 2


# -- operators' actions ----------------------------------------------------------------------------


def test_reading_clears_the_unread_count_and_is_audited_once(client, number_a):
    conversation = conversation_of(customer_writes(client, "wamid.read.1", "hi"))
    operator = UserFactory()

    conversation_read(conversation=conversation, actor=operator)
    conversation_read(conversation=conversation, actor=operator)

    assert conversation.unread_count == 0
    assert AuditLog.objects.filter(action="conversation.read", actor=operator).count() == 1


def test_of_two_operators_assigning_at_once_one_wins_and_the_other_is_told_who(client, number_a):
    alice, bob = UserFactory(username="alice", is_staff=True), UserFactory(username="bob", is_staff=True)
    conversation = conversation_of(customer_writes(client, "wamid.assign.1", "hi"))
    seen_by_alice = Conversation.objects.get(pk=conversation.pk)
    seen_by_bob = Conversation.objects.get(pk=conversation.pk)

    conversation_assign(conversation=seen_by_alice, assignee=alice, actor=alice)
    with pytest.raises(ValidationError) as lost:
        conversation_assign(conversation=seen_by_bob, assignee=bob, actor=bob)

    assert "alice" in lost.value.message_dict["assignee"][0]
    assert Conversation.objects.get(pk=conversation.pk).assignee == alice
    assert AuditLog.objects.filter(action="conversation.assign").count() == 1
    # asking for no change on a conversation that changed hands is the same conflict
    with pytest.raises(ValidationError):
        conversation_assign(conversation=seen_by_bob, assignee=None, actor=bob)
    # seen afresh, bob may take it over
    conversation_assign(conversation=Conversation.objects.get(pk=conversation.pk), assignee=bob, actor=bob)
    assert Conversation.objects.get(pk=conversation.pk).assignee == bob


def test_only_an_active_staff_member_is_assigned(client, number_a):
    conversation = conversation_of(customer_writes(client, "wamid.assign.2", "hi"))
    for user in (UserFactory(), UserFactory(is_staff=True, is_active=False)):
        with pytest.raises(ValidationError) as refused:
            conversation_assign(conversation=conversation, assignee=user, actor=None)

        assert "not an active staff member" in refused.value.message_dict["assignee"][0]
    assert Conversation.objects.get(pk=conversation.pk).assignee is None


def test_a_snooze_in_the_past_is_refused_and_changes_nothing(client, number_a):
    conversation = conversation_of(customer_writes(client, "wamid.snooze.1", "hi"))

    for until in (timezone.now() - timedelta(minutes=1), None):
        with pytest.raises(ValidationError) as refused:
            conversation_status_set(
                conversation=conversation, status=Status.SNOOZED, snoozed_until=until, actor=None
            )
        assert list(refused.value.message_dict) == ["snoozed_until"]
    with pytest.raises(ValidationError) as unknown:
        conversation_status_set(conversation=conversation, status="closed", actor=None)
    assert list(unknown.value.message_dict) == ["status"]
    assert Conversation.objects.get(pk=conversation.pk).status == Status.OPEN


def test_a_snoozed_conversation_wakes_at_its_time(client, number_a):
    conversation = conversation_of(customer_writes(client, "wamid.wake.1", "hi"))
    until = timezone.now() + timedelta(hours=1)
    conversation_status_set(conversation=conversation, status=Status.SNOOZED, snoozed_until=until, actor=None)

    assert conversations_wake(now=until - timedelta(seconds=1)) == 0
    assert Conversation.objects.get(pk=conversation.pk).status == Status.SNOOZED
    assert conversations_wake(now=until) == 1
    conversation.refresh_from_db()
    assert (conversation.status, conversation.snoozed_until) == (Status.OPEN, None)
    assert conversations_wake_task() == 0  # the beat task, run again: nothing left to wake


def test_labels_are_short_slugs_of_the_catalogue_and_anything_else_is_refused(client, number_a):
    conversation = conversation_of(customer_writes(client, "wamid.label.1", "hi"))
    labels_make("vip", "refund")

    conversation_labels_set(conversation=conversation, labels=["VIP", "refund", "vip"], actor=None)
    assert conversation.labels == ["vip", "refund"]
    for bad in (["not a label"], ["x" * 33], "vip", [3], ["vip", "unknown"]):
        with pytest.raises(ValidationError) as refused:
            conversation_labels_set(conversation=conversation, labels=bad, actor=None)
        assert list(refused.value.message_dict) == ["labels"]
    assert Conversation.objects.get(pk=conversation.pk).labels == ["vip", "refund"]


# -- the data migration ----------------------------------------------------------------------------


def test_the_migration_builds_conversations_for_stored_messages_and_links_every_one():
    a, b = PhoneNumberFactory(), PhoneNumberFactory()
    waiting, answered = ContactFactory(), ContactFactory()
    t0 = timezone.now() - timedelta(hours=3)
    MessageFactory(contact=waiting, phone_number=a, timestamp=t0, direction="outbound")
    first = MessageFactory(contact=waiting, phone_number=a, timestamp=t0 + timedelta(minutes=1), text="one")
    MessageFactory(contact=waiting, phone_number=a, timestamp=t0 + timedelta(minutes=2), text="two")
    MessageFactory(contact=waiting, phone_number=b, timestamp=t0, text="to b")
    MessageFactory(contact=answered, phone_number=a, timestamp=t0, text="question")
    MessageFactory(
        contact=answered,
        phone_number=a,
        timestamp=t0 + timedelta(minutes=5),
        direction="outbound",
        text="answer",
    )
    MessageFactory(contact=answered, phone_number=None, timestamp=t0, text="unknown number")
    MessageFactory(
        contact=answered, phone_number=None, timestamp=t0 + timedelta(minutes=1), type="system", text=""
    )
    assert not Conversation.objects.exists()

    backfill.conversations_build(apps, None, batch_contacts=1)
    backfill.conversations_build(apps, None)  # again: nothing changes

    assert not Message.objects.filter(conversation__isnull=True).exists()
    assert Conversation.objects.count() == 4
    open_a = Conversation.objects.get(contact=waiting, phone_number=a)
    assert (open_a.status, open_a.unread_count, open_a.last_message_preview) == (Status.OPEN, 0, "two")
    assert open_a.waiting_since == first.timestamp
    assert open_a.last_outbound_at == t0 and open_a.last_inbound_at == t0 + timedelta(minutes=2)
    pending = Conversation.objects.get(contact=answered, phone_number=a)
    assert (pending.status, pending.waiting_since, pending.last_message_preview) == (
        Status.PENDING,
        None,
        "answer",
    )
    without_number = Conversation.objects.get(contact=answered, phone_number=None)
    assert without_number.messages.count() == 2
    assert without_number.last_inbound_at == t0  # a system notice is not the customer writing
    assert set(
        Message.objects.filter(contact=waiting, phone_number=a).values_list("conversation", flat=True)
    ) == {open_a.pk}


# -- the inbox's selector --------------------------------------------------------------------------


def test_the_inbox_lists_by_tab_filter_and_sort(client, number_a, number_b):
    me, other = UserFactory(is_staff=True), UserFactory(is_staff=True)
    now = int(time.time())
    old = conversation_of(customer_writes(client, "wamid.sel.1", "refund please", at=now - 600))
    Contact.objects.filter(pk=old.contact_id).update(name="Grace Hopper")
    new = conversation_of(
        customer_writes(client, "wamid.sel.2", "hello", at=now - 60, number=number_b.phone_number_id)
    )
    third = conversation_of(
        customer_writes(client, "wamid.sel.3", "latest", at=now)
    )  # same contact and number as `old`
    assert third == old
    conversation_assign(conversation=old, assignee=me, actor=me)
    labels_make("vip")
    conversation_labels_set(conversation=new, labels=["vip"], actor=None)

    def ids(**kwargs):
        return [c.pk for c in conversation_list(user=me, **kwargs)]

    assert ids() == [old.pk, new.pk]  # waiting longest first
    assert ids(sort="latest") == [old.pk, new.pk]
    assert ids(tab="mine") == [old.pk] and ids(tab="unassigned") == [new.pk]
    assert ids(assignee=other.pk) == [] and ids(assignee=me.pk) == [old.pk]
    assert ids(phone_number=number_b.pk) == [new.pk]
    assert ids(label="vip") == [new.pk]
    assert ids(q="grace") == [old.pk, new.pk]  # one customer, two numbers
    assert ids(q="REFUND") == [old.pk] and ids(q=CUSTOMER[-6:]) == [old.pk, new.pk] and ids(q="nobody") == []
    conversation_status_set(conversation=new, status=Status.RESOLVED, actor=None)
    assert ids(status=Status.OPEN) == [old.pk] and ids(status=Status.RESOLVED) == [new.pk]
    assert ids(sort="waiting") == [old.pk, new.pk]  # answered or resolved ones after the waiting ones
    first = conversation_list(user=me)[0]
    assert (first.last_message_preview, first.contact.name) == ("latest", "Grace Hopper")
