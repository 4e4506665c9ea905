"""An operator works from the inbox, in a real browser: it updates without a reload."""

import re
import time
from datetime import timedelta

from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from messaging.inbound.events import inbound_events_drain
from messaging.models import Label
from tests.factories import LabelFactory, PhoneNumberFactory, UserFactory
from tests.messaging.test_inbox import conversation_make
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


def test_an_operator_narrows_a_busy_inbox_to_what_is_theirs(admin_page, operator, screenshot):
    # given a morning's conversations over two numbers, some taken, some labelled, one resolved
    sales = PhoneNumberFactory(display_phone_number="15550783881", verified_name="Sales")
    support = PhoneNumberFactory(display_phone_number="15550783882", verified_name="Support")
    LabelFactory(name="vip", colour=Label.Colour.PURPLE)
    LabelFactory(name="refund", colour=Label.Colour.ORANGE)
    grace = UserFactory(username="grace", is_staff=True)
    now = timezone.now()

    def ago(minutes: int):
        return now - timedelta(minutes=minutes)

    conversation_make(
        name="Ada Lovelace",
        number=support,
        unread_count=2,
        waiting_since=ago(42),
        labels=["refund"],
        last_message_preview="The parcel arrived damaged, can I get a refund?",
        last_message_at=ago(40),
        last_inbound_at=ago(40),
        assignee=operator,
    )
    conversation_make(
        name="Alan Turing",
        number=sales,
        unread_count=1,
        waiting_since=ago(12),
        labels=["vip"],
        last_message_preview="Do you ship to Manchester on Saturdays?",
        last_message_at=ago(12),
        last_inbound_at=ago(12),
    )
    conversation_make(
        name="Grace Hopper",
        number=support,
        unread_count=0,
        waiting_since=None,
        status="pending",
        last_message_preview="We have sent a replacement today.",
        last_message_at=ago(95),
        last_inbound_at=ago(26 * 60),
        assignee=grace,
    )
    conversation_make(
        name="Katherine Johnson",
        number=sales,
        unread_count=3,
        waiting_since=ago(3),
        labels=["vip"],
        last_message_preview="Three more boxes please, same address",
        last_message_at=ago(2),
        last_inbound_at=ago(2),
        assignee=operator,
        priority="high",
    )
    conversation_make(
        name="Edsger Dijkstra",
        number=sales,
        unread_count=0,
        waiting_since=None,
        status="resolved",
        last_message_preview="Thanks, all sorted!",
        last_message_at=ago(300),
        last_inbound_at=ago(300),
    )
    page = admin_page
    page.goto("/admin/")
    rows = page.locator(".wharf-conversation-row")
    expect(rows).to_have_count(5)
    # the longest waiting first, then those nobody waits on by their latest message
    expect(rows.locator(".wharf-contact > a")).to_have_text(
        ["Ada Lovelace", "Alan Turing", "Katherine Johnson", "Grace Hopper", "Edsger Dijkstra"]
    )
    expect(rows.filter(has_text="Katherine Johnson").locator(".wharf-priority")).to_have_text("High")
    screenshot(page, "busy-inbox")

    # when the operator keeps to their own
    page.get_by_role("link", name=re.compile(r"^Mine")).click()
    expect(rows.locator(".wharf-contact > a")).to_have_text(["Ada Lovelace", "Katherine Johnson"])
    screenshot(page, "mine")

    # and to the VIPs among everyone's, latest first
    page.get_by_role("link", name=re.compile(r"^All")).click()
    page.get_by_label("Label").select_option("vip")
    page.get_by_label("Sort").select_option("latest")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows.locator(".wharf-contact > a")).to_have_text(["Katherine Johnson", "Alan Turing"])
    screenshot(page, "vip-latest")

    # and looks for one customer by name
    page.get_by_label("Search").fill("hopper")
    page.get_by_label("Label").select_option("")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows.locator(".wharf-contact > a")).to_have_text(["Grace Hopper"])
