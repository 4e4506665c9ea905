"""The operator's day, in a real browser against real worker processes: a customer writes through
the sandbox (Meta's signed webhook to this live server, applied by the `incoming` worker) → the
conversation appears in the open inbox without a reload → the operator opens it → Meta (the
sandbox) is told it was read → the operator replies → the `outgoing` worker sends it, and the
sandbox's delivered and read statuses turn its ticks without a reload → the operator resolves it →
the customer writes again → it is open again, on the open page and in the inbox, without a reload."""

import re

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from messaging.models import Conversation, Message
from tests.browser.conftest import OPERATOR_PASSWORD
from tests.factories import PhoneNumberFactory, UserFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID
from tests.waiting import wait_until

CUSTOMER = "+447700900123"
LIVE_MS = 5_000  # a poll (2.5 s) and the worker's turn, on two shared cores


@pytest.fixture
def operator(transactional_db):
    """A team member, not a superuser: the number's team sees its conversations, and may answer them."""
    team = Group.objects.create(name="support")
    user = UserFactory(
        username="olivia",
        password=OPERATOR_PASSWORD,
        is_staff=True,
        permissions=[
            "messaging.view_conversation",
            "messaging.change_conversation",
            "messaging.view_message",
            "messaging.add_message",
            "contacts.view_contact",
        ],
    )
    user.groups.add(team)
    return user


def customer_writes(sandbox, text: str) -> str:
    answer = sandbox.post(
        "inbound",
        {"from": CUSTOMER, "name": "Ada Lovelace", "text": text, "phone_number_id": PHONE_NUMBER_ID},
    )
    assert answer["webhook_status"] == 200
    return answer["wamid"]


def test_an_operators_day(admin_page, operator, screenshot, sandbox, workers):
    number = PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    number.groups.add(*operator.groups.all())
    page = admin_page  # on the inbox, empty
    expect(page.locator(".wharf-conversation-row")).to_have_count(0)
    page.evaluate("window.wharfNotReloaded = true")  # gone if the page were loaded again

    # a customer writes, through Meta (the sandbox): the conversation appears without a reload
    first = customer_writes(sandbox, "Hello, is my order on its way?")
    row = page.locator(".wharf-conversation-row", has_text="Ada Lovelace")
    expect(row).to_have_count(1, timeout=LIVE_MS + 10_000)  # the first task waits for a worker to start
    expect(row).to_contain_text("Hello, is my order on its way?")
    expect(row.locator(".wharf-status")).to_have_text("open")
    expect(page).to_have_title(re.compile(r"^\(1\) "))
    assert page.evaluate("window.wharfNotReloaded") is True
    screenshot(page, "inbox-new-conversation")

    # the operator opens it: Meta is told it was read (the customer sees blue ticks)
    row.get_by_role("link", name="Ada Lovelace").click()
    timeline = page.locator(".wharf-conversation")
    expect(timeline.locator(".wharf-inbound .wharf-text")).to_have_text(["Hello, is my order on its way?"])
    wait_until(
        lambda: first in sandbox.stats()["read_wamids"], timeout=20, message="Meta to be told it was read"
    )
    assert Message.objects.get(wamid=first).read_at is not None
    screenshot(page, "conversation-opened")

    # and replies: sent by the `outgoing` worker, its ticks follow Meta's statuses without a reload
    page.get_by_role("textbox", name="Message").fill("Yes! It arrives tomorrow morning.")
    page.get_by_role("button", name="Send", exact=True).click()
    reply = timeline.locator(".wharf-outbound", has_text="It arrives tomorrow morning.")
    expect(reply).to_have_count(1)
    page.evaluate("window.wharfNotReloaded = true")
    ticks = reply.locator(".wharf-ticks")
    expect(ticks).to_have_attribute("title", "delivered", timeout=LIVE_MS + 10_000)
    expect(ticks).to_have_text("✓✓")
    screenshot(page, "reply-delivered")
    expect(ticks).to_have_attribute("title", "read", timeout=LIVE_MS + 10_000)
    expect(ticks).to_have_class(re.compile(r"\bwharf-read\b"))
    assert page.evaluate("window.wharfNotReloaded") is True
    screenshot(page, "reply-read")

    # and resolves it
    header = page.locator("#conversation-header")
    header.get_by_role("button", name="Resolve").click()
    expect(header.locator(".wharf-status")).to_have_text("Resolved")
    screenshot(page, "resolved")

    # the customer writes again while the conversation is open: it reopens, without a reload
    page.evaluate("window.wharfNotReloaded = true")
    customer_writes(sandbox, "Thanks! One more question about the invoice.")
    expect(timeline.locator(".wharf-inbound .wharf-text").last).to_have_text(
        "Thanks! One more question about the invoice.", timeout=LIVE_MS + 5_000
    )
    expect(header.locator(".wharf-status")).to_have_text("Open")
    assert page.evaluate("window.wharfNotReloaded") is True
    screenshot(page, "reopened-live")

    # and the inbox shows it open
    page.get_by_role("link", name="Inbox").click()
    row = page.locator(".wharf-conversation-row", has_text="Ada Lovelace")
    expect(row.locator(".wharf-status")).to_have_text("open")
    expect(row).to_contain_text("One more question about the invoice.")
    screenshot(page, "inbox-reopened")

    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.OPEN
    assert Message.objects.filter(direction="outbound", status="read").count() == 1
