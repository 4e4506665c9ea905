"""What calls for an operator: the unread count of every admin page's title and the entries that
become browser notifications, from `notifications/`; its no-news answer costs one query."""

import json
import time

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from messaging.conversations import conversation_assign
from messaging.inbound.events import inbound_events_drain
from messaging.models import Conversation, Message
from tests.factories import PhoneNumberFactory, UserFactory
from tests.messaging.test_inbox import conversation_make
from tests.messaging.test_visibility import OPERATOR_PERMISSIONS
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_message, webhook_post

pytestmark = pytest.mark.django_db

NOTIFICATIONS = "/admin/messaging/conversation/notifications/"


@pytest.fixture
def team():
    return Group.objects.create(name="team")


@pytest.fixture
def me(team):
    user = UserFactory(username="me", is_staff=True, permissions=OPERATOR_PERMISSIONS)
    user.groups.add(team)
    return user


@pytest.fixture
def my_client(client, me):
    client.force_login(me)
    return client


def customer_writes(wamid: str, text: str, *, wa_id: str = "447700900123", name: str = "Ada Lovelace"):
    body = json.dumps(
        text_message(wamid=wamid, text=text, wa_id=wa_id, name=name, timestamp=int(time.time()))
    )
    assert webhook_post(Client(), body.encode()).status_code == 200
    assert inbound_events_drain().processed == 1
    return Message.objects.get(wamid=wamid)


def test_the_count_holds_unread_conversations_assigned_to_me_or_to_nobody_in_my_numbers(my_client, me, team):
    mine, hidden = PhoneNumberFactory(), PhoneNumberFactory()
    mine.groups.set([team])
    hidden.groups.set([Group.objects.create(name="others")])
    someone = UserFactory(is_staff=True, permissions=OPERATOR_PERMISSIONS)
    someone.groups.add(team)
    conversation_make(name="Unassigned", number=mine)
    conversation_make(name="Mine", number=mine, assignee=me)
    conversation_make(name="Read", number=mine, assignee=me, unread_count=0)
    conversation_make(name="Theirs", number=mine, assignee=someone)
    conversation_make(name="Hidden", number=hidden)

    answer = my_client.get(NOTIFICATIONS).json()

    assert (answer["changed"], answer["unread"]) == (True, 2)
    assert answer["new"] == []  # made without messages: nothing a customer wrote to show
    assert "<title>(2) Inbox | Wharf</title>" in my_client.get("/admin/messaging/conversation/").text


@pytest.mark.django_db(transaction=True)  # each message its own transaction, as in production: now() moves
def test_a_customer_writing_is_news_with_what_a_notification_shows(my_client, me):
    number = PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID)
    before = my_client.get(NOTIFICATIONS).json()
    assert (before["unread"], before["new"]) == (0, [])

    message = customer_writes("wamid.notify.1", "Hello, where is my parcel?")
    answer = my_client.get(NOTIFICATIONS, {"since": before["token"]}).json()

    conversation = Conversation.objects.get()
    assert answer["changed"] is True and answer["token"] != before["token"]
    assert answer["unread"] == 1
    assert answer["new"] == [
        {
            "id": conversation.pk,
            "key": f"{conversation.pk}:{message.pk}",
            "contact": "Ada Lovelace",
            "preview": "Hello, where is my parcel?",
            "url": f"/admin/messaging/message/conversation/{conversation.contact_id}/?sender={number.pk}",
        }
    ]

    # the next message is another key; once someone else holds the conversation it is not mine to see
    again = customer_writes("wamid.notify.2", "Is it shipped?")
    newer = my_client.get(NOTIFICATIONS, {"since": answer["token"]}).json()
    assert [entry["key"] for entry in newer["new"]] == [f"{conversation.pk}:{again.pk}"]
    assert newer["new"][0]["preview"] == "Is it shipped?"
    other = UserFactory(is_staff=True, permissions=OPERATOR_PERMISSIONS)
    conversation_assign(conversation=conversation, assignee=other, actor=other)
    taken = my_client.get(NOTIFICATIONS, {"since": newer["token"]}).json()
    assert (taken["changed"], taken["unread"], taken["new"]) == (True, 0, [])


def test_no_news_costs_one_query(my_client, django_assert_num_queries):
    conversation_make(name="Ada")
    token = my_client.get(NOTIFICATIONS).json()["token"]

    with django_assert_num_queries(4):  # the session, the user, its permissions, the token
        answer = my_client.get(NOTIFICATIONS, {"since": token}).json()

    assert answer == {"changed": False, "token": token}
    assert "no-store" in my_client.get(NOTIFICATIONS, {"since": token})["Cache-Control"]


def test_only_operators_who_may_view_conversations_ask(client):
    client.force_login(UserFactory(is_staff=True, permissions=["contacts.view_contact"]))
    assert client.get(NOTIFICATIONS).status_code == 403
    assert "wharf-operator-tools" not in client.get("/admin/contacts/contact/").text
