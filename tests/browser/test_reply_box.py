"""An operator writes from the conversation page's reply box, in a real browser: a canned response
picked with "/", a template filled in with its live preview, and a window that closes while they type."""

import time

from django.test import Client
from playwright.sync_api import expect

from contacts.models import Contact
from messaging.inbound.events import inbound_events_drain
from messaging.models import CannedResponse, Message, PhoneNumber, Template
from tests.factories import PhoneNumberFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, WABA_ID, text_body, webhook_post


def customer_wrote(*, seconds_ago: float, text: str = "Hello, are you open on Saturday?") -> Contact:
    """Ada's message through Meta's webhook, `seconds_ago` old, and the `incoming` worker's work."""
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, waba_id=WABA_ID, display_phone_number="15550783881")
    wrote_at = int(time.time() - seconds_ago)
    body = text_body(wamid=f"wamid.reply-box-{seconds_ago}", text=text, timestamp=wrote_at)
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1
    return Contact.objects.get(wa_id="447700900123")


def conversation_url(contact: Contact) -> str:
    sender = PhoneNumber.objects.get(phone_number_id=PHONE_NUMBER_ID)
    return f"/admin/messaging/message/conversation/{contact.pk}/?sender={sender.pk}"


def test_an_operator_answers_with_a_canned_response_picked_with_a_slash(admin_page, screenshot, broker):
    # given a customer who has just written, and the team's canned responses
    contact = customer_wrote(seconds_ago=60)
    CannedResponse.objects.create(
        shortcut="hours",
        title="Opening hours",
        body="Hi {{first_name|there}}, we are open 9:00-17:00, Monday to Saturday.\nSee you soon!",
    )
    CannedResponse.objects.create(
        shortcut="returns", title="How to return an order", body="You can return any order within 30 days."
    )
    page = admin_page
    page.goto(conversation_url(contact))
    message = page.get_by_role("textbox", name="Message")
    options = page.get_by_role("listbox", name="Canned responses").get_by_role("option")

    # when the operator types "/" in the reply box, the list of canned responses opens
    message.click()
    message.press_sequentially("Thanks for asking. /")
    expect(options).to_have_count(2)
    expect(options.first).to_contain_text("/hours")
    expect(options.first).to_contain_text("Opening hours")
    expect(options.first).to_have_attribute("aria-selected", "true")
    screenshot(page, "slash-opens-the-list")

    # and narrows it by typing, Esc closes it, and the arrow keys and Enter pick one
    message.press_sequentially("re")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("/returns")
    message.press("Escape")
    expect(page.get_by_role("listbox", name="Canned responses")).to_be_hidden()
    message.press("Backspace")
    message.press("Backspace")  # back to "/"
    expect(options).to_have_count(2)
    message.press("ArrowDown")
    message.press("ArrowUp")
    message.press("Enter")

    # then the body is inserted in place of "/", filled for the contact
    expect(message).to_have_value(
        "Thanks for asking. Hi Ada, we are open 9:00-17:00, Monday to Saturday.\nSee you soon!"
    )
    expect(page.get_by_role("listbox", name="Canned responses")).to_be_hidden()
    screenshot(page, "canned-response-inserted")

    # and the button lists them too, for those who do not know the shortcut
    page.get_by_role("button", name="Canned responses").click()
    expect(options).to_have_count(2)
    screenshot(page, "canned-responses-button")
    options.filter(has_text="/returns").click()
    expect(message).to_have_value(
        "Thanks for asking. Hi Ada, we are open 9:00-17:00, Monday to Saturday.\nSee you soon!"
        "You can return any order within 30 days."
    )

    # and the reply is sent as it reads
    page.get_by_role("button", name="Send", exact=True).click()
    reply = page.locator(".wharf-conversation .wharf-outbound .wharf-text")
    expect(reply).to_contain_text(["Thanks for asking. Hi Ada, we are open"])
    screenshot(page, "reply-sent")
    sent = Message.objects.get(direction="outbound")
    assert sent.text.startswith("Thanks for asking. Hi Ada, we are open 9:00-17:00")
    assert broker.tasks("outgoing")


