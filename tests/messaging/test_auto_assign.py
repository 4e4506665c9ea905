"""Automatic assignment: a sender number with `auto_assign` hands a conversation its customer opens
with nobody assigned to the available operators in turn, only to one who sees the number; through
the signed webhook door, as Meta's deliveries arrive."""

import json
import threading
import time

import pytest
from django.contrib.auth.models import Group
from django.db import close_old_connections, connection, transaction

from core.models import AuditLog
from messaging.conversations import conversation_status_set, operator_availability_set
from messaging.inbound.events import WAKE_NAME, inbound_events_drain
from messaging.models import Conversation, OperatorStatus, WakeUp
from tests.factories import PhoneNumberFactory, UserFactory
from tests.messaging.test_visibility import OPERATOR_PERMISSIONS
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_message, webhook_post
from tests.waiting import lock_waiter

pytestmark = pytest.mark.django_db

Status = Conversation.Status


@pytest.fixture
def number(db):
    return PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, auto_assign=True)


def operator(name: str, *, available: bool = True, groups=(), **fields):
    fields = {"is_staff": True, "permissions": OPERATOR_PERMISSIONS} | fields
    user = UserFactory(username=name, **fields)
    user.groups.set(groups)
    if available:
        operator_availability_set(user=user, available=True, actor=user)
    return user


def post(client, wamid: str, *, wa_id: str, text: str = "Hello?") -> None:
    body = json.dumps(text_message(wamid=wamid, text=text, wa_id=wa_id, timestamp=int(time.time())))
    assert webhook_post(client, body.encode()).status_code == 200


def customer_writes(client, wamid: str, *, wa_id: str, text: str = "Hello?") -> Conversation:
    post(client, wamid, wa_id=wa_id, text=text)
    assert inbound_events_drain().processed == 1
    return Conversation.objects.select_related("assignee").get(contact__wa_id=wa_id)


def assignee_name(conversation: Conversation) -> str | None:
    return conversation.assignee.username if conversation.assignee else None


def test_new_conversations_go_to_the_available_operators_in_turn(client, number):
    for name in ("ann", "bob", "cat"):
        operator(name)

    names = [
        assignee_name(customer_writes(client, f"wamid.rr.{index}", wa_id=f"4477009001{index:02d}"))
        for index in range(5)
    ]

    assert names == ["ann", "bob", "cat", "ann", "bob"]
    audits = AuditLog.objects.filter(action="conversation.assign").order_by("id")
    assert [(a.source, a.actor_id) for a in audits] == [(AuditLog.Source.SYSTEM, None)] * 5
    assert audits[0].changes["assignee"][0] is None


def test_the_customer_writing_again_does_not_move_the_turn_or_the_assignee(client, number):
    operator("ann")
    operator("bob")
    first = customer_writes(client, "wamid.again.1", wa_id="447700900201")
    again = customer_writes(client, "wamid.again.2", wa_id="447700900201")
    other = customer_writes(client, "wamid.again.3", wa_id="447700900202")

    assert (assignee_name(first), assignee_name(again), assignee_name(other)) == ("ann", "ann", "bob")
    assert AuditLog.objects.filter(action="conversation.assign").count() == 2


def test_only_available_active_operators_who_see_the_number_and_may_view_are_assigned(client, number):
    team, elsewhere = Group.objects.create(name="team"), Group.objects.create(name="elsewhere")
    number.groups.set([team])
    operator("away", available=False, groups=[team])
    operator("gone", is_active=False, groups=[team])
    operator("outsider", groups=[elsewhere])
    operator("noperm", groups=[team], permissions=[])
    operator("notstaff", groups=[team], is_staff=False)
    chosen = operator("chosen", groups=[team])

    assert assignee_name(customer_writes(client, "wamid.skip.1", wa_id="447700900301")) == "chosen"
    assert assignee_name(customer_writes(client, "wamid.skip.2", wa_id="447700900302")) == "chosen"

    # when the last one who may take it goes away, a new conversation stays unassigned
    operator_availability_set(user=chosen, available=False, actor=chosen)
    assert customer_writes(client, "wamid.skip.3", wa_id="447700900303").assignee is None


def test_a_reopened_conversation_keeps_its_assignee_and_an_unassigned_one_gets_one(client, number):
    ann = operator("ann")
    held = customer_writes(client, "wamid.reopen.1", wa_id="447700900401")
    operator_availability_set(user=ann, available=False, actor=ann)
    nobody = customer_writes(client, "wamid.reopen.2", wa_id="447700900402")
    assert (assignee_name(held), nobody.assignee) == ("ann", None)
    for conversation in (held, nobody):
        conversation_status_set(conversation=conversation, status=Status.RESOLVED, actor=ann)
    operator("bob")

    held = customer_writes(client, "wamid.reopen.3", wa_id="447700900401")
    nobody = customer_writes(client, "wamid.reopen.4", wa_id="447700900402")

    assert (held.status, assignee_name(held)) == (Status.OPEN, "ann")  # away, but it is still theirs
    assert (nobody.status, assignee_name(nobody)) == (Status.OPEN, "bob")


