import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.utils.html import escape

from core.aws import storage_ensure_bucket
from core.models import AuditLog
from core.storage import file_save, media_storage
from messaging.admin.messages import MessageAdmin
from messaging.inbound.apply import inbound_payload_apply
from messaging.models import InboundEvent, Message, PhoneNumber, WebhookEvent
from tests.factories import (
    ContactFactory,
    InboundEventFactory,
    MessageFactory,
    PhoneNumberFactory,
    UserFactory,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"


def conversation(contact) -> str:
    return f"/admin/messaging/message/conversation/{contact.pk}/"


def action(name: str, objects) -> dict:
    return {"action": name, "_selected_action": [o.pk for o in objects], "index": 0}


def store_media(message: Message, content: bytes, mime_type: str) -> str:
    storage_ensure_bucket()
    key = f"{settings.MEDIA_INCOMING_PREFIX}{message.wamid}"
    file_save(media_storage(), key, content, content_type=mime_type)
    Message.objects.filter(pk=message.pk).update(
        media_key=key, media_state=Message.MediaState.STORED, media_mime_type=mime_type
    )
    return key


# -- changelists -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_changelists_load_with_their_filters(admin_client):
    number = PhoneNumberFactory()
    MessageFactory(phone_number=number, text="hello there")
    MessageFactory(direction="outbound", status="failed", type="image", media_state="unavailable")
    event = InboundEventFactory(state=InboundEvent.State.FAILED, attempts=5, last_error="KeyError: 'id'")
    WebhookEvent.objects.create(
        inbound_event=event, position=0, field="account_update", event="ACCOUNT_VIOLATION", value={"a": 1}
    )

    for url, params in [
        ("/admin/messaging/phonenumber/", {}),
        ("/admin/messaging/phonenumber/", {"q": number.phone_number_id}),
        ("/admin/messaging/message/", {}),
        ("/admin/messaging/message/", {"direction": "outbound", "status": "failed"}),
        ("/admin/messaging/message/", {"type": "image", "media_state": "unavailable"}),
        ("/admin/messaging/message/", {"phone_number__id__exact": number.pk}),
        ("/admin/messaging/inboundevent/", {}),
        ("/admin/messaging/inboundevent/", {"state": "failed", "had_error": "yes"}),
        (
            "/admin/messaging/inboundevent/",
            {"unknown_phone_number__exact": "1", "unknown_fields__exact": "0"},
        ),
        ("/admin/messaging/webhookevent/", {"field": "account_update", "known__exact": "1"}),
        ("/admin/messaging/analyticsevent/", {"kind": "message_received"}),
    ]:
        response = admin_client.get(url, params)
        assert response.status_code == 200, (url, params)


@pytest.mark.django_db
def test_message_changelist_filters_and_searches(admin_client):
    ana = ContactFactory(phone="+447400123456")
    hello = MessageFactory(contact=ana, text="hello there", wamid="wamid.HELLO")
    photo = MessageFactory(type="image", text="", direction="outbound", status="read")

    def shown(**params) -> set[str]:
        response = admin_client.get("/admin/messaging/message/", params)
        assert response.status_code == 200, params
        return {m.wamid for m in response.context["cl"].result_list}

    assert shown() == {hello.wamid, photo.wamid}
    assert shown(direction="outbound") == {photo.wamid}
    assert shown(type="image") == {photo.wamid}
    assert shown(status="read") == {photo.wamid}
    assert shown(q="wamid.HELLO") == {hello.wamid}
    assert shown(q="there") == {hello.wamid}
    assert shown(q="+44 7400 123456") == {hello.wamid}
    response = admin_client.get("/admin/messaging/message/")
    assert f'href="{conversation(ana)}#message-{hello.pk}"' in response.text


@pytest.mark.django_db
def test_inbound_event_changelist_filters_by_kind_and_failure(admin_client):
    messages_event = InboundEventFactory(
        payload={"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}
    )
    account_event = InboundEventFactory(
        payload={
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "account_update"}]}],
        },
        state=InboundEvent.State.FAILED,
        last_error="boom",
    )

    def shown(**params) -> set[int]:
        response = admin_client.get("/admin/messaging/inboundevent/", params)
        assert response.status_code == 200, params
        return {e.pk for e in response.context["cl"].result_list}

    assert shown(field="messages") == {messages_event.pk}
    assert shown(field="account_update") == {account_event.pk}
    assert shown(state="failed") == {account_event.pk}
    assert shown(had_error="no") == {messages_event.pk}
    assert 'href="?field=account_update"' in admin_client.get("/admin/messaging/inboundevent/").text


