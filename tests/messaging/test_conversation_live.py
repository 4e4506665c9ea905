"""The conversation page's live updates: the `changes/` answer and the timeline fragment."""

import time

import pytest
from django.test import Client

from messaging.inbound.events import inbound_events_drain
from messaging.models import Conversation, Message
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory
from tests.messaging.test_conversations import customer_writes
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, status_body, webhook_post

pytestmark = pytest.mark.django_db


def page_url(contact_id: int) -> str:
    return f"/admin/messaging/message/conversation/{contact_id}/"


def changes_url(contact_id: int) -> str:
    return f"{page_url(contact_id)}changes/"


def status_applied(wamid: str, status: str, **kwargs) -> None:
    """A signed status webhook from Meta, then the `incoming` worker's work, inline."""
    assert webhook_post(Client(), status_body(wamid=wamid, status=status, **kwargs)).status_code == 200
    inbound_events_drain()


@pytest.fixture
def reply(db) -> Message:
    """An operator's reply Meta has accepted, in a conversation with the customer."""
    number = PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID)
    contact = ContactFactory(phone="+447700900123", wa_id="447700900123")
    return MessageFactory(
        contact=contact, phone_number=number, direction="outbound", status="sent", wamid="wamid.live-1"
    )


def test_changes_say_nothing_changed_until_a_status_moves_the_reply(admin_client, reply):
    token = admin_client.get(page_url(reply.contact_id)).context["token"]

    unchanged = admin_client.get(changes_url(reply.contact_id), {"since": token})
    assert unchanged.json() == {"changed": False, "token": token}
    assert "no-store" in unchanged["Cache-Control"]

    status_applied("wamid.live-1", "delivered", timestamp=int(time.time()))
    changed = admin_client.get(changes_url(reply.contact_id), {"since": token}).json()
    assert changed["changed"] is True and changed["token"] != token
    again = admin_client.get(changes_url(reply.contact_id), {"since": changed["token"]})
    assert again.json()["changed"] is False


def test_the_fragment_is_the_timeline_alone_with_the_new_status_and_failure(admin_client, reply):
    status_applied(
        "wamid.live-1", "failed", timestamp=int(time.time()), error=(131047, "Re-engagement message")
    )

    fragment = admin_client.get(page_url(reply.contact_id), {"fragment": "timeline"})

    assert fragment.text.lstrip().startswith('<div class="wharf-conversation" id="wharf-timeline"')
    assert "<html" not in fragment.text and "wharf-reply" not in fragment.text
    assert f'data-token="{fragment.context["token"]}"' in fragment.text
    assert "wharf-ticks wharf-failed" in fragment.text and "131047: Re-engagement message" in fragment.text


def test_a_message_arriving_while_the_page_is_open_is_read_by_the_fragment(admin_client, client, reply):
    token = admin_client.get(page_url(reply.contact_id)).context["token"]
    customer_writes(client, "wamid.live-2", "Thanks! And the invoice?", at=int(time.time()))
    conversation = Conversation.objects.get(contact_id=reply.contact_id)
    assert conversation.unread_count == 1

    assert admin_client.get(changes_url(reply.contact_id), {"since": token}).json()["changed"] is True
    fragment = admin_client.get(page_url(reply.contact_id), {"fragment": "timeline"})

    assert "Thanks! And the invoice?" in fragment.text
    conversation.refresh_from_db()
    assert conversation.unread_count == 0
    # the token the fragment carries already counts its own read: the next poll finds nothing new
    since = fragment.context["token"]
    assert admin_client.get(changes_url(reply.contact_id), {"since": since}).json()["changed"] is False


def test_older_messages_are_not_live(admin_client, reply):
    response = admin_client.get(page_url(reply.contact_id), {"before": reply.pk})
    assert response.context["live"] is False and 'wharf-timeline" data-token' not in response.text
    assert changes_url(reply.contact_id) not in response.text


def test_the_changes_and_the_fragment_need_the_view_permission(client, reply):
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_conversation"]))
    assert client.get(changes_url(reply.contact_id)).status_code == 403
    assert client.get(page_url(reply.contact_id), {"fragment": "timeline"}).status_code == 403


def test_the_changes_answer_costs_one_query(admin_client, reply, django_assert_num_queries):
    admin_client.get(changes_url(reply.contact_id))  # the session and the user, once
    with django_assert_num_queries(4):  # the session, the user, who may see it, the token
        admin_client.get(changes_url(reply.contact_id), {"since": "0-0"})
