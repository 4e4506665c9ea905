"""An operator keeps a conversation open, in a real browser: it follows the customer and the reply's
ticks without a reload, and leaves what the operator is typing alone."""

import time

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from messaging.inbound.events import inbound_events_drain
from messaging.models import Conversation, Message
from messaging.outbound.drain import outgoing_drain
from tests.factories import PhoneNumberFactory
from tests.messaging.test_outbound_send import Sandbox
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, status_body, text_body, webhook_post


@pytest.fixture
def sandbox():
    """The sandbox Graph API, answering sends without sending statuses of its own."""
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    sandbox.config(statuses=False)
    yield sandbox
    sandbox.post("reset")


def meta_posts(body: bytes) -> None:
    """A signed webhook from Meta, then the `incoming` worker's work, inline."""
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1


def test_the_open_conversation_shows_new_messages_and_ticks_without_a_reload(
    admin_page, screenshot, broker, sandbox
):
    # given a customer who has written, and the operator who opened their conversation from the inbox
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    now = int(time.time())
    meta_posts(text_body(wamid="wamid.live-in-1", text="Hello, where is my parcel?", timestamp=now))
    page = admin_page
    page.goto("/admin/")
    page.locator(".wharf-conversation-row").get_by_role("link", name="Ada Lovelace").click()
    timeline = page.locator(".wharf-conversation")
    expect(timeline.locator(".wharf-inbound .wharf-text")).to_have_text(["Hello, where is my parcel?"])
    screenshot(page, "conversation-open")
    page.evaluate("window.wharfNotReloaded = true")  # gone if the page were loaded again

    # when the customer writes again while the page is open
    meta_posts(text_body(wamid="wamid.live-in-2", text="It was due yesterday.", timestamp=int(time.time())))

    # then it appears without a reload (within a poll), and is read since the operator sees it
    expect(timeline.locator(".wharf-inbound .wharf-text")).to_have_text(
        ["Hello, where is my parcel?", "It was due yesterday."], timeout=3_000
    )
    assert page.evaluate("window.wharfNotReloaded") is True
    screenshot(page, "new-message-live")
    assert Conversation.objects.get().unread_count == 0

    # when the operator replies, and starts typing the next message
    page.get_by_role("textbox", name="Message").fill("Sorry! It ships today.")
    page.get_by_role("button", name="Send", exact=True).click()
    reply = timeline.locator(".wharf-outbound")
    expect(reply.locator(".wharf-meta")).to_contain_text("queued")
    page.evaluate("window.wharfNotReloaded = true")
    draft = page.get_by_role("textbox", name="Message")
    draft.fill("You will have it tomorrow")
    screenshot(page, "reply-queued")

    # and the `outgoing` worker sends it to Meta (the sandbox), whose statuses come back signed
    assert outgoing_drain().sent == 1
    sent = Message.objects.get(direction="outbound")
    assert sent.status == "sent" and sent.wamid.startswith("wamid.")

    # then its ticks follow each status in place, and the draft stays as typed
    ticks = reply.locator(".wharf-ticks")
    expect(ticks).to_have_attribute("title", "sent")
    expect(ticks).to_have_text("✓")
    screenshot(page, "reply-sent")
    meta_posts(status_body(wamid=sent.wamid, status="delivered", timestamp=int(time.time())))
    expect(ticks).to_have_attribute("title", "delivered")
    expect(ticks).to_have_text("✓✓")
    screenshot(page, "reply-delivered")
    meta_posts(status_body(wamid=sent.wamid, status="read", timestamp=int(time.time())))
    expect(ticks).to_have_attribute("title", "read")
    expect(ticks).to_have_class("wharf-ticks wharf-read")
    expect(draft).to_have_value("You will have it tomorrow")
    assert page.evaluate("window.wharfNotReloaded") is True
    screenshot(page, "reply-read")