# -- inbound events: raw JSON and reprocessing --------------------------------------------------


@pytest.mark.django_db
def test_inbound_event_detail_shows_the_raw_json_escaped_and_read_only(admin_client):
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "<script>alert(1)</script>"}]}
    event = InboundEventFactory(payload=payload)

    response = admin_client.get(f"/admin/messaging/inboundevent/{event.pk}/change/")

    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.text
    assert escape('"id": "<script>alert(1)</script>"') in response.text
    assert '"object": "whatsapp_business_account",\n' in response.text.replace("&quot;", '"')
    assert 'name="_save"' not in response.text  # no change of raw events
    assert admin_client.get("/admin/messaging/inboundevent/add/").status_code == 403


@pytest.mark.django_db
def test_a_rejected_body_that_is_not_json_is_shown_as_text(admin_client):
    body = b"<b>not json</b> \xff"
    event = InboundEventFactory(body=body, payload=None, state=InboundEvent.State.REJECTED)

    response = admin_client.get(f"/admin/messaging/inboundevent/{event.pk}/change/")

    assert response.status_code == 200
    assert escape("<b>not json</b> \\xff") in response.text


@pytest.mark.django_db
def test_reprocess_action_sends_failed_events_back_and_audits(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    failed = InboundEventFactory(state=InboundEvent.State.FAILED, attempts=5, last_error="ValueError: x")
    processed = InboundEventFactory(state=InboundEvent.State.PROCESSED, attempts=1)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            "/admin/messaging/inboundevent/", action("reprocess", [failed, processed]), follow=True
        )

    assert response.status_code == 200
    assert "Sent 1 failed event(s) back to processing." in response.text
    failed.refresh_from_db()
    processed.refresh_from_db()
    assert (failed.state, failed.attempts) == ("pending", 0)
    assert processed.state == "processed"
    assert len(callbacks) == 1  # the drain is woken after commit
    log = AuditLog.objects.get()
    assert (log.source, log.actor, log.changes["ids"]) == ("admin", admin_user, [failed.pk])


@pytest.mark.django_db
def test_reprocess_button_on_a_failed_event(admin_client, django_capture_on_commit_callbacks):
    failed = InboundEventFactory(state=InboundEvent.State.FAILED, attempts=5, last_error="ValueError: x")
    url = f"/admin/messaging/inboundevent/{failed.pk}/reprocess/"
    page = admin_client.get(f"/admin/messaging/inboundevent/{failed.pk}/change/")
    assert f'action="{url}"' in page.text
    assert admin_client.get(url).status_code == 405

    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(url)

    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.state == "pending"
    page = admin_client.get(f"/admin/messaging/inboundevent/{failed.pk}/change/")
    assert f'action="{url}"' not in page.text  # pending now: nothing to reprocess


@pytest.mark.django_db
def test_reprocess_needs_the_change_permission(client):
    failed = InboundEventFactory(state=InboundEvent.State.FAILED, attempts=5)
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_inboundevent"]))

    page = client.get(f"/admin/messaging/inboundevent/{failed.pk}/change/")
    assert page.status_code == 200
    assert "/reprocess/" not in page.text
    assert client.post(f"/admin/messaging/inboundevent/{failed.pk}/reprocess/").status_code == 403
    failed.refresh_from_db()
    assert failed.state == "failed"


