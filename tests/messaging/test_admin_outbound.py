"""The console's outbound side: the conversation's reply box (text, template picker, media) through
the send service, in-doubt messages with their actions, sender numbers' paused state, templates."""

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from contacts.models import Contact
from core.alerts import operator_alert_raise
from core.aws import storage_ensure_bucket
from core.models import AuditLog
from core.storage import media_storage
from messaging.models import Message, PhoneNumber, SendAttempt, Template
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def conversation(contact) -> str:
    return f"/admin/messaging/message/conversation/{contact.pk}/"


def action(name: str, objects) -> dict:
    return {"action": name, "_selected_action": [o.pk for o in objects], "index": 0}


def reply_key(page: str) -> str:
    return re.search(r'name="reply_key" value="([0-9a-f]{32})"', page).group(1)


@pytest.fixture
def sender() -> PhoneNumber:
    return PhoneNumberFactory(waba_id="555000111")


@pytest.fixture
def contact(sender):
    contact = ContactFactory(last_inbound_at=timezone.now() - timedelta(hours=2))
    MessageFactory(contact=contact, phone_number=sender, timestamp=contact.last_inbound_at)
    return contact


def last_wrote(contact, at) -> None:
    """The contact's latest message, and its copy on the contact, moved back to `at`."""
    contact.last_inbound_at = at
    contact.save()
    Message.objects.filter(contact=contact, direction="inbound").update(timestamp=at)


@pytest.fixture
def template(sender) -> Template:
    return Template.objects.create(
        waba_id=sender.waba_id,
        name="order_shipped",
        language="en_GB",
        status="APPROVED",
        category="UTILITY",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way."},
        ],
    )


# -- the reply box ------------------------------------------------------------------------------------


def test_an_open_window_offers_text_media_and_templates(admin_client, contact, template):
    page = admin_client.get(conversation(contact)).content.decode()
    assert 'name="reply_kind" value="text"' in page
    assert 'name="reply_kind" value="media"' in page and 'enctype="multipart/form-data"' in page
    assert "The 24-hour window is open until" in page
    assert f'id="template-{template.pk}"' in page


def test_a_closed_window_offers_only_approved_templates_of_the_senders_waba(admin_client, contact, template):
    last_wrote(contact, timezone.now() - timedelta(hours=25))
    pending = Template.objects.create(waba_id=template.waba_id, name="draft", language="en", status="PENDING")
    other_waba = Template.objects.create(waba_id="999", name="elsewhere", language="en", status="APPROVED")

    page = admin_client.get(conversation(contact)).content.decode()
    assert 'name="reply_kind" value="text"' not in page
    assert 'name="reply_kind" value="media"' not in page
    assert "WhatsApp allows only an approved template" in page
    assert f'id="template-{template.pk}"' in page
    assert 'name="param-header-0-1"' in page and 'name="param-body-0-2"' in page
    assert f'id="template-{pending.pk}"' not in page and f'id="template-{other_waba.pk}"' not in page


def test_no_reply_box_without_the_permission_to_send(client, contact):
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_message"]))
    page = client.get(conversation(contact))
    assert page.status_code == 200 and 'name="reply_kind"' not in page.content.decode()
    assert client.post(conversation(contact), {"reply_kind": "text", "body": "hi"}).status_code == 403
    assert not Message.objects.filter(direction="outbound").exists()


def test_a_text_reply_is_queued_once_through_the_send_service(admin_client, contact, sender, admin_user):
    key = reply_key(admin_client.get(conversation(contact)).content.decode())
    form = {
        "reply_kind": "text",
        "body": "Your order ships today",
        "phone_number": sender.pk,
        "reply_key": key,
    }

    first = admin_client.post(conversation(contact), form)
    again = admin_client.post(conversation(contact), form)  # a double click

    sent = Message.objects.get(direction="outbound")
    assert first.status_code == 302 and first["Location"].endswith(f"#message-{sent.pk}")
    assert again.status_code == 302 and again["Location"] == first["Location"]
    assert (sent.status, sent.type, sent.text, sent.phone_number) == ("queued", "text", form["body"], sender)
    assert sent.created_by == admin_user
    assert AuditLog.objects.filter(action="message.send", source="admin").count() == 1