def test_a_closed_window_offers_templates_with_a_live_preview(admin_page, screenshot, broker):
    # given a customer who wrote two days ago, and two approved templates of the sender's WABA
    contact = customer_wrote(seconds_ago=2 * 24 * 3600)
    Template.objects.create(
        waba_id=WABA_ID, name="hello_again", language="en", status="APPROVED", category="MARKETING",
        components=[{"type": "BODY", "text": "Hello again!"}],
    )  # fmt: skip
    Template.objects.create(
        waba_id=WABA_ID,
        name="order_shipped",
        language="en_GB",
        status="APPROVED",
        category="UTILITY",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way and arrives {{3}}."},
            {"type": "FOOTER", "text": "Wharf Shop"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "text": "Track it", "url": "https://shop.example/track/{{1}}"},
                    {"type": "QUICK_REPLY", "text": "Thanks!"},
                ],
            },
        ],
    )
    page = admin_page

    # when the operator opens the conversation
    page.goto(conversation_url(contact))

    # then only templates can be sent, and the picker is open
    expect(page.get_by_text("WhatsApp allows only an approved template")).to_be_visible()
    expect(page.get_by_role("textbox", name="Message")).to_have_count(0)
    picker = page.get_by_label("Template", exact=True)
    expect(picker).to_be_visible()
    screenshot(page, "window-closed-picker")

    # when they choose a template, its parameters and a preview with the placeholders marked appear
    picker.select_option(label="order_shipped (en_GB, utility)")
    form = page.locator("form.wharf-reply-template").filter(has=page.get_by_text("Send order_shipped"))
    preview = page.get_by_label("Preview of order_shipped")
    expect(preview).to_contain_text("Order {{1}}")
    expect(preview).to_contain_text("Hi {{1}}, your order {{2}} is on its way and arrives {{3}}.")
    expect(preview).to_contain_text("Wharf Shop")
    expect(preview).to_contain_text("Track it")
    expect(page.get_by_label("Preview of hello_again")).to_be_hidden()
    screenshot(page, "template-chosen")

    # and the preview follows what they type
    form.get_by_label("header {{1}}").fill("A-17")
    form.get_by_label("body {{1}}").fill("Ada")
    form.get_by_label("body {{2}}").fill("A-17")
    expect(preview).to_contain_text("Order A-17")
    expect(preview).to_contain_text("Hi Ada, your order A-17 is on its way and arrives {{3}}.")
    form.get_by_label("body {{3}}").fill("tomorrow")
    form.get_by_label("button 1 {{1}}").fill("A-17")
    expect(preview).to_contain_text("Hi Ada, your order A-17 is on its way and arrives tomorrow.")
    screenshot(page, "preview-filled")

    # and the template is sent with those values
    form.get_by_role("button", name="Send order_shipped").click()
    expect(page.locator(".wharf-conversation .wharf-outbound")).to_have_count(1)
    screenshot(page, "template-sent")
    sent = Message.objects.get(direction="outbound")
    assert sent.type == "template"
    assert sent.payload["template"]["components"][1]["parameters"][2] == {"type": "text", "text": "tomorrow"}


def test_the_window_closing_while_typing_keeps_the_text_and_switches_to_templates(admin_page, screenshot):
    # given a customer whose message is ten seconds short of 24 hours old, and an approved template
    contact = customer_wrote(seconds_ago=24 * 3600 - 10)
    Template.objects.create(
        waba_id=WABA_ID, name="hello_again", language="en", status="APPROVED", category="MARKETING",
        components=[{"type": "BODY", "text": "Hello again, {{1}}!"}],
    )  # fmt: skip
    page = admin_page

    # when the operator opens the conversation, a countdown in amber says the window is closing
    page.goto(conversation_url(contact))
    countdown = page.get_by_role("timer")
    expect(countdown).to_have_text("Window closes in less than a minute")
    expect(countdown).to_have_class("wharf-countdown wharf-countdown-soon")
    message = page.get_by_role("textbox", name="Message")
    message.fill("Yes, we are open on Saturday from 9:00.")
    screenshot(page, "countdown")

    # then when it reaches zero the page says the window closed, keeps the text and offers templates
    closed = page.get_by_role("alert").filter(has_text="The 24-hour window has closed")
    expect(closed).to_be_visible(timeout=30_000)
    expect(countdown).to_be_hidden()
    expect(message).to_have_value("Yes, we are open on Saturday from 9:00.")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    expect(page.get_by_label("Preview of hello_again")).to_contain_text("Hello again, {{1}}!")
    screenshot(page, "window-closed")
