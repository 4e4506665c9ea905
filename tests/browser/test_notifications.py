"""An operator on any admin page hears of a customer's new message: a browser notification and the
unread count before the title; the notification opens the conversation."""

import re
import time

from django.test import Client
from playwright.sync_api import expect

from messaging.inbound.events import inbound_events_drain
from tests.factories import PhoneNumberFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_body, webhook_post

# Records the notifications the page makes instead of showing them; `permission` starts as the
# browser's own unless the test names one, and a granted one lasts across the tab's pages.
NOTIFICATION_STUB = """
(() => {
  const real = window.Notification;
  let permission = sessionStorage.getItem("stub.permission") || %s || (real ? real.permission : "default");
  window.__notifications = [];
  window.Notification = class {
    constructor(title, options) {
      this.title = title;
      this.body = (options || {}).body;
      this.tag = (options || {}).tag;
      window.__notifications.push(this);
    }
    close() { this.closed = true; }
    static get permission() { return permission; }
    static requestPermission() {
      permission = "granted";
      sessionStorage.setItem("stub.permission", permission);
      return Promise.resolve(permission);
    }
  };
})();
"""


def customer_writes(
    wamid: str, text: str, *, wa_id: str = "447700900123", name: str = "Ada Lovelace"
) -> None:
    """A signed webhook from Meta, then the `incoming` worker's work, inline."""
    body = text_body(wamid=wamid, text=text, wa_id=wa_id, name=name, timestamp=int(time.time()))
    assert webhook_post(Client(), body).status_code == 200
    assert inbound_events_drain().processed == 1


def notifications(page) -> list[dict]:
    return page.evaluate("window.__notifications.map(n => ({title: n.title, body: n.body}))")


def settled(page, operator) -> None:
    """The page's first answer is in: what was there before is recorded, not notified."""
    page.wait_for_function(f"window.localStorage.getItem('wharf.notified.{operator.pk}') !== null")


def test_a_new_message_notifies_the_operator_and_the_notification_opens_it(
    admin_page, operator, live_server, screenshot
):
    # given an operator who allowed notifications, on an admin page other than the inbox
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")
    page = admin_page
    page.context.grant_permissions(["notifications"], origin=live_server.url)
    page.add_init_script(NOTIFICATION_STUB % "null")
    page.goto("/admin/contacts/contact/")
    settled(page, operator)
    expect(page.get_by_role("link", name="Enable notifications")).to_be_hidden()
    expect(page).not_to_have_title(re.compile(r"^\("))
    screenshot(page, "contacts")

    # when a customer writes
    customer_writes("wamid.notify-browser-1", "Hello, where is my parcel?")

    # then a notification says who and what, and the title counts one conversation
    page.wait_for_function("window.__notifications.length === 1")
    assert notifications(page) == [{"title": "Ada Lovelace", "body": "Hello, where is my parcel?"}]
    expect(page).to_have_title(re.compile(r"^\(1\) "))
    screenshot(page, "notified")

    # when the operator clicks it, the conversation opens (and is read)
    page.evaluate("window.__notifications[0].onclick()")
    timeline = page.locator(".wharf-conversation")
    expect(timeline.locator(".wharf-inbound .wharf-text")).to_have_text(["Hello, where is my parcel?"])
    settled(page, operator)
    expect(page).not_to_have_title(re.compile(r"^\("))
    screenshot(page, "conversation")

    # and while it is open, its customer's next message is no notification, another customer's is
    customer_writes("wamid.notify-browser-2", "Is it shipped?")
    customer_writes("wamid.notify-browser-3", "Hi there", wa_id="447700900999", name="Grace Hopper")
    page.wait_for_function("window.__notifications.length >= 1")
    expect(page).to_have_title(re.compile(r"^\([12]\) "))
    assert notifications(page) == [{"title": "Grace Hopper", "body": "Hi there"}]
    screenshot(page, "other-customer")


def test_the_header_link_asks_for_the_permission_once(admin_page, screenshot):
    page = admin_page
    page.add_init_script(NOTIFICATION_STUB % '"default"')
    page.goto("/admin/")
    link = page.get_by_role("link", name="Enable notifications")
    expect(link).to_be_visible()
    expect(page.get_by_text("Away", exact=True)).to_be_visible()
    screenshot(page, "header")

    link.click()

    expect(link).to_be_hidden()
    assert page.evaluate("Notification.permission") == "granted"

    # and the operator marks themselves available from the same header
    page.get_by_role("button", name="be available").click()
    expect(page.get_by_text("Available", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="go away")).to_be_visible()
    expect(link).to_be_hidden()
    screenshot(page, "available")
