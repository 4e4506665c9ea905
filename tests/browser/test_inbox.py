"""An operator works from the inbox, in a real browser: it updates without a reload."""

import time

from django.test import Client
from playwright.sync_api import expect

from messaging.inbound.events import inbound_events_drain
from tests.factories import PhoneNumberFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_body, webhook_post


def customer_writes(wamid: str, text: str) -> None:
    """A signed webhook from Meta, then the `incoming` worker's work, inline."""
    body = text_body(wamid=wamid, text=text, timestamp=int(time.time()))
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1


def test_a_new_message_appears_in_the_open_inbox_and_opening_it_reads_it(admin_page, screenshot):
    # given a customer who has written to the business's number
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    customer_writes("wamid.inbox-browser-1", "Hello, where is my parcel?")
    page = admin_page

    # when the operator looks at the inbox (the page the admin's index leads to)
    page.goto("/admin/")
    row = page.locator(".wharf-conversation-row").filter(has_text="Ada Lovelace")
    expect(row.locator(".wharf-preview")).to_have_text("Hello, where is my parcel?")
    expect(row.locator(".wharf-unread")).to_have_text("1")
    expect(row.locator(".wharf-window")).to_have_text("open")
    expect(page).to_have_title("(1) Inbox | Wharf")
    screenshot(page, "inbox")

    # and the customer writes again while the page is open
    customer_writes("wamid.inbox-browser-2", "Is it shipped yet?")

    # then the row shows it without a reload, with two unread messages
    expect(row.locator(".wharf-preview")).to_have_text("Is it shipped yet?")
    expect(row.locator(".wharf-unread")).to_have_text("2")
    expect(page).to_have_title("(1) Inbox | Wharf")
    screenshot(page, "new-message-live")

    # when the operator opens the conversation
    row.get_by_role("link", name="Ada Lovelace").click()
    timeline = page.locator(".wharf-conversation")
    expect(timeline.locator(".wharf-inbound .wharf-text")).to_have_text(
        ["Hello, where is my parcel?", "Is it shipped yet?"]
    )
    screenshot(page, "conversation")

    # then back in the inbox nothing is unread any more
    page.go_back()
    expect(row).to_be_visible()
    expect(row.locator(".wharf-unread")).to_have_count(0)
    expect(page).to_have_title("Inbox | Wharf")
    screenshot(page, "inbox-read")