def test_the_services_refusal_is_shown_and_nothing_is_queued(admin_client, contact, sender):
    last_wrote(contact, timezone.now() - timedelta(days=3))
    response = admin_client.post(
        conversation(contact), {"reply_kind": "text", "body": "hello", "phone_number": sender.pk}
    )
    assert response.status_code == 200
    errors = re.search(
        r'<ul class="errorlist wharf-reply-errors">(.*?)</ul>', response.content.decode(), re.S
    )
    assert errors and "template" in errors.group(1).lower()
    assert not Message.objects.filter(direction="outbound").exists()


def test_a_template_reply_sends_its_parameters(admin_client, contact, sender, template):
    contact.last_inbound_at = None
    contact.save()
    key = reply_key(admin_client.get(conversation(contact)).content.decode())
    response = admin_client.post(
        conversation(contact),
        {
            "reply_kind": "template",
            "template": template.pk,
            "phone_number": sender.pk,
            "reply_key": key,
            "param-header-0-1": "A-17",
            "param-body-0-1": "Ann",
            "param-body-0-2": "A-17",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    sent = Message.objects.get(direction="outbound")
    assert sent.type == "template"
    assert sent.payload["template"] == {
        "name": "order_shipped",
        "language": {"code": "en_GB"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]},
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "A-17"}],
            },
        ],
    }


