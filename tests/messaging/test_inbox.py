"""The inbox page in the admin: tabs with counts, filters, search, paging, the live `changes/` answer,
the landing after login, and opening a conversation reading it."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.conversations import conversation_assign, conversation_labels_set
from messaging.models import Conversation
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory, labels_make
from tests.messaging.test_conversations import conversation_of, customer_writes

pytestmark = pytest.mark.django_db

INBOX = "/admin/messaging/conversation/"
CHANGES = "/admin/messaging/conversation/changes/"


def conversation_make(*, name: str, number=None, **fields) -> Conversation:
    """A conversation row as the message paths leave it (fixtures; the code under test reads it)."""
    now = timezone.now()
    values = {
        "status": Conversation.Status.OPEN,
        "unread_count": 1,
        "last_inbound_at": now,
        "last_message_at": now,
        "last_message_preview": f"a message from {name}",
        "waiting_since": now,
    } | fields
    contact = ContactFactory(name=name)
    return Conversation.objects.create(contact=contact, phone_number=number or PhoneNumberFactory(), **values)


def names(response) -> list[str]:
    return [row.conversation.contact.name for row in response.context["rows"]]


def test_the_inbox_lists_conversations_with_what_an_operator_needs(admin_client):
    number = PhoneNumberFactory(display_phone_number="15550001111")
    twelve_minutes = timezone.now() - timedelta(minutes=12)
    waiting = conversation_make(
        name="Ada Lovelace",
        number=number,
        unread_count=3,
        waiting_since=twelve_minutes,
        last_message_preview="Where is my parcel?",
    )
    labels_make("vip")
    conversation_labels_set(conversation=waiting, labels=["vip"], actor=None)
    closed = conversation_make(
        name="Grace Hopper",
        number=number,
        unread_count=0,
        waiting_since=None,
        last_inbound_at=timezone.now() - timedelta(hours=30),
        status=Conversation.Status.PENDING,
    )

    response = admin_client.get(INBOX)

    assert response.status_code == 200
    assert names(response) == ["Ada Lovelace", "Grace Hopper"]  # the longest waiting first
    page = response.text
    assert "<title>(1) Inbox | Wharf</title>" in page  # one conversation has unread messages
    ada = page.split(f'data-conversation="{waiting.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "Where is my parcel?" in ada and 'class="wharf-unread"' in ada and ">3<" in ada
    assert "waiting 12 min" in ada and "vip" in ada and ">open</span>" in ada
    assert waiting.contact.phone in ada and "15550001111" in ada
    assert f"/admin/messaging/message/conversation/{waiting.contact_id}/?sender={number.pk}" in ada
    grace = page.split(f'data-conversation="{closed.pk}"', 1)[1].split("</tr>", 1)[0]
    assert ">closed</span>" in grace and "wharf-unread" not in grace and "pending" in grace


def test_a_contact_without_a_phone_shows_its_whatsapp_id(admin_client):
    conversation = conversation_make(name="")
    conversation.contact.__class__.objects.filter(pk=conversation.contact_id).update(
        phone="", wa_id="447700900555"
    )
    assert "WhatsApp id 447700900555" in admin_client.get(INBOX).text


def test_tabs_count_and_list_mine_unassigned_and_all(admin_client, admin_user):
    other = UserFactory(is_staff=True)
    mine = conversation_make(name="Mine")
    theirs = conversation_make(name="Theirs")
    conversation_make(name="Nobody's")
    conversation_assign(conversation=mine, assignee=admin_user, actor=admin_user)
    conversation_assign(conversation=theirs, assignee=other, actor=admin_user)

    counts = admin_client.get(INBOX).context["counts"]
    assert (counts["mine"], counts["unassigned"], counts["all"]) == (1, 1, 3)
    assert names(admin_client.get(INBOX, {"tab": "mine"})) == ["Mine"]
    assert names(admin_client.get(INBOX, {"tab": "unassigned"})) == ["Nobody's"]
    assert names(admin_client.get(INBOX, {"assignee": other.pk})) == ["Theirs"]
    assert names(admin_client.get(INBOX, {"tab": "nonsense"})) == names(admin_client.get(INBOX))


def test_filters_sort_and_search(admin_client):
    number_a, number_b = PhoneNumberFactory(), PhoneNumberFactory()
    now = timezone.now()
    old = conversation_make(
        name="Old",
        number=number_a,
        waiting_since=now - timedelta(hours=2),
        last_message_at=now - timedelta(hours=1),
    )
    new = conversation_make(
        name="New", number=number_b, waiting_since=now - timedelta(minutes=1), last_message_at=now
    )
    resolved = conversation_make(
        name="Done",
        number=number_a,
        status=Conversation.Status.RESOLVED,
        waiting_since=None,
        last_message_at=now - timedelta(days=2),
    )
    labels_make("refund")
    conversation_labels_set(conversation=new, labels=["refund"], actor=None)
    MessageFactory(contact=old.contact, phone_number=number_a, conversation=old, text="my invoice is wrong")

    assert names(admin_client.get(INBOX)) == ["Old", "New", "Done"]
    assert names(admin_client.get(INBOX, {"sort": "latest"})) == ["New", "Old", "Done"]
    assert names(admin_client.get(INBOX, {"status": "resolved"})) == ["Done"]
    assert names(admin_client.get(INBOX, {"phone_number": number_b.pk})) == ["New"]
    assert names(admin_client.get(INBOX, {"label": "refund"})) == ["New"]
    assert names(admin_client.get(INBOX, {"q": "INVOICE"})) == ["Old"]  # the message text
    assert names(admin_client.get(INBOX, {"q": "don"})) == ["Done"]  # the contact's name
    counts = admin_client.get(INBOX, {"phone_number": number_a.pk}).context["counts"]
    assert counts["all"] == 2 and resolved.phone_number == number_a  # tab counts follow the filters


def test_fifty_a_page(admin_client):
    for index in range(51):
        conversation_make(name=f"Customer {index:02d}")
    first = admin_client.get(INBOX)
    assert len(first.context["rows"]) == 50 and "page 1 of 2" in first.text
    assert len(admin_client.get(INBOX, {"page": 2}).context["rows"]) == 1


def test_the_inbox_and_its_changes_need_the_view_permission(client):
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_message"]))
    assert client.get(INBOX).status_code == 403
    assert client.get(CHANGES).status_code == 403
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_conversation"]))
    assert client.get(INBOX).status_code == 200


def test_changes_say_nothing_changed_until_a_conversation_moves(admin_client, admin_user):
    conversation = conversation_make(name="Ada")
    token = admin_client.get(INBOX).context["token"]

    unchanged = admin_client.get(CHANGES, {"since": token}).json()
    assert unchanged == {"changed": False, "token": token}

    conversation_assign(conversation=conversation, assignee=admin_user, actor=admin_user)
    changed = admin_client.get(CHANGES, {"since": token}).json()
    assert changed["changed"] is True and changed["token"] != token
    assert admin_client.get(CHANGES, {"since": changed["token"]}).json()["changed"] is False


def test_a_customer_writing_moves_the_token_and_the_fragment_shows_it(admin_client, client):
    PhoneNumberFactory(phone_number_id="106540352242922")
    token = admin_client.get(INBOX).context["token"]
    customer_writes(client, "wamid.inbox.1", "is anyone there?", at=int(time.time()))

    assert admin_client.get(CHANGES, {"since": token}).json()["changed"] is True
    fragment = admin_client.get(INBOX, {"fragment": "1"})
    assert fragment.text.startswith('<div id="wharf-inbox"') and "<html" not in fragment.text
    assert "is anyone there?" in fragment.text and 'class="wharf-unread"' in fragment.text


def test_the_changes_answer_costs_one_query(admin_client, django_assert_num_queries):
    conversation_make(name="Ada")
    admin_client.get(CHANGES)  # the session and the user, once
    with django_assert_num_queries(3):  # the session, the user, the token
        admin_client.get(CHANGES, {"since": "0-0"})


def test_the_inbox_queries_do_not_grow_with_its_rows(
    admin_client, django_assert_max_num_queries, django_assert_num_queries
):
    number = PhoneNumberFactory()
    for index in range(3):
        conversation_make(name=f"First {index}", number=number)
    admin_client.get(INBOX)  # sessions, permissions and the like, once
    with django_assert_max_num_queries(12) as few:
        admin_client.get(INBOX)
    labels_make("x")
    for index in range(27):
        conversation = conversation_make(name=f"More {index}", number=number)
        conversation_labels_set(conversation=conversation, labels=["x"], actor=None)

    with django_assert_num_queries(len(few.captured_queries)):
        response = admin_client.get(INBOX)
    assert len(response.context["rows"]) == 30


def test_operators_land_on_the_inbox_and_others_on_the_index(client):
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_conversation"]))
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == INBOX
    client.force_login(UserFactory(is_staff=True, permissions=["contacts.view_contact"]))
    assert "Operators&#x27; console" in client.get("/admin/").text


def test_opening_a_conversation_from_the_inbox_reads_it(admin_client, client):
    PhoneNumberFactory(phone_number_id="106540352242922")
    message = customer_writes(client, "wamid.inbox.2", "hello", at=int(time.time()))
    conversation = conversation_of(message)
    assert conversation.unread_count == 1
    row = admin_client.get(INBOX).context["rows"][0]

    assert admin_client.get(row.url).status_code == 200

    conversation.refresh_from_db()
    assert conversation.unread_count == 0
    assert 'class="wharf-unread"' not in admin_client.get(INBOX).text