# -- sender numbers ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_phone_number_add_and_change_go_through_the_services(admin_client):
    response = admin_client.post(
        "/admin/messaging/phonenumber/add/",
        {
            "phone_number_id": " 106540352242922 ",
            "display_phone_number": "15550783881",
            "verified_name": "Wharf",
            "waba_id": "102290129340398",
            "rate_limit_per_s": "80",
            "quality_rating": "GREEN",
            "messaging_limit": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    number = PhoneNumber.objects.get()
    assert number.phone_number_id == "106540352242922"

    response = admin_client.post(
        f"/admin/messaging/phonenumber/{number.pk}/change/",
        {
            "phone_number_id": "106540352242922",
            "display_phone_number": "15550783881",
            "verified_name": "Wharf",
            "waba_id": "102290129340398",
            "rate_limit_per_s": "5000",
            "quality_rating": "GREEN",
            "messaging_limit": "",
        },
    )
    assert response.status_code == 200  # refused: above Meta's highest tier
    assert "1000" in response.text

    response = admin_client.post(
        f"/admin/messaging/phonenumber/{number.pk}/change/",
        {
            "phone_number_id": "106540352242922",
            "display_phone_number": "15550783881",
            "verified_name": "Wharf",
            "waba_id": "102290129340398",
            "rate_limit_per_s": "250",
            "quality_rating": "YELLOW",  # Meta's, not the operator's: ignored
            "messaging_limit": "TIER_UNLIMITED",
        },
    )
    assert response.status_code == 302
    number.refresh_from_db()
    assert (number.rate_limit_per_s, number.quality_rating, number.messaging_limit) == (250, "", "")
    assert [log.action for log in AuditLog.objects.order_by("id")] == [
        "phone_number.create",
        "phone_number.update",
    ]
    assert AuditLog.objects.order_by("id").last().changes == {"rate_limit_per_s": [80, 250]}


# -- messages ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_message_detail_is_read_only_with_a_presigned_media_link(admin_client):
    message = MessageFactory(type="image", payload={"image": {"caption": "<i>cat</i>"}})
    store_media(message, b"image bytes", "image/png")

    response = admin_client.get(f"/admin/messaging/message/{message.pk}/change/")

    assert response.status_code == 200
    assert 'name="_save"' not in response.text
    assert escape('"caption": "<i>cat</i>"') in response.text
    (url,) = re.findall(r'<a href="([^"]+)" target="_blank" rel="noopener">open', response.text)
    assert httpx.get(url.replace("&amp;", "&")).content == b"image bytes"


@pytest.mark.django_db
def test_without_contacts_view_the_message_admin_shows_no_phone_payload_or_media(client):
    contact = ContactFactory(phone="+447700900777", name="Ana Secret")
    message = MessageFactory(
        contact=contact, type="image", text="see attached", payload={"from": "447700900777"}
    )
    store_media(message, b"image bytes", "image/png")
    operator = UserFactory(is_staff=True, permissions=["messaging.view_message"])
    client.force_login(operator)

    listed = client.get("/admin/messaging/message/").text
    searched = client.get("/admin/messaging/message/", {"q": "+447700900777"}).text
    shown = client.get(f"/admin/messaging/message/{message.pk}/change/").text
    page = client.get(conversation(contact)).text

    for html in (listed, shown):
        assert f"contact {contact.pk}" in html
        assert "+447700900777" not in html and "Ana Secret" not in html
    assert "see attached" in listed
    assert "see attached" not in searched  # a phone number is not searched for them
    assert "447700900777" not in shown  # the payload is not shown
    assert "hidden: contact data needs the contacts.view_contact permission" in shown
    assert "<img src=" not in bubble(page, message) and "X-Amz-Signature" not in page
    assert "hidden: contact data needs the contacts.view_contact permission" in bubble(page, message)


@pytest.mark.django_db
def test_with_contacts_view_the_message_admin_shows_the_phone_and_searches_by_it(client):
    contact = ContactFactory(phone="+447700900777")
    MessageFactory(contact=contact, text="see attached")
    client.force_login(
        UserFactory(is_staff=True, permissions=["messaging.view_message", "contacts.view_contact"])
    )

    searched = client.get("/admin/messaging/message/", {"q": "+44 7700 900777"}).text

    assert "+447700900777" in searched and "see attached" in searched


@pytest.mark.django_db
def test_deleting_a_message_in_the_admin_removes_its_media(admin_client, django_capture_on_commit_callbacks):
    message = MessageFactory(type="image")
    key = store_media(message, b"bytes", "image/png")

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/messaging/message/{message.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Message.objects.exists()
    assert not media_storage().exists(key)
    assert AuditLog.objects.get().action == "message.delete"


# -- the conversation page ---------------------------------------------------------------------


@pytest.fixture
def chat(db):
    """A conversation with a bit of everything, in the order Meta would have sent it."""
    contact = ContactFactory(name="Ana Silva")
    at = iter(T0 + timedelta(minutes=i) for i in range(100))
    m = {}
    m["hello"] = MessageFactory(contact=contact, timestamp=next(at), text="Hello, is this the bakery?")
    m["photo"] = MessageFactory(contact=contact, timestamp=next(at), type="image", text="our cake")
    m["voice"] = MessageFactory(
        contact=contact,
        timestamp=next(at),
        type="audio",
        text="",
        media_state="unavailable",
        media_error="Graph API answered 404: media id expired",
    )
    m["doc"] = MessageFactory(
        contact=contact, timestamp=next(at), type="document", text="", media_state="pending"
    )
    m["answer"] = MessageFactory(
        contact=contact,
        timestamp=next(at),
        direction="outbound",
        status="read",
        text="Yes! <b>Open</b> until 6",
        context_wamid=m["hello"].wamid,
        reaction="❤️",
    )
    m["heart"] = MessageFactory(
        contact=contact, timestamp=next(at), type="reaction", text="❤️", target_wamid=m["answer"].wamid
    )
    m["sent"] = MessageFactory(contact=contact, timestamp=next(at), direction="outbound", status="sent")
    m["delivered"] = MessageFactory(
        contact=contact, timestamp=next(at), direction="outbound", status="delivered"
    )
    m["failed"] = MessageFactory(
        contact=contact,
        timestamp=next(at),
        direction="outbound",
        status="failed",
        text="Our offer",
        error_code=131047,
        error_title="Re-engagement message",
        error_details="More than 24 hours have passed since the recipient last replied.",
    )
    m["edited"] = MessageFactory(
        contact=contact, timestamp=next(at), text="See you at 5", edited_at=next(at), revoked_at=None
    )
    m["gone"] = MessageFactory(contact=contact, timestamp=next(at), text="oops", revoked_at=next(at))
    MessageFactory(text="someone else's message")
    store_media(m["photo"], b"cake picture", "image/jpeg")
    return contact, m


def bubble(html: str, message: Message) -> str:
    """The HTML of one message on the conversation page."""
    start = html.index(f'id="message-{message.pk}"')
    end = html.find('id="message-', start + 1)
    return html[start : end if end != -1 else len(html)]


@pytest.mark.django_db
def test_conversation_shows_messages_in_order(admin_client, chat):
    contact, m = chat

    response = admin_client.get(conversation(contact))

    assert response.status_code == 200
    html = response.text
    order = ["hello", "photo", "voice", "doc", "answer", "sent", "delivered", "failed", "edited", "gone"]
    positions = [html.index(f'id="message-{m[name].pk}"') for name in order]
    assert positions == sorted(positions)
    assert f'id="message-{m["heart"].pk}"' not in html  # shown on the message it reacts to
    assert "someone else" not in html
    assert 'class="wharf-msg wharf-inbound' in bubble(html, m["hello"])
    assert 'class="wharf-msg wharf-outbound' in bubble(html, m["answer"])


@pytest.mark.django_db
def test_conversation_shows_media_replies_reactions_marks_and_ticks(admin_client, chat):
    contact, m = chat

    html = admin_client.get(conversation(contact)).text

    (src,) = re.findall(r'<img src="([^"]+)"', bubble(html, m["photo"]))
    assert httpx.get(src.replace("&amp;", "&")).content == b"cake picture"
    assert "media unavailable: Graph API answered 404: media id expired" in bubble(html, m["voice"])
    assert "media pending" in bubble(html, m["doc"])

    answer = bubble(html, m["answer"])
    assert "Hello, is this the bakery?" in answer.split("</blockquote>")[0]  # the quoted message
    assert escape("Yes! <b>Open</b> until 6") in answer
    assert '<span class="wharf-reaction"' in answer and "❤️" in answer
    assert 'class="wharf-ticks wharf-read" title="read">✓✓</span>' in answer
    assert 'class="wharf-ticks wharf-sent" title="sent">✓</span>' in bubble(html, m["sent"])
    assert 'class="wharf-ticks wharf-delivered" title="delivered">✓✓</span>' in bubble(html, m["delivered"])
    failed = bubble(html, m["failed"])
    assert 'class="wharf-ticks wharf-failed" title="failed">✗</span>' in failed
    assert "131047: Re-engagement message" in failed
    assert "More than 24 hours have passed since the recipient last replied." in failed
    assert ">edited<" in bubble(html, m["edited"])
    assert "deleted by the sender" in bubble(html, m["gone"])
    assert "wharf-ticks" not in bubble(html, m["hello"])  # inbound messages have no ticks


@pytest.mark.django_db
def test_conversation_pages_back_to_earlier_messages(admin_client, monkeypatch):
    contact = ContactFactory()
    messages = [
        MessageFactory(contact=contact, timestamp=T0 + timedelta(minutes=i), text=f"number {i:02d}")
        for i in range(5)
    ]
    monkeypatch.setattr(MessageAdmin, "conversation_page_size", 3)

    latest = admin_client.get(conversation(contact)).text
    assert [f"number {i:02d}" in latest for i in range(5)] == [False, False, True, True, True]
    assert f'href="?before={messages[2].pk}"' in latest

    earlier = admin_client.get(conversation(contact), {"before": messages[2].pk}).text
    assert [f"number {i:02d}" in earlier for i in range(5)] == [True, True, False, False, False]
    assert "?before=" not in earlier


@pytest.mark.django_db
def test_conversation_needs_the_view_message_permission(client):
    contact = ContactFactory()
    client.force_login(UserFactory(is_staff=True, permissions=["contacts.view_contact"]))

    assert client.get(conversation(contact)).status_code == 403
    assert client.get("/admin/messaging/message/conversation/999999/").status_code in (403, 404)


@pytest.mark.django_db
def test_conversation_of_an_unknown_contact_is_404(admin_client):
    assert admin_client.get("/admin/messaging/message/conversation/999999/").status_code == 404


@pytest.mark.django_db
def test_the_contact_admin_links_to_the_conversation(admin_client):
    contact = ContactFactory()

    assert (
        f'href="{conversation(contact)}"'
        in admin_client.get(f"/admin/contacts/contact/{contact.pk}/change/").text
    )
    assert f'href="{conversation(contact)}"' in admin_client.get("/admin/contacts/contact/").text


@pytest.mark.django_db
def test_conversation_queries_do_not_grow_with_replies_and_reactions(
    admin_client, django_assert_max_num_queries
):
    contact = ContactFactory()
    outside = MessageFactory(text="quoted from an earlier page")

    def add(count: int) -> None:
        for _ in range(count):
            question = MessageFactory(contact=contact)
            MessageFactory(contact=contact, direction="outbound", context_wamid=question.wamid)
            MessageFactory(contact=contact, type="reaction", text="👍", target_wamid=question.wamid)
            MessageFactory(contact=contact, context_wamid=outside.wamid)

    add(1)
    admin_client.get(conversation(contact))  # sessions, permissions and the like, once
    with django_assert_max_num_queries(30) as few:  # header, panel, reply box, notes: a fixed cost
        admin_client.get(conversation(contact))
    add(20)

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(conversation(contact))

    assert response.text.count("quoted from an earlier page") == 21


@pytest.mark.django_db
def test_the_contact_admin_has_no_conversation_link_for_those_who_cannot_read_messages(client):
    contact = ContactFactory()
    client.force_login(UserFactory(is_staff=True, permissions=["contacts.view_contact"]))

    assert "/conversation/" not in client.get(f"/admin/contacts/contact/{contact.pk}/change/").text
    assert "/conversation/" not in client.get("/admin/contacts/contact/").text


@pytest.mark.django_db
def test_conversation_of_a_contact_without_a_phone(admin_client):
    contact = ContactFactory(phone=None, user_id="US.13491208655302741918")
    MessageFactory(contact=contact, text="hi from a username")

    response = admin_client.get(conversation(contact))

    assert response.status_code == 200
    assert "hi from a username" in response.text
    assert "None" not in response.text


@pytest.mark.django_db
def test_conversation_of_webhooks_as_the_parser_stores_them(admin_client):
    """The fixtures' webhooks, parsed: reactions and edits land on their message, replies quote."""
    PhoneNumberFactory(phone_number_id="109876543210987")
    outbound_wamid = "wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggOUTBOUND1"
    for name in ["text", "reaction", "edit", "image", "status_read", "text_reply"]:
        payload = json.loads((FIXTURES / f"{name}.json").read_text())
        if name == "status_read":
            contact = Message.objects.get(wamid="wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggTEXT").contact
            MessageFactory(
                contact=contact,
                wamid=outbound_wamid,
                direction="outbound",
                status="sent",
                text="Thursday?",
                timestamp=T0,
            )
        inbound_payload_apply(event=InboundEventFactory(payload=payload))
    text = Message.objects.get(wamid="wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggTEXT")

    html = admin_client.get(conversation(text.contact)).text

    assert re.findall(r'data-wamid="([^"]+)"', html) == [
        outbound_wamid,
        text.wamid,
        "wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggIMAGE",
        "wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggREPLY",
    ]
    text_bubble = bubble(html, text)
    assert '<span class="wharf-reaction"' in text_bubble and "👍" in text_bubble
    assert ">edited<" in text_bubble
    assert "media pending" in bubble(
        html, Message.objects.get(wamid="wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggIMAGE")
    )
    outbound = Message.objects.get(wamid=outbound_wamid)
    assert 'title="read">✓✓</span>' in bubble(html, outbound)
    reply = bubble(html, Message.objects.get(wamid="wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggREPLY"))
    assert "Thursday?" in reply.split("</blockquote>")[0]


@pytest.mark.django_db
def test_deleting_selected_messages_removes_their_media_with_one_audit_row(
    admin_client, django_capture_on_commit_callbacks
):
    first, second, kept = MessageFactory(type="image"), MessageFactory(type="image"), MessageFactory()
    keys = [store_media(first, b"1", "image/png"), store_media(second, b"2", "image/png")]

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/messaging/message/", {**action("delete_selected", [first, second]), "post": "yes"}
        )

    assert response.status_code == 302
    assert list(Message.objects.all()) == [kept]
    for key in keys:
        assert not media_storage().exists(key)
    log = AuditLog.objects.get()
    assert (log.action, log.changes["ids"]) == ("messages.delete", sorted([first.pk, second.pk]))