def test_a_number_without_auto_assign_assigns_nobody(client, number):
    number.auto_assign = False
    number.save()
    operator("ann")

    assert customer_writes(client, "wamid.off.1", wa_id="447700900501").assignee is None
    assert not AuditLog.objects.filter(action="conversation.assign").exists()
    assert OperatorStatus.objects.get(user__username="ann").last_assigned_at is None


def test_operators_mark_themselves_available_from_the_header(client, number):
    ann = UserFactory(username="ann", is_staff=True, permissions=OPERATOR_PERMISSIONS)
    client.force_login(ann)
    inbox = client.get("/admin/messaging/conversation/").text
    assert "Away" in inbox and "be available" in inbox

    back = "http://testserver/admin/messaging/conversation/?tab=mine"
    response = client.post(
        "/admin/messaging/conversation/availability/", {"available": "1"}, HTTP_REFERER=back
    )

    assert response.status_code == 302 and response["Location"] == back
    assert "go away" in client.get("/admin/messaging/conversation/").text
    audit = AuditLog.objects.get(action="operator.availability")
    assert (audit.actor_id, audit.changes) == (ann.pk, {"available": [False, True]})
    assert assignee_name(customer_writes(client, "wamid.header.1", wa_id="447700900601")) == "ann"
    elsewhere = client.post(
        "/admin/messaging/conversation/availability/", {"available": "0", "next": "https://evil.example/"}
    )
    assert elsewhere["Location"] == "/admin/messaging/conversation/"
    assert client.get("/admin/messaging/conversation/availability/").status_code == 405


def test_the_sender_number_form_sets_auto_assign(admin_client):
    number = PhoneNumberFactory(auto_assign=False)
    form = admin_client.get(f"/admin/messaging/phonenumber/{number.pk}/change/").context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "groups"}
    response = admin_client.post(
        f"/admin/messaging/phonenumber/{number.pk}/change/", data | {"auto_assign": "on"}
    )

    assert response.status_code == 302
    number.refresh_from_db()
    assert number.auto_assign is True
    assert AuditLog.objects.get(action="phone_number.update").changes == {"auto_assign": [False, True]}


# -- two workers at once ---------------------------------------------------------------------------


def _in_thread(target):
    errors: list[BaseException] = []

    def run():
        try:
            target()
        except BaseException as error:
            errors.append(error)
        finally:
            close_old_connections()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _drain_holding(applied: threading.Event, release: threading.Event):
    """A worker that applies what is pending and holds its transaction until `release`. The wake-up
    flag is down first, as when its drain has started, so that the worker holds no lock on it."""
    WakeUp.objects.filter(name=WAKE_NAME).update(pending=False)

    def work():
        with transaction.atomic():
            assert inbound_events_drain().processed == 1
            applied.set()
            assert release.wait(10)

    return work


@pytest.mark.django_db(transaction=True)
def test_two_workers_applying_one_conversations_messages_at_once_assign_it_once(client):
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, auto_assign=True)
    operator("ann")
    operator("bob")
    applied, release = threading.Event(), threading.Event()
    post(client, "wamid.race.1", wa_id="447700900701")
    a, a_errors = _in_thread(_drain_holding(applied, release))
    assert applied.wait(10)
    post(client, "wamid.race.2", wa_id="447700900701", text="Anyone?")
    b, b_errors = _in_thread(lambda: inbound_events_drain())

    lock_waiter()  # B waits on the rows A holds
    release.set()
    a.join(10)
    b.join(10)

    assert not a_errors and not b_errors
    conversation = Conversation.objects.get(contact__wa_id="447700900701")
    assert (conversation.assignee.username, conversation.unread_count) == ("ann", 2)
    assert AuditLog.objects.filter(action="conversation.assign").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_assigning_at_once_take_operators_in_turn_without_waiting(client):
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, auto_assign=True)
    operator("ann")
    operator("bob")
    applied, release = threading.Event(), threading.Event()
    post(client, "wamid.turns.1", wa_id="447700900801")
    a, a_errors = _in_thread(_drain_holding(applied, release))
    assert applied.wait(10)
    post(client, "wamid.turns.2", wa_id="447700900802")
    b, b_errors = _in_thread(lambda: inbound_events_drain())

    b.join(10)  # B does not wait for A, which holds ann's turn
    assert not b.is_alive()
    release.set()
    a.join(10)

    assert not a_errors and not b_errors
    assignees = dict(Conversation.objects.values_list("contact__wa_id", "assignee__username"))
    assert assignees == {"447700900801": "ann", "447700900802": "bob"}
