"""An operator leaves a private note on a conversation, in a real browser, and reads who changed
what in its timeline, live."""

import re
import time

from django.test import Client
from playwright.sync_api import expect

from messaging.conversations import conversation_assign
from messaging.inbound.events import inbound_events_drain
from messaging.models import Conversation, ConversationNote
from tests.factories import PhoneNumberFactory, UserFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_body, webhook_post


def test_an_operator_adds_a_private_note_and_sees_the_assignment_in_the_timeline(
    admin_page, operator, screenshot
):
    # given a customer who has written, and a colleague who assigned the conversation to the operator
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    body = text_body(wamid="wamid.notes-1", text="My parcel never came.", timestamp=int(time.time()))
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1
    bob = UserFactory(username="bob", is_staff=True, is_superuser=True)
    conversation = conversation_assign(conversation=Conversation.objects.get(), assignee=operator, actor=bob)
    page = admin_page

    # when the operator opens the conversation from the inbox
    page.goto("/admin/")
    page.locator(".wharf-conversation-row").get_by_role("link", name="Ada Lovelace").click()
    timeline = page.locator(".wharf-conversation")
    expect(timeline.locator(".wharf-inbound .wharf-text")).to_have_text(["My parcel never came."])

    # then the assignment is a line of the timeline, after the customer's message
    expect(timeline.locator(".wharf-activity")).to_have_text(
        [re.compile(r"^bob assigned this to operator · \d{1,2} \w{3} \d\d:\d\d$")]
    )
    screenshot(page, "assignment-line")

    # when the operator writes a private note and adds it
    note_box = page.get_by_role("textbox", name="Private note")
    note_box.fill("Courier says it was left with a neighbour.\nAsked them to check.")
    screenshot(page, "note-typed")
    page.get_by_role("button", name="Add private note").click()

    # then the note is in the timeline, marked private, with its author; the reply box is untouched
    note = timeline.get_by_role("note", name="Private note")
    expect(note).to_have_count(1)
    expect(note.locator(".wharf-note-label")).to_have_text("Private note — not sent to the customer")
    expect(note.locator(".wharf-text")).to_have_text(
        "Courier says it was left with a neighbour.\nAsked them to check.", use_inner_text=True
    )
    expect(note.locator(".wharf-note-author")).to_have_text("operator")
    expect(page.get_by_role("textbox", name="Private note")).to_have_value("")
    screenshot(page, "note-added")
    saved = ConversationNote.objects.get()
    assert (saved.conversation_id, saved.author_id) == (conversation.pk, operator.pk)

    # when the colleague takes the conversation back while the page is open
    page.evaluate("window.wharfNotReloaded = true")
    conversation.refresh_from_db()
    conversation_assign(conversation=conversation, assignee=bob, actor=bob)

    # then the line appears without a reload, after the note
    expect(timeline.locator(".wharf-activity").last).to_contain_text("bob self-assigned this", timeout=5_000)
    expect(timeline.locator(".wharf-note, .wharf-activity").last).to_have_class("wharf-activity")
    assert page.evaluate("window.wharfNotReloaded") is True
    screenshot(page, "reassigned-live")
