"""An operator answers a customer from the conversation page, in a real browser."""

import time

from django.test import Client
from playwright.sync_api import expect

from messaging.inbound.events import inbound_events_drain
from messaging.models import Message
from tests.factories import PhoneNumberFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_body, webhook_post


def test_an_operator_replies_to_a_customer_and_sees_the_reply_in_the_timeline(admin_page, screenshot, broker):
    # given a customer who has just written to the business's number through Meta's webhook
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, waba_id="102290129340398")
    body = text_body(wamid="wamid.browser-1", text="Hello, where is my parcel?", timestamp=int(time.time()))
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1  # the `incoming` worker's work, inline
    inbound = Message.objects.get(wamid="wamid.browser-1")
    page = admin_page

    # when the operator finds the customer among the contacts and opens their conversation
    page.get_by_role("row").get_by_role("link", name="Contacts", exact=True).click()
    row = page.get_by_role("row").filter(has_text="Ada Lovelace")
    expect(row).to_be_visible()
    screenshot(page, "contacts")
    row.get_by_role("link", name="Conversation").click()
    timeline = page.locator(".wharf-conversation")
    expect(timeline.locator(".wharf-inbound .wharf-text")).to_have_text(["Hello, where is my parcel?"])
    screenshot(page, "conversation")

    # and types a reply and sends it
    page.get_by_role("textbox", name="Message").fill("It ships today; you will have it tomorrow.")
    screenshot(page, "reply-typed")
    page.get_by_role("button", name="Send", exact=True).click()

    # then the reply is in the timeline, queued, and the reply box is empty again
    reply = timeline.locator(".wharf-outbound")
    expect(reply.locator(".wharf-text")).to_have_text(["It ships today; you will have it tomorrow."])
    expect(reply.locator(".wharf-meta")).to_contain_text("queued")
    expect(page.get_by_role("textbox", name="Message")).to_have_value("")
    screenshot(page, "reply-sent")
    sent = Message.objects.get(direction="outbound")
    assert (sent.contact_id, sent.text) == (inbound.contact_id, "It ships today; you will have it tomorrow.")
    assert broker.tasks("outgoing")  # handed to the `outgoing` workers
