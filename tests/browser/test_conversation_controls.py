"""An operator works a conversation from its page's header, in a real browser: takes it, labels it,
snoozes it, reopens it and resolves it, with the contact beside it."""

import time

from django.test import Client
from playwright.sync_api import expect

from messaging.inbound.events import inbound_events_drain
from messaging.models import Conversation, Label
from tests.factories import LabelFactory, PhoneNumberFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_body, webhook_post


def test_an_operator_assigns_labels_snoozes_reopens_and_resolves_a_conversation(
    admin_page, operator, screenshot
):
    # given a customer who has written to the business's number, and the catalogue's labels
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    LabelFactory(name="vip", colour=Label.Colour.PURPLE, description="Big customers")
    LabelFactory(name="refund", colour=Label.Colour.ORANGE)
    LabelFactory(name="delivery", colour=Label.Colour.BLUE)
    body = text_body(wamid="wamid.controls-1", text="Hello, where is my parcel?", timestamp=int(time.time()))
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1
    page = admin_page

    # when the operator opens the conversation from the inbox
    page.locator(".wharf-conversation-row").get_by_role("link", name="Ada Lovelace").click()
    header = page.locator("#conversation-header")
    expect(header.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    expect(header.locator(".wharf-status")).to_have_text("Open")
    expect(page.locator("#content-related")).to_contain_text("WhatsApp")
    screenshot(page, "conversation")

    # and takes it
    header.get_by_role("button", name="Assign to me").click()
    expect(page.locator(".messagelist")).to_contain_text("Assigned to operator.")
    expect(header.get_by_label("Assignee")).to_have_value(str(operator.pk))
    expect(header.get_by_role("button", name="Assign to me")).to_have_count(0)
    screenshot(page, "assigned")

    # and labels it
    header.locator("summary", has_text="Labels").click()
    screenshot(page, "labels-menu")
    header.get_by_role("checkbox", name="vip").check()
    header.get_by_role("checkbox", name="delivery").check()
    header.get_by_role("button", name="Save labels").click()
    expect(page.locator(".messagelist")).to_contain_text("Labels: delivery, vip.")
    expect(header.locator(".wharf-convo-labels .wharf-label")).to_have_text(["delivery", "vip"])
    screenshot(page, "labelled")

    # and snoozes it for an hour
    header.locator("summary", has_text="Snooze").click()
    screenshot(page, "snooze-menu")
    header.get_by_role("button", name="1 hour").click()
    expect(page.locator(".messagelist")).to_contain_text("Snoozed until")
    expect(header.locator(".wharf-status")).to_have_text("Snoozed")
    screenshot(page, "snoozed")

    # and reopens it
    header.get_by_role("button", name="Reopen").click()
    expect(header.locator(".wharf-status")).to_have_text("Open")
    screenshot(page, "reopened")

    # and resolves it
    header.get_by_role("button", name="Resolve").click()
    expect(page.locator(".messagelist")).to_contain_text("Resolved.")
    expect(header.locator(".wharf-status")).to_have_text("Resolved")
    expect(header.get_by_role("button", name="Reopen")).to_be_visible()
    screenshot(page, "resolved")

    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.assignee_id, conversation.labels) == (
        Conversation.Status.RESOLVED,
        operator.pk,
        ["delivery", "vip"],
    )


def test_the_priority_select_applies_when_changed_and_the_page_fits_a_narrow_screen(admin_page, screenshot):
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    body = text_body(wamid="wamid.controls-2", text="Is it shipped yet?", timestamp=int(time.time()))
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1
    page = admin_page
    page.set_viewport_size({"width": 700, "height": 900})
    page.locator(".wharf-conversation-row").get_by_role("link", name="Ada Lovelace").click()
    header = page.locator("#conversation-header")

    header.get_by_label("Priority").select_option("urgent")

    expect(page.locator(".messagelist")).to_contain_text("Priority: urgent.")
    expect(header.locator(".wharf-priority")).to_have_text("Urgent priority")
    panel = page.locator("#content-related")
    expect(panel).to_be_visible()
    assert panel.bounding_box()["y"] > header.bounding_box()["y"]  # below the conversation
    screenshot(page, "narrow")
    assert Conversation.objects.get().priority == Conversation.Priority.URGENT
