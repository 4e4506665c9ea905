"""An operator opens a customer's conversation and starts a reply, in a real browser: Meta (the
sandbox) is told the customer's message was read, then shown that the business is typing."""

import time

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from messaging.inbound.events import inbound_events_drain
from messaging.models import Message
from tests.factories import PhoneNumberFactory, sandbox_received
from tests.messaging.test_outbound_send import Sandbox
from tests.messaging.test_read_receipts import receipts_run
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_body, webhook_post
from tests.waiting import wait_until


@pytest.fixture
def sandbox():
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    sandbox.config(statuses=False)
    yield sandbox
    sandbox.post("reset")


def meta_posts(body: bytes) -> None:
    """A signed webhook from Meta, then the `incoming` worker's work, inline."""
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1


def meta_saw(broker, sandbox, key: str, wamid: str) -> bool:
    """Runs the receipt tasks published so far (the `default` worker's work, inline), then asks the
    sandbox whether `wamid` is among what it recorded under `key`."""
    receipts_run(broker, times=1)
    return wamid in sandbox.stats()[key]


def test_opening_a_conversation_sends_blue_ticks_and_typing_shows_an_indicator(
    admin_page, screenshot, broker, sandbox
):
    # given a customer whose message nobody has read yet
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    sandbox_received("wamid.rr-browser-1")  # Meta delivered it: it may be marked read
    meta_posts(text_body(wamid="wamid.rr-browser-1", text="Is my table booked?", timestamp=int(time.time())))
    assert sandbox.stats()["reads"] == 0

    # when the operator opens the conversation from the inbox
    page = admin_page
    page.goto("/admin/")
    page.locator(".wharf-conversation-row").get_by_role("link", name="Ada Lovelace").click()
    expect(page.locator(".wharf-inbound .wharf-text")).to_have_text(["Is my table booked?"])
    screenshot(page, "conversation-open")

    # then Meta is told the message was read (the customer sees blue ticks), with no typing indicator
    wait_until(
        lambda: meta_saw(broker, sandbox, "read_wamids", "wamid.rr-browser-1"),
        timeout=10,
        message="the read receipt at the sandbox",
    )
    assert sandbox.stats()["typing_wamids"] == []
    assert Message.objects.get(wamid="wamid.rr-browser-1").read_at is not None

    # when the operator starts typing a reply
    box = page.get_by_role("textbox", name="Message")
    box.press_sequentially("Yes, for four at eight", delay=20)
    screenshot(page, "typing")

    # then Meta shows the customer a typing indicator, once for all those keystrokes
    wait_until(
        lambda: meta_saw(broker, sandbox, "typing_wamids", "wamid.rr-browser-1"),
        timeout=10,
        message="the typing indicator at the sandbox",
    )
    assert sandbox.stats()["typing_wamids"] == ["wamid.rr-browser-1"]
    expect(box).to_have_value("Yes, for four at eight")