def test_a_media_reply_goes_to_s3_under_the_outgoing_prefix(admin_client, contact, sender):
    storage_ensure_bucket()
    upload = SimpleUploadedFile("my photo.png", PNG, content_type="image/png")
    response = admin_client.post(
        conversation(contact),
        {"reply_kind": "media", "phone_number": sender.pk, "file": upload, "caption": "the parcel"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    sent = Message.objects.get(direction="outbound")
    assert sent.type == "image" and sent.media_key.startswith(settings.MEDIA_OUTGOING_PREFIX)
    assert sent.media_key.endswith("/my_photo.png")
    with media_storage().open(sent.media_key) as stored:
        assert stored.read() == PNG


def test_a_refused_media_reply_leaves_no_object_behind(admin_client, contact, sender):
    storage_ensure_bucket()
    upload = SimpleUploadedFile("run.exe", b"MZ" * 100, content_type="application/x-msdownload")
    response = admin_client.post(conversation(contact), {"reply_kind": "media", "file": upload})
    assert response.status_code == 200 and "wharf-reply-errors" in response.content.decode()
    uploads = media_storage().listdir(settings.MEDIA_OUTGOING_PREFIX)[0]
    assert not [
        folder
        for folder in uploads
        if media_storage().exists(f"{settings.MEDIA_OUTGOING_PREFIX}{folder}/run.exe")
    ]


def test_a_media_reply_past_whatsapps_limit_for_its_type_is_refused_before_it_is_stored(
    admin_client, contact, sender
):
    storage_ensure_bucket()
    before = media_storage().listdir(settings.MEDIA_OUTGOING_PREFIX)[0]
    sticker = SimpleUploadedFile("big.webp", b"RIFF" + b"0" * 600 * 1024, content_type="image/webp")

    response = admin_client.post(
        conversation(contact), {"reply_kind": "media", "phone_number": sender.pk, "file": sticker}
    )

    page = response.content.decode()
    assert response.status_code == 200 and "wharf-reply-errors" in page
    assert "file: 614,404 bytes is more than the 512,000 a image/webp file may have." in page
    assert media_storage().listdir(settings.MEDIA_OUTGOING_PREFIX)[0] == before
    assert not Message.objects.filter(direction="outbound").exists()


# -- messages: failures, attempts, in doubt -----------------------------------------------------------


def test_failures_in_doubt_filter_and_attempts_are_shown(admin_client, contact, sender):
    failed = MessageFactory(
        contact=contact,
        direction="outbound",
        status="failed",
        error_code=131047,
        error_title="Re-engagement message",
    )
    doubtful = MessageFactory(contact=contact, direction="outbound", status="in_doubt", text="doubtful one")
    SendAttempt.objects.create(
        message=failed,
        started_at=timezone.now(),
        http_status=400,
        error_code=131047,
        error_title="Re-engagement message",
        latency_ms=42,
        outcome="failed",
    )

    listing = admin_client.get("/admin/messaging/message/").content.decode()
    assert "131047: Re-engagement message" in listing
    in_doubt = admin_client.get("/admin/messaging/message/?in_doubt=yes").content.decode()
    assert "doubtful one" in in_doubt and failed.text not in in_doubt
    detail = admin_client.get(f"/admin/messaging/message/{failed.pk}/change/").content.decode()
    assert "attempts to send" in detail.lower() and "42" in detail
    assert admin_client.get(f"/admin/messaging/message/{doubtful.pk}/change/").status_code == 200


def test_resend_and_abandon_in_doubt_messages(admin_client, contact):
    resend = MessageFactory(contact=contact, direction="outbound", status="in_doubt")
    abandon = MessageFactory(contact=contact, direction="outbound", status="in_doubt")
    delivered = MessageFactory(contact=contact, direction="outbound", status="delivered")

    admin_client.post("/admin/messaging/message/", action("resend", [resend, delivered]))
    admin_client.post("/admin/messaging/message/", action("abandon", [abandon]))

    resend.refresh_from_db(), abandon.refresh_from_db(), delivered.refresh_from_db()
    assert (resend.status, abandon.status, delivered.status) == ("queued", "abandoned", "delivered")
    assert AuditLog.objects.filter(action="message.resend").count() == 1
    assert AuditLog.objects.filter(action="message.abandon").count() == 1


def test_in_doubt_actions_need_the_permission_to_send(client, contact):
    doubtful = MessageFactory(contact=contact, direction="outbound", status="in_doubt")
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_message"]))
    assert 'value="resend"' not in client.get("/admin/messaging/message/").content.decode()
    client.post("/admin/messaging/message/", action("resend", [doubtful]))
    doubtful.refresh_from_db()
    assert doubtful.status == "in_doubt"


# -- sender numbers -------------------------------------------------------------------------------------


def test_paused_numbers_are_shown_and_resumed(admin_client, sender):
    running = PhoneNumberFactory()
    PhoneNumber.objects.filter(pk=sender.pk).update(
        paused_at=timezone.now(), paused_reason="(#190) Error validating access token"
    )

    listing = admin_client.get("/admin/messaging/phonenumber/?paused=yes").content.decode()
    assert "paused since" in listing and "Error validating access token" in listing
    assert str(running.phone_number_id) not in listing
    detail = admin_client.get(f"/admin/messaging/phonenumber/{sender.pk}/change/").content.decode()
    assert "Error validating access token" in detail

    alert = operator_alert_raise(key=f"sender-paused:{sender.phone_number_id}", text="Sending is paused.")
    assert "Sending is paused." in admin_client.get("/admin/", follow=True).content.decode()

    admin_client.post("/admin/messaging/phonenumber/", action("resume_sending", [sender, running]))

    sender.refresh_from_db()
    assert sender.paused_at is None and sender.paused_reason == ""
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None  # the banner goes with the pause
    assert AuditLog.objects.filter(action="phone_number.resume").count() == 1


# -- templates ------------------------------------------------------------------------------------------


def test_template_list_filters_and_detail(admin_client, template):
    Template.objects.create(waba_id="999", name="promo", language="en", status="PAUSED", category="MARKETING")
    for query in ("", "?status=APPROVED", "?category__exact=MARKETING", "?waba_id=999", "?q=order"):
        assert admin_client.get(f"/admin/messaging/template/{query}").status_code == 200, query
    approved = admin_client.get("/admin/messaging/template/?status=APPROVED").content.decode()
    assert "order_shipped" in approved and "promo" not in approved
    detail = admin_client.get(f"/admin/messaging/template/{template.pk}/change/").content.decode()
    assert "Hi {{1}}, order {{2}} is on its way." in detail
    assert (
        'action="/admin/messaging/template/sync/"'
        in admin_client.get("/admin/messaging/template/").content.decode()
    )


def test_the_conversation_offers_resend_and_abandon_on_an_in_doubt_message(admin_client, contact):
    doubtful = MessageFactory(contact=contact, direction="outbound", status="in_doubt")
    url = f"/admin/messaging/message/{doubtful.pk}/in-doubt/"
    page = admin_client.get(conversation(contact)).content.decode()
    assert f'action="{url}"' in page and "may or may not have arrived" in page

    response = admin_client.post(url, {"decision": "resend"})
    assert response["Location"].endswith(f"#message-{doubtful.pk}")
    doubtful.refresh_from_db()
    assert doubtful.status == "queued"

    again = admin_client.post(url, {"decision": "abandon"}, follow=True)  # no longer in doubt
    assert "Only a message in doubt" in again.content.decode()
    doubtful.refresh_from_db()
    assert doubtful.status == "queued"
    assert admin_client.post(url, {"decision": "delete"}).status_code == 400
    assert admin_client.put(url).status_code == 405


def test_the_reply_box_says_what_is_missing(admin_client):
    lonely = ContactFactory(last_inbound_at=timezone.now())
    page = admin_client.get(conversation(lonely)).content.decode()
    assert "No sender number yet" in page

    number = PhoneNumberFactory(waba_id="777")
    PhoneNumber.objects.filter(pk=number.pk).update(paused_at=timezone.now(), paused_reason="token expired")
    page = admin_client.get(conversation(lonely)).content.decode()
    assert "Every sender number is paused" in page

    page = admin_client.get(f"{conversation(lonely)}?sender={number.pk}").content.decode()
    assert "This number is paused: token expired" in page
    assert "No approved templates for this number's WABA (777)" in page


def test_the_reply_box_defaults_to_a_sender_that_is_not_paused(admin_client, contact, sender):
    """The send service's default, paused numbers skipped: not the paused number the contact wrote to."""
    other = PhoneNumberFactory(waba_id="888")
    PhoneNumber.objects.filter(pk=sender.pk).update(paused_at=timezone.now(), paused_reason="token expired")
    page = admin_client.get(conversation(contact)).content.decode()
    assert f'<option value="{other.pk}" selected>' in page
    assert f'name="phone_number" value="{other.pk}"' in page

    response = admin_client.post(conversation(contact), {"reply_kind": "text", "body": "Still here"})
    assert response.status_code == 302
    assert Message.objects.get(direction="outbound").phone_number == other


def test_the_reply_box_reads_the_window_from_the_latest_message(admin_client, contact):
    """A stale copy on the contact does not close the window the customer's latest message opened."""
    Contact.objects.filter(pk=contact.pk).update(last_inbound_at=timezone.now() - timedelta(days=3))
    latest = Message.objects.get(contact=contact).timestamp
    page = admin_client.get(conversation(contact)).content.decode()
    assert "The 24-hour window is open until" in page
    assert (latest + timedelta(hours=24)).strftime("%-d %b %Y %H:%M") in page

    Contact.objects.filter(pk=contact.pk).update(last_inbound_at=None)  # a copy never written
    Message.objects.filter(contact=contact).update(timestamp=latest - timedelta(days=2))
    page = admin_client.get(conversation(contact)).content.decode()
    closed = (latest - timedelta(days=1)).strftime("%-d %b %Y %H:%M")
    assert f"The 24-hour window closed {closed} UTC" in page


def test_a_location_template_is_sent_from_the_reply_box(admin_client, contact, sender):
    pickup = Template.objects.create(
        waba_id=sender.waba_id,
        name="pickup",
        language="en",
        status="APPROVED",
        category="UTILITY",
        components=[{"type": "HEADER", "format": "LOCATION"}, {"type": "BODY", "text": "Ready at {{1}}"}],
    )
    page = admin_client.get(conversation(contact)).content.decode()
    assert 'name="param-header-0-LOCATION.latitude"' in page
    response = admin_client.post(
        conversation(contact),
        {
            "reply_kind": "template",
            "template": pickup.pk,
            "phone_number": sender.pk,
            "param-header-0-LOCATION.latitude": "51.5",
            "param-header-0-LOCATION.longitude": "-0.12",
            "param-header-0-LOCATION.name": "Depot",
            "param-header-0-LOCATION.address": "1 Quay St",
            "param-body-0-1": "noon",
        },
    )
    assert response.status_code == 302
    header = Message.objects.get(direction="outbound").payload["template"]["components"][0]
    assert header["parameters"][0]["location"]["latitude"] == 51.5


def test_the_sender_can_be_switched(admin_client, contact, sender, template):
    other = PhoneNumberFactory(waba_id="888")
    page = admin_client.get(conversation(contact)).content.decode()
    assert f'<option value="{sender.pk}" selected>' in page and f'id="template-{template.pk}"' in page

    page = admin_client.get(f"{conversation(contact)}?sender={other.pk}").content.decode()
    assert f'<option value="{other.pk}" selected>' in page and f'id="template-{template.pk}"' not in page
    assert f'name="phone_number" value="{other.pk}"' in page


def test_a_reply_quotes_the_message_it_answers(admin_client, contact, sender):
    inbound = Message.objects.get(contact=contact)
    page = admin_client.get(conversation(contact)).content.decode()
    assert f'href="?reply_to={inbound.wamid}#reply"' in page

    page = admin_client.get(f"{conversation(contact)}?reply_to={inbound.wamid}").content.decode()
    assert f'name="reply_to" value="{inbound.wamid}"' in page and "Replying to: " + inbound.text in page
    form = {"reply_kind": "text", "body": "Yes", "phone_number": sender.pk, "reply_to": inbound.wamid}
    assert admin_client.post(conversation(contact), form).status_code == 302

    sent = Message.objects.get(direction="outbound")
    assert sent.context_wamid == inbound.wamid
    assert sent.payload["context"] == {"message_id": inbound.wamid}


def test_a_reply_cannot_quote_another_conversations_message(admin_client, contact, sender):
    elsewhere = MessageFactory()
    form = {"reply_kind": "text", "body": "Yes", "phone_number": sender.pk, "reply_to": elsewhere.wamid}
    assert admin_client.post(conversation(contact), form).status_code == 302
    assert Message.objects.get(direction="outbound").context_wamid == ""


@pytest.mark.parametrize(
    ("filename", "mime_type", "kind"),
    [("note.pdf", "application/pdf", "document"), ("sticker.webp", "image/webp", "sticker")],
)
def test_a_file_is_sent_as_the_kind_whatsapp_has_for_it(admin_client, contact, filename, mime_type, kind):
    storage_ensure_bucket()
    upload = SimpleUploadedFile(filename, b"RIFF0000WEBPVP8 " + bytes(200), content_type=mime_type)
    response = admin_client.post(conversation(contact), {"reply_kind": "media", "file": upload})
    assert response.status_code == 302, response.content.decode()[-3000:]
    sent = Message.objects.get(direction="outbound")
    assert sent.type == kind
    if kind == "document":
        assert sent.payload["document"]["filename"] == filename


def test_a_template_with_a_url_button_and_named_body_passes_the_send_services_checks(
    admin_client, contact, sender
):
    template = Template.objects.create(
        waba_id=sender.waba_id,
        name="track",
        language="en",
        status="APPROVED",
        components=[
            {"type": "BODY", "text": "Hi {{name}}"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Track", "url": "https://example.com/t/{{1}}"},
                ],
            },
        ],
    )
    form = {"reply_kind": "template", "template": template.pk, "phone_number": sender.pk}
    form |= {"param-body-0-name": "Ann", "param-button-1-1": "A-17"}
    response = admin_client.post(conversation(contact), form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    components = Message.objects.get(direction="outbound").payload["template"]["components"]
    assert components[1] == {
        "type": "button",
        "sub_type": "url",
        "index": "1",
        "parameters": [{"type": "text", "text": "A-17"}],
    }
