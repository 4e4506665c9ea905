"""The send service and its API: Meta's rules checked before queueing, the 24-hour window, paused
senders, idempotency keys, and the in-doubt actions."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from contacts.models import Contact
from core.aws import storage_ensure_bucket
from core.models import AuditLog
from core.storage import file_save, media_storage
from messaging.models import Message, Template, WakeUp
from messaging.outbound import drain as outbound_drain
from messaging.outbound.send import WINDOW_CLOSED, message_abandon, message_resend, message_send
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory

LIST = "/api/v1/messages/"
ADD = "messaging.add_message"


@pytest.fixture
def sender(db):
    return PhoneNumberFactory(phone_number_id="106540352242922", waba_id="102290129340398")


@pytest.fixture
def contact(db):
    return ContactFactory(phone="+447700900123", wa_id="447700900123", last_inbound_at=timezone.now())


@pytest.fixture
def template(db, sender):
    return Template.objects.create(
        waba_id=sender.waba_id,
        name="order_update",
        language="en_US",
        status="APPROVED",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hello {{1}}, your order {{2}} ships {{3}}."},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x.test/o/{{1}}"}]},
        ],
    )


def send(sender, contact, kind, content, **kwargs):
    return message_send(
        phone_number=sender, contact=contact, kind=kind, content=content, actor=None, source="api", **kwargs
    )


def error_of(call) -> dict:
    with pytest.raises(ValidationError) as caught:
        call()
    return caught.value.message_dict


# -- the service --------------------------------------------------------------------------------


def test_a_text_is_queued_with_meta_s_body_a_placeholder_wamid_an_audit_and_a_wake(
    sender, contact, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        message = send(sender, contact, "text", {"body": "Hi", "preview_url": True}, reply_to_wamid="wamid.Q")

    assert message.status == Message.Status.QUEUED
    assert message.direction == Message.Direction.OUTBOUND
    assert message.wamid.startswith("wharf-")
    assert message.payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "447700900123",
        "context": {"message_id": "wamid.Q"},
        "type": "text",
        "text": {"body": "Hi", "preview_url": True},
        "biz_opaque_callback_data": str(message.pk),
    }
    assert (message.text, message.context_wamid, message.phone_number) == ("Hi", "wamid.Q", sender)
    assert AuditLog.objects.filter(action="message.send", target_id=str(message.pk)).exists()
    assert WakeUp.objects.get(name="outgoing").pending
    assert broker.published("outgoing") == [("messaging.outbound_send", [], {}, None)]  # a drain, now


@pytest.mark.parametrize(
    ("kind", "content", "field"),
    [
        ("text", {"body": ""}, "text.body"),
        ("text", {"body": "x" * 4097}, "text.body"),
        ("text", {"body": "x", "preview_url": "yes"}, "text.preview_url"),
        ("image", {"caption": "no media"}, "image.s3_key"),
        ("image", {"link": "ftp://x.test/a.jpg"}, "image.link"),
        ("image", {"s3_key": "elsewhere/a.jpg"}, "image.s3_key"),
        (
            "interactive",
            {
                "type": "button",
                "body": {"text": "Pick"},
                "action": {"buttons": [{"reply": {"id": str(i), "title": f"B{i}"}} for i in range(4)]},
            },
            "interactive.action.buttons",
        ),
        (
            "interactive",
            {
                "type": "button",
                "body": {"text": "Pick"},
                "action": {"buttons": [{"reply": {"id": "1", "title": "x" * 21}}]},
            },
            "interactive.action.buttons[0].reply.title",
        ),
        (
            "interactive",
            {
                "type": "list",
                "body": {"text": "Pick"},
                "action": {
                    "button": "Menu",
                    "sections": [
                        {"title": f"S{s}", "rows": [{"id": f"{s}{r}", "title": "row"} for r in range(4)]}
                        for s in range(3)
                    ],
                },
            },
            "interactive.action.sections",
        ),
        ("interactive", {"type": "button", "action": {}}, "interactive.body"),
        ("reaction", {"emoji": "👍"}, "reaction.message_id"),
        ("location", {"latitude": 91, "longitude": 0}, "location.latitude"),
        ("contacts", [], "contacts"),
        ("contacts", [{"name": {}}], "contacts[0].name.formatted_name"),
        ("template", {"name": "nope", "language": "en_US"}, "template.name"),
        ("carousel", {}, "type"),
    ],
)
def test_meta_s_rules_are_checked_before_queueing_naming_the_field(sender, contact, kind, content, field):
    storage_ensure_bucket()
    errors = error_of(lambda: send(sender, contact, kind, content))
    assert field in errors, errors
    assert not Message.objects.exists()


def test_other_kinds_pass_and_keep_meta_s_shapes(sender, contact):
    reaction = send(sender, contact, "reaction", {"message_id": "wamid.IN", "emoji": "👍"})
    assert reaction.payload["reaction"] == {"message_id": "wamid.IN", "emoji": "👍"}
    assert reaction.target_wamid == "wamid.IN"
    location = send(sender, contact, "location", {"latitude": 51.5, "longitude": -0.12, "name": "Wharf"})
    assert location.payload["location"] == {"latitude": 51.5, "longitude": -0.12, "name": "Wharf"}
    cards = [{"name": {"formatted_name": "Ada"}, "phones": [{"phone": "+447700900999"}]}]
    assert send(sender, contact, "contacts", cards).payload["contacts"] == cards
    buttons = {
        "type": "button",
        "body": {"text": "Pick"},
        "action": {
            "buttons": [{"type": "reply", "reply": {"id": str(i), "title": f"B{i}"}} for i in range(3)]
        },
    }
    assert send(sender, contact, "interactive", buttons).text == "Pick"
    linked = send(sender, contact, "document", {"link": "https://x.test/a.pdf", "caption": "Invoice"})
    assert linked.payload["document"] == {"caption": "Invoice", "link": "https://x.test/a.pdf"}


def test_media_from_s3_is_checked_for_type_and_size_and_linked_fresh_at_each_attempt(sender, contact):
    storage_ensure_bucket()
    prefix = settings.MEDIA_OUTGOING_PREFIX
    file_save(media_storage(), f"{prefix}a.gif", b"GIF89a", content_type="image/gif")
    file_save(media_storage(), f"{prefix}big.webp", b"x" * 600_000, content_type="image/webp")
    file_save(media_storage(), f"{prefix}a.jpg", b"\xff\xd8jpeg", content_type="image/jpeg")

    assert (
        "image/gif"
        in error_of(lambda: send(sender, contact, "image", {"s3_key": f"{prefix}a.gif"}))["image.s3_key"][0]
    )
    assert "512,000" in str(
        error_of(lambda: send(sender, contact, "sticker", {"s3_key": f"{prefix}big.webp"}))
    )
    assert "No object" in str(
        error_of(lambda: send(sender, contact, "image", {"s3_key": f"{prefix}none.jpg"}))
    )

    message = send(sender, contact, "image", {"s3_key": f"{prefix}a.jpg", "caption": "Look"})
    assert message.payload["image"] == {"caption": "Look"}
    assert (message.media_key, message.media_mime_type, message.media_size) == (
        f"{prefix}a.jpg",
        "image/jpeg",
        6,
    )
    body = outbound_drain._request_body(Message.objects.get(pk=message.pk))
    assert body["image"]["caption"] == "Look"
    assert body["image"]["link"].startswith(settings.AWS_ENDPOINT_URL)
    assert "X-Amz-Signature" in body["image"]["link"]


def test_templates_must_exist_be_approved_and_get_their_parameters(sender, contact, template):
    def components(header=1, body=3, button=1):
        text = [{"type": "text", "text": "x"}]
        return [
            {"type": "header", "parameters": text * header},
            {"type": "body", "parameters": text * body},
            {"type": "button", "sub_type": "url", "index": 0, "parameters": text * button},
        ]

    content = {"name": "order_update", "language": {"code": "en_US"}}
    errors = error_of(
        lambda: send(sender, contact, "template", {**content, "components": components(body=2)})
    )
    assert "wants 3 parameters in its body, got 2" in errors["template.components"][0]
    errors = error_of(
        lambda: send(sender, contact, "template", {**content, "components": components(button=0)})
    )
    assert "button.0" in errors["template.components"][0]
    assert "template.language" in error_of(
        lambda: send(sender, contact, "template", {"name": "order_update"})
    )

    message = send(sender, contact, "template", {**content, "components": components()})
    assert message.payload["template"] == {**content, "components": components()}
    assert message.text == "Hello {{1}}, your order {{2}} ships {{3}}."

    Template.objects.filter(pk=template.pk).update(status="PAUSED")
    errors = error_of(lambda: send(sender, contact, "template", {**content, "components": components()}))
    assert "PAUSED" in errors["template.name"][0] or "order_update" in errors["template.name"][0]


def test_the_24_hour_window_refuses_free_form_but_not_templates(sender, contact, template):
    contact.last_inbound_at = timezone.now() - timedelta(hours=24, minutes=1)
    contact.save()
    assert error_of(lambda: send(sender, contact, "text", {"body": "Hi"})) == {"type": [WINDOW_CLOSED]}
    contact.last_inbound_at = None
    contact.save()
    assert error_of(lambda: send(sender, contact, "text", {"body": "Hi"})) == {"type": [WINDOW_CLOSED]}
    parameters = [{"type": "text", "text": "x"}]
    message = send(
        sender,
        contact,
        "template",
        {
            "name": "order_update",
            "language": "en_US",
            "components": [
                {"type": "header", "parameters": parameters},
                {"type": "body", "parameters": parameters * 3},
                {"type": "button", "index": 0, "parameters": parameters},
            ],
        },
    )
    assert message.status == Message.Status.QUEUED


def test_opted_out_contacts_and_paused_senders_are_refused(sender, contact):
    sender.paused_at, sender.paused_reason = timezone.now(), "token expired"
    sender.save()
    errors = error_of(lambda: send(sender, contact, "text", {"body": "Hi"}))
    assert "token expired" in errors["phone_number_id"][0]
    assert str(sender) in errors["phone_number_id"][0]
    contact.opted_out_at = timezone.now()
    contact.save()
    assert "opted out" in error_of(lambda: send(sender, contact, "text", {"body": "Hi"}))["contact"][0]


def test_the_default_sender_is_the_number_the_contact_wrote_to(sender, contact):
    PhoneNumberFactory()  # first by id is `sender`; the contact wrote to another one
    other = PhoneNumberFactory()
    MessageFactory(contact=contact, phone_number=other)
    assert send(None, contact, "text", {"body": "Hi"}).phone_number == other


def test_the_same_idempotency_key_from_the_same_user_returns_the_same_message(sender, contact):
    user, other = UserFactory(), UserFactory()

    def keyed(actor, key="k-1", body="Hi"):
        return message_send(
            phone_number=sender,
            contact=contact,
            kind="text",
            content={"body": body},
            actor=actor,
            source="api",
            idempotency_key=key,
        )

    first = keyed(user)
    assert keyed(user, body="changed") == first
    assert keyed(other) != first
    assert keyed(user, key="k-2") != first
    assert Message.objects.count() == 3


def test_resend_and_abandon_only_move_messages_in_doubt(sender, contact):
    doubtful = send(sender, contact, "text", {"body": "Hi"})
    with pytest.raises(ValidationError):
        message_resend(message=doubtful, actor=None)  # queued, not in doubt
    Message.objects.filter(pk=doubtful.pk).update(status=Message.Status.IN_DOUBT, claimed_by="w")
    assert message_resend(message=doubtful, actor=None).status == Message.Status.QUEUED
    Message.objects.filter(pk=doubtful.pk).update(status=Message.Status.IN_DOUBT)
    assert message_abandon(message=doubtful, actor=None).status == Message.Status.ABANDONED
    actions = set(AuditLog.objects.filter(target_id=str(doubtful.pk)).values_list("action", flat=True))
    assert {"message.resend", "message.abandon"} <= actions


# -- the API ------------------------------------------------------------------------------------


def test_the_api_sends_once_per_idempotency_key(api_client, sender, contact):
    client = api_client(ADD)
    body = {"contact": contact.pk, "type": "text", "text": {"body": "Hello"}}
    first = client.post(LIST, body, format="json", headers={"Idempotency-Key": "abc"})
    again = client.post(LIST, body, format="json", headers={"Idempotency-Key": "abc"})
    assert (first.status_code, again.status_code) == (201, 200), first.json()
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["status"] == "queued"
    assert first.json()["phone_number_id"] == sender.phone_number_id
    assert Message.objects.get().created_by == client.user


def test_the_api_answers_400_naming_the_field(api_client, sender, contact):
    client = api_client(ADD, "contacts.add_contact")
    cases = [
        ({"contact": contact.pk, "type": "text", "text": {"body": "x" * 4097}}, "text.body"),
        ({"contact": contact.pk, "type": "text"}, "text"),
        ({"type": "text", "text": {"body": "x"}}, "contact"),
        ({"to": "not a number", "type": "text", "text": {"body": "x"}}, "to"),
        (
            {"contact": contact.pk, "phone_number_id": "999", "type": "text", "text": {"body": "x"}},
            "phone_number_id",
        ),
    ]
    for body, field in cases:
        answer = client.post(LIST, body, format="json")
        assert answer.status_code == 400, (body, answer.json())
        assert field in answer.json(), (body, answer.json())
    answer = client.post(LIST, {"to": "+447400999999", "type": "text", "text": {"body": "x"}}, format="json")
    assert answer.status_code == 400
    assert answer.json() == {"type": [WINDOW_CLOSED]}  # a number Wharf did not know: no window yet
    assert not Message.objects.exists()
    assert not Contact.objects.filter(phone="+447400999999").exists()


def test_sending_to_a_number_wharf_does_not_know_needs_the_add_contact_permission(
    api_client, sender, template
):
    known_contact = ContactFactory(phone="+447400123456")
    text = [{"type": "text", "text": "x"}]
    body = {
        "to": "+447400999999",
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": text},
                {"type": "body", "parameters": text * 3},
                {"type": "button", "sub_type": "url", "index": 0, "parameters": text},
            ],
        },
    }
    sender_only, maker = api_client(ADD), api_client(ADD, "contacts.add_contact")

    refused = sender_only.post(LIST, body, format="json")
    known = sender_only.post(LIST, {**body, "to": known_contact.phone}, format="json")
    assert (refused.status_code, list(refused.json())) == (403, ["to"])
    assert "contacts.add_contact" in refused.json()["to"]
    assert not Contact.objects.filter(phone="+447400999999").exists()
    assert known.status_code == 201, known.json()  # a known number makes nothing

    made = maker.post(LIST, body, format="json")
    assert made.status_code == 201, made.json()
    created = Contact.objects.get(phone="+447400999999")
    assert made.json()["contact"] == created.pk
    assert AuditLog.objects.get(action="contact.create", target_id=str(created.pk)).actor == maker.user


def test_the_api_needs_the_add_permission(api_client, contact):
    answer = api_client("messaging.view_message").post(
        LIST, {"contact": contact.pk, "type": "text", "text": {"body": "x"}}, format="json"
    )
    assert answer.status_code == 403


def test_api_clients_upload_a_file_then_send_it_by_its_key(api_client, sender, contact):
    storage_ensure_bucket()
    client = api_client(ADD, "messaging.view_message")
    picture = SimpleUploadedFile("shop front.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64, content_type="image/png")

    uploaded = client.post("/api/v1/media/", {"file": picture}, format="multipart")
    sent = client.post(
        "/api/v1/messages/",
        {"contact": contact.pk, "type": "image", "image": {"s3_key": uploaded.json()["s3_key"]}},
        format="json",
    )

    assert uploaded.status_code == 201, uploaded.json()
    key = uploaded.json()["s3_key"]
    assert key.startswith(settings.MEDIA_OUTGOING_PREFIX) and key.endswith("/shop_front.png")
    assert uploaded.json()["mime_type"] == "image/png" and uploaded.json()["size"] == 72
    with media_storage().open(key) as stored:
        assert stored.obj.content_type == "image/png" and stored.read().startswith(b"\x89PNG")
    assert sent.status_code == 201, sent.json()
    assert Message.objects.get(pk=sent.json()["id"]).payload["type"] == "image"


def test_an_upload_needs_a_file_a_token_and_the_send_permission(api_client, client):
    assert client.post("/api/v1/media/", {}).status_code == 401
    assert api_client("messaging.view_message").post("/api/v1/media/", {}).status_code == 403
    answer = api_client(ADD).post("/api/v1/media/", {}, format="multipart")
    assert answer.status_code == 400 and "file" in answer.json()


def test_a_location_header_takes_a_location_not_a_medium(sender, contact):
    Template.objects.create(
        waba_id=sender.waba_id,
        name="pickup",
        language="en",
        status="APPROVED",
        components=[{"type": "HEADER", "format": "LOCATION"}, {"type": "BODY", "text": "Pick up at {{1}}"}],
    )

    def content(header):
        body = {"type": "body", "parameters": [{"type": "text", "text": "noon"}]}
        return {
            "name": "pickup",
            "language": "en",
            "components": [{"type": "header", "parameters": [header]}, body],
        }

    image = {"type": "image", "image": {"link": "https://example.com/map.png"}}
    errors = error_of(lambda: send(sender, contact, "template", content(image)))
    assert "wants a location parameter, got image" in errors["template.components[0].parameters[0]"][0]
    nowhere = {"type": "location", "location": {"latitude": 120, "longitude": 0}}
    errors = error_of(lambda: send(sender, contact, "template", content(nowhere)))
    assert list(errors) == ["template.components[0].parameters[0].location.latitude"]

    location = {"type": "location", "location": {"latitude": 51.5, "longitude": -0.12, "name": "Depot"}}
    message = send(sender, contact, "template", content(location))
    assert message.payload["template"]["components"][0] == {"type": "header", "parameters": [location]}


def test_a_media_header_takes_its_own_medium(sender, contact):
    Template.objects.create(
        waba_id=sender.waba_id,
        name="receipt",
        language="en",
        status="APPROVED",
        components=[{"type": "HEADER", "format": "DOCUMENT"}, {"type": "BODY", "text": "Thanks"}],
    )

    def content(header):
        return {
            "name": "receipt",
            "language": "en",
            "components": [{"type": "header", "parameters": [header]}],
        }

    errors = error_of(lambda: send(sender, contact, "template", content({"type": "text", "text": "x"})))
    assert "wants a document parameter, got text" in errors["template.components[0].parameters[0]"][0]
    errors = error_of(
        lambda: send(sender, contact, "template", content({"type": "document", "document": {}}))
    )
    assert errors == {"template.components[0].parameters[0].document": ["Give the medium's link or id."]}
    document = {"type": "document", "document": {"link": "https://example.com/r.pdf", "filename": "r.pdf"}}
    assert send(sender, contact, "template", content(document)).status == "queued"


def test_the_default_sender_skips_paused_numbers(sender, contact):
    wrote_to = PhoneNumberFactory(phone_number_id="2001", waba_id=sender.waba_id)
    MessageFactory(contact=contact, phone_number=wrote_to)
    assert send(None, contact, "text", {"body": "Hi"}).phone_number == wrote_to

    wrote_to.paused_at = timezone.now()
    wrote_to.save()
    assert send(None, contact, "text", {"body": "Again"}).phone_number == sender  # the first not paused
    used = PhoneNumberFactory(phone_number_id="2002", waba_id=sender.waba_id)
    MessageFactory(contact=contact, phone_number=used, direction="outbound")
    assert send(None, contact, "text", {"body": "Later"}).phone_number == used  # the conversation's

    for number in (sender, used):
        number.paused_at = timezone.now()
        number.save()
    assert error_of(lambda: send(None, contact, "text", {"body": "Hi"})) == {
        "phone_number_id": ["No sender number that is not paused."]
    }
