"""The reply box after a refused post: a text whose window closed while the operator typed comes back
in the box with the refusal and the template picker, and a refused template keeps its values."""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Message, PhoneNumber, Template
from messaging.outbound.send import WINDOW_CLOSED
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory

pytestmark = pytest.mark.django_db

TYPED = "Yes, we are open on Saturday <from 9:00> & until 13:00."


def conversation(contact) -> str:
    return f"/admin/messaging/message/conversation/{contact.pk}/"


def reply_key(page: str) -> str:
    return re.search(r'name="reply_key" value="([0-9a-f]{32})"', page).group(1)


def errors(page: str) -> str:
    found = re.search(r'<ul class="errorlist wharf-reply-errors">(.*?)</ul>', page, re.S)
    return found.group(1) if found else ""


@pytest.fixture
def sender() -> PhoneNumber:
    return PhoneNumberFactory(waba_id="555000111")


@pytest.fixture
def contact(sender):
    contact = ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=23, minutes=59))
    MessageFactory(contact=contact, phone_number=sender, timestamp=contact.last_inbound_at)
    return contact


@pytest.fixture
def template(sender) -> Template:
    return Template.objects.create(
        waba_id=sender.waba_id,
        name="order_shipped",
        language="en_GB",
        status="APPROVED",
        category="UTILITY",
        components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way."}],
    )


def window_closes(contact) -> None:
    """The customer's message, and its copy on the contact, now more than 24 hours old."""
    at = timezone.now() - timedelta(hours=24, seconds=1)
    type(contact).objects.filter(pk=contact.pk).update(last_inbound_at=at)
    Message.objects.filter(contact=contact, direction="inbound").update(timestamp=at)


def test_a_text_posted_after_the_window_closed_comes_back_with_the_template_picker(
    admin_client, contact, sender, template
):
    # given the page opened while the window was open
    page = admin_client.get(conversation(contact)).content.decode()
    assert 'id="reply-countdown"' in page and "data-closes-at=" in page
    key = reply_key(page)

    # when the window closes while the operator types, and they send
    window_closes(contact)
    form = {"reply_kind": "text", "body": TYPED, "phone_number": sender.pk, "reply_key": key}
    response = admin_client.post(conversation(contact), form)

    # then nothing is queued, and the page says why, keeps the text and opens the template picker
    assert response.status_code == 200
    page = response.content.decode()
    assert not Message.objects.filter(direction="outbound").exists()
    assert errors(page).strip() == f"<li>{WINDOW_CLOSED}</li>"  # no field name: the operator's words
    typed = re.search(r'<textarea name="body"[^>]*>(.*?)</textarea>', page, re.S)
    assert typed and typed.group(1) == "Yes, we are open on Saturday &lt;from 9:00&gt; &amp; until 13:00."
    assert "Your text stays in the box below to copy" in page
    assert re.search(r'<button type="submit" class="button default wharf-send" disabled>Send</button>', page)
    assert re.search(r'<details id="reply-templates" open>', page)
    assert f'id="template-{template.pk}"' in page
    assert 'name="reply_kind" value="media"' not in page


def test_a_closed_window_shows_no_text_box_until_a_text_was_refused(admin_client, contact, template):
    window_closes(contact)
    page = admin_client.get(conversation(contact)).content.decode()
    assert "<textarea" not in page and "Your text stays" not in page
    assert re.search(r'<details id="reply-templates" open>', page)


def test_a_refused_text_in_an_open_window_keeps_the_text(admin_client, contact, sender):
    form = {"reply_kind": "text", "body": "x" * 4097, "phone_number": sender.pk}
    page = admin_client.post(conversation(contact), form).content.decode()
    assert "body:" in errors(page)
    assert re.search(r'<textarea name="body"[^>]*>x{4097}</textarea>', page)
    assert re.search(r'<button type="submit" class="button default wharf-send">Send</button>', page)


def test_a_refused_template_keeps_its_choice_and_values(admin_client, contact, sender):
    window_closes(contact)
    with_image = Template.objects.create(
        waba_id=sender.waba_id,
        name="parcel_photo",
        language="en",
        status="APPROVED",
        category="UTILITY",
        components=[{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hi {{1}}, here it is."}],
    )
    form = {
        "reply_kind": "template",
        "template": with_image.pk,
        "phone_number": sender.pk,
        "param-header-0-IMAGE": "",  # the medium's link is missing
        "param-body-0-1": "Ada",
    }
    page = admin_client.post(conversation(contact), form).content.decode()
    assert "link" in errors(page)
    assert not Message.objects.filter(direction="outbound").exists()
    assert f'<option value="{with_image.pk}" selected>' in page
    assert 'name="param-body-0-1" value="Ada"' in page


def test_each_templates_components_are_in_the_page_for_its_preview(admin_client, contact, template):
    page = admin_client.get(conversation(contact)).content.decode()
    found = re.search(r'<script id="reply-template-components" type="application/json">(.*?)</script>', page)
    assert found and json.loads(found.group(1)) == {str(template.pk): template.components}
