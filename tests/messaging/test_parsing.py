import hashlib
import io
import itertools
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from contacts.models import Contact
from core.models import AuditLog
from messaging.inbound.apply import ApplyResult, inbound_payload_apply
from messaging.models import AnalyticsEvent, InboundEvent, Message, PendingStatus, PhoneNumber, WebhookEvent
from messaging.statuses import message_pending_statuses_apply
from tests.factories import ContactFactory
from tests.waiting import lock_waiter

FIXTURES = Path(__file__).parent / "fixtures"
PHONE_NUMBER_ID = "109876543210987"
CUSTOMER = "447400123456"
OUTBOUND = "wamid.HBgMNDQ3NDAwMTIzNDU2FQIAEhggOUTBOUND1"
_bodies = itertools.count()


def body(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def event_for(payload) -> InboundEvent:
    """A stored event as the webhook view leaves it; each call is a delivery of its own."""
    raw = json.dumps(payload).encode()
    digest = hashlib.sha256(raw + str(next(_bodies)).encode()).hexdigest()
    return InboundEvent.objects.create(body=raw, body_sha256=digest, payload=payload)


def apply(payload) -> ApplyResult:
    return inbound_payload_apply(event=event_for(payload))


def message_of(payload: dict) -> dict:
    return payload["entry"][0]["changes"][0]["value"]["messages"][0]


def status_body(name: str, *, timestamp: str | None = None, wamid: str = OUTBOUND) -> dict:
    payload = body(f"status_{name}")
    status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["id"] = wamid
    if timestamp is not None:
        status["timestamp"] = timestamp
    return payload


def text_body(text: str, *, wamid: str, timestamp: str = "1750000000") -> dict:
    payload = body("text")
    message = message_of(payload)
    message.update(id=wamid, timestamp=timestamp, text={"body": text})
    return payload


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.fixture
def phone_number(db) -> PhoneNumber:
    return PhoneNumber.objects.create(
        phone_number_id=PHONE_NUMBER_ID, display_phone_number="+1 555-000-1111", waba_id="102938475610293"
    )


@pytest.fixture
def outbound(phone_number) -> Message:
    contact = ContactFactory(phone="+" + CUSTOMER, wa_id=CUSTOMER)
    return Message.objects.create(
        wamid=OUTBOUND,
        direction=Message.Direction.OUTBOUND,
        type="template",
        status=Message.Status.SENT,
        contact=contact,
        phone_number=phone_number,
        text="Your order has shipped",
        timestamp=at(1749999990),
    )


# -- messages of every kind -----------------------------------------------------------------------

KINDS = [
    ("text", "text", "Hello, is my order on its way?"),
    ("text_reply", "text", "Yes, Thursday works"),
    ("text_forwarded", "text", "Look at this offer"),
    ("image", "image", "The damaged box"),
    ("video", "video", "Unboxing"),
    ("audio", "audio", ""),
    ("voice", "audio", ""),
    ("document", "document", "Invoice for March"),
    ("sticker", "sticker", ""),
    ("location", "location", "Trafalgar Square, London WC2N 5DN (51.5072, -0.1276)"),
    ("contacts", "contacts", "Oliver Stone, Priya Shah"),
    ("interactive_button_reply", "interactive", "Yes, confirm"),
    ("interactive_list_reply", "interactive", "09:30 — Morning appointment"),
    (
        "interactive_nfm_reply",
        "interactive",
        '{"flow_token": "booking-42", "date": "2025-07-01", "guests": "2"}',
    ),
    ("interactive_call_permission_reply", "interactive", "Call permission: accept"),
    ("button", "button", "Stop promotions"),
    (
        "order",
        "order",
        "Order from catalog 731948250011: 2 x SKU-TEA-01 at 4.5 GBP; 1 x SKU-MUG-07 at 12 GBP\n"
        "Please gift wrap",
    ),
    ("system", "system", "Amelia Hart changed their phone number to a new number"),
    ("request_welcome", "request_welcome", ""),
    ("referral", "text", "Hi, I saw your ad"),
    ("unsupported", "unsupported", ""),
    ("errors_value_level", "interactive", ""),
    ("reaction", "reaction", "\U0001f44d"),
    ("edit", "edit", "Hello, is my order on its way? (order 1042)"),
    ("revoke", "revoke", ""),
]


@pytest.mark.parametrize(("fixture", "kind", "text"), KINDS, ids=[kind[0] for kind in KINDS])
def test_every_kind_of_message_is_stored_with_its_type_and_text(phone_number, fixture, kind, text):
    payload = body(fixture)

    result = apply(payload)

    message = Message.objects.get(wamid=message_of(payload)["id"])
    assert (message.direction, message.type, message.status) == ("inbound", kind, "received")
    assert message.text == text
    assert message.timestamp == at(int(message_of(payload)["timestamp"]))
    assert message.phone_number == phone_number
    assert message.payload == message_of(payload)
    assert message.contact.wa_id == CUSTOMER
    assert result.fields == ["messages"]
    assert not result.unknown_phone_number and not result.unknown_fields


def test_a_reply_keeps_its_context(phone_number):
    apply(body("text_reply"))

    message = Message.objects.get(wamid__endswith="REPLY")
    assert message.context_wamid == OUTBOUND
    assert message.payload["context"]["from"] == "15550001111"


def test_a_referral_and_forwarding_flags_stay_in_the_payload(phone_number):
    apply(body("referral"))
    apply(body("text_forwarded"))

    referral = Message.objects.get(wamid__endswith="REFERRAL").payload["referral"]
    assert referral["source_type"] == "ad"
    assert referral["ctwa_clid"].startswith("ARAk")
    assert referral["headline"] == "Summer tea sale"
    forwarded = Message.objects.get(wamid__endswith="FORWARDED")
    assert forwarded.payload["context"] == {"forwarded": True, "frequently_forwarded": True}
    assert forwarded.context_wamid == ""


@pytest.mark.parametrize(
    ("fixture", "media_id", "mime_type", "filename"),
    [
        ("image", "1467202514620001", "image/jpeg", ""),
        ("video", "1467202514620002", "video/mp4", ""),
        ("audio", "1467202514620003", "audio/mpeg", ""),
        ("voice", "1467202514620004", "audio/ogg; codecs=opus", ""),
        ("document", "1467202514620005", "application/pdf", "invoice-2025-03.pdf"),
        ("sticker", "1467202514620006", "image/webp", ""),
    ],
)
def test_media_messages_are_queued_for_fetching(phone_number, fixture, media_id, mime_type, filename):
    payload = body(fixture)

    result = apply(payload)

    message = Message.objects.get(wamid=message_of(payload)["id"])
    assert (message.media_id, message.media_mime_type, message.media_filename) == (
        media_id,
        mime_type,
        filename,
    )
    assert message.media_sha256 == message_of(payload)[message.type]["sha256"]
    assert message.media_state == Message.MediaState.PENDING
    assert result.media_message_ids == [message.pk]


def test_a_message_without_media_queues_no_fetch(phone_number):
    assert apply(body("text")).media_message_ids == []
    assert Message.objects.get().media_state == ""


def test_errors_are_kept_on_the_message(phone_number):
    apply(body("unsupported"))
    apply(body("errors_value_level"))

    unsupported = Message.objects.get(type="unsupported")
    assert (unsupported.error_code, unsupported.error_title) == (131051, "Message type unknown")
    assert unsupported.error_details == "Message type is currently not supported."
    value_level = Message.objects.get(wamid__endswith="VALUEERROR")
    assert (value_level.error_code, value_level.error_details) == (131000, "Unsupported webhook payload")


def test_an_order_and_a_contact_card_keep_their_details(phone_number):
    apply(body("order"))
    apply(body("contacts"))

    order = Message.objects.get(type="order")
    assert order.payload["order"]["product_items"][0]["product_retailer_id"] == "SKU-TEA-01"
    card = Message.objects.get(type="contacts")
    assert card.payload["contacts"][0]["phones"][0]["wa_id"] == "447400654321"


# -- contacts -------------------------------------------------------------------------------------


def test_the_sender_becomes_a_contact_with_profile_name_and_last_inbound_time(phone_number):
    apply(body("text"))

    contact = Contact.objects.get()
    assert (contact.wa_id, contact.phone, contact.name) == (CUSTOMER, "+447400123456", "Amelia Hart")
    assert contact.attributes["whatsapp_profile_name"] == "Amelia Hart"
    assert contact.last_inbound_at == at(1750000000)
    audit = AuditLog.objects.get(action="contact.create")
    assert (audit.source, audit.target_id) == ("webhook", str(contact.pk))


def test_an_imported_contact_is_found_by_phone_and_keeps_its_name(phone_number):
    imported = ContactFactory(phone="+447400123456", wa_id="", name="Mrs A. Hart")

    apply(body("text"))

    contact = Contact.objects.get()
    assert contact.pk == imported.pk
    assert (contact.wa_id, contact.name) == (CUSTOMER, "Mrs A. Hart")
    assert contact.attributes["whatsapp_profile_name"] == "Amelia Hart"


def test_the_profile_name_is_kept_current_when_it_came_from_whatsapp(phone_number):
    apply(text_body("first", wamid="wamid.NAME1"))
    renamed = text_body("second", wamid="wamid.NAME2", timestamp="1750000100")
    renamed["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = "Amelia Hart-Jones"

    apply(renamed)

    contact = Contact.objects.get()
    assert contact.name == "Amelia Hart-Jones"
    assert contact.attributes["whatsapp_profile_name"] == "Amelia Hart-Jones"
    assert contact.last_inbound_at == at(1750000100)


def test_last_inbound_time_never_moves_back(phone_number):
    apply(text_body("later", wamid="wamid.LATE", timestamp="1750000500"))
    apply(text_body("earlier", wamid="wamid.EARLY", timestamp="1750000100"))

    assert Contact.objects.get().last_inbound_at == at(1750000500)


def test_a_system_message_does_not_open_the_conversation_window(phone_number):
    apply(body("system"))

    assert Contact.objects.get(wa_id=CUSTOMER).last_inbound_at is None


def test_a_sender_known_only_by_user_id_is_a_contact_without_phone(phone_number):
    apply(body("user_id_only"))

    message = Message.objects.get()
    contact = message.contact
    assert (contact.wa_id, contact.user_id, contact.phone) == ("", "GB.1830492756183940257", None)
    assert contact.name == "Noor"
    assert contact.attributes["whatsapp_username"] == "@noor.k"
    assert message.text == "Hi from a username"


def test_a_wa_id_that_is_not_a_valid_number_still_makes_a_contact(phone_number):
    payload = body("text")
    message_of(payload)["from"] = "15550001234"  # a fictional 555 number
    payload["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"] = "15550001234"

    apply(payload)

    contact = Message.objects.get().contact
    assert (contact.wa_id, contact.phone) == ("15550001234", None)


# -- statuses -------------------------------------------------------------------------------------


def test_statuses_move_an_outbound_message_forward_and_record_their_times(outbound):
    apply(status_body("delivered"))
    apply(status_body("read"))

    outbound.refresh_from_db()
    assert outbound.status == "read"
    assert (outbound.delivered_at, outbound.read_at) == (at(1750000010), at(1750000020))


def test_a_late_delivered_never_undoes_read_but_its_time_is_kept(outbound):
    apply(status_body("read"))
    apply(status_body("delivered"))
    apply(status_body("sent"))

    outbound.refresh_from_db()
    assert outbound.status == "read"
    assert outbound.delivered_at == at(1750000010)
    assert outbound.sent_at == at(1750000000)


def test_played_follows_read(outbound):
    apply(status_body("played"))
    apply(status_body("read"))

    outbound.refresh_from_db()
    assert outbound.status == "played"
    assert (outbound.read_at, outbound.played_at) == (at(1750000020), at(1750000030))


def test_failed_is_final_and_carries_metas_error(outbound):
    apply(status_body("read"))
    apply(status_body("failed"))
    apply(status_body("delivered", timestamp="1750000090"))
    apply(status_body("deleted"))

    outbound.refresh_from_db()
    assert outbound.status == "failed"
    assert outbound.failed_at == at(1750000040)
    assert (outbound.error_code, outbound.error_title) == (131047, "Re-engagement message")
    assert outbound.error_details.startswith("Message failed to send because more than 24 hours")


def test_a_second_failure_keeps_the_first_error(outbound):
    apply(status_body("failed"))
    other = status_body("failed", timestamp="1750000099")
    other["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"] = 131026

    apply(other)

    outbound.refresh_from_db()
    assert (outbound.error_code, outbound.failed_at) == (131047, at(1750000040))


def test_deleted_applies_over_anything_but_failed(outbound):
    apply(status_body("read"))
    apply(status_body("deleted"))
    apply(status_body("played"))

    outbound.refresh_from_db()
    assert outbound.status == "deleted"


def test_failed_applies_over_deleted(outbound):
    apply(status_body("deleted"))
    apply(status_body("failed"))

    outbound.refresh_from_db()
    assert outbound.status == "failed"


def test_a_status_before_its_message_waits_and_is_applied_when_it_appears(phone_number):
    apply(status_body("delivered"))
    apply(status_body("read"))
    assert PendingStatus.objects.filter(wamid=OUTBOUND).count() == 2

    contact = ContactFactory()
    message = Message.objects.create(
        wamid=OUTBOUND,
        direction="outbound",
        type="text",
        status="sent",
        contact=contact,
        timestamp=at(1749999990),
    )
    applied = message_pending_statuses_apply(message=message)

    message.refresh_from_db()
    assert applied == 2
    assert message.status == "read"
    assert (message.delivered_at, message.read_at) == (at(1750000010), at(1750000020))
    assert not PendingStatus.objects.exists()
    assert set(AnalyticsEvent.objects.filter(kind="status_changed").values_list("status", flat=True)) == {
        "delivered",
        "read",
    }


def test_a_status_for_a_business_app_echo_that_arrives_first_is_applied_to_the_echo(phone_number):
    echo = body("smb_message_echoes")
    wamid = echo["entry"][0]["changes"][0]["value"]["message_echoes"][0]["id"]
    apply(status_body("delivered", wamid=wamid))

    apply(echo)

    message = Message.objects.get(wamid=wamid)
    assert (message.direction, message.status, message.text) == (
        "outbound",
        "delivered",
        "Sent from the WhatsApp Business app",
    )
    assert message.contact.wa_id == CUSTOMER
    assert not PendingStatus.objects.exists()


def test_the_same_status_twice_is_one_pending_row(phone_number):
    apply(status_body("read"))
    apply(status_body("read"))

    assert PendingStatus.objects.count() == 1


def test_an_unknown_status_is_kept_raw_and_flagged(outbound):
    payload = status_body("read")
    payload["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "warning"

    result = apply(payload)

    outbound.refresh_from_db()
    assert outbound.status == "sent"
    event = WebhookEvent.objects.get()
    assert (event.field, event.event, event.known) == ("messages", "status.warning", False)
    assert event.value["status"] == "warning"
    assert result.unknown_fields


def test_status_analytics_keep_pricing_of_both_shapes(outbound):
    apply(status_body("sent"))
    apply(status_body("read"))

    rows = {row.status: row for row in AnalyticsEvent.objects.filter(kind="status_changed")}
    assert rows["sent"].data["pricing_model"] == "CBP"
    assert rows["sent"].data["conversation_origin"] == "marketing"
    assert rows["read"].data["pricing_model"] == "PMP"
    assert rows["read"].data["pricing_type"] == "regular"
    assert rows["read"].occurred_at == at(1750000020)
    assert rows["read"].message_id == outbound.pk
    assert rows["read"].phone_number_id == outbound.phone_number_id


# -- reactions, edits, revokes --------------------------------------------------------------------


def test_a_reaction_attaches_to_its_message_and_an_empty_one_removes_it(phone_number):
    apply(body("text"))
    apply(body("reaction"))
    target = Message.objects.get(type="text")
    assert target.reaction == "\U0001f44d"
    reaction = Message.objects.get(type="reaction")
    assert reaction.target_wamid == target.wamid

    removal = body("reaction_removed")
    message_of(removal)["timestamp"] = "1750000100"
    apply(removal)

    target.refresh_from_db()
    assert target.reaction == ""


def test_a_reaction_before_its_message_is_tied_when_the_message_arrives(phone_number):
    apply(body("reaction"))
    apply(body("text"))

    assert Message.objects.get(type="text").reaction == "\U0001f44d"


def test_an_older_reaction_arriving_late_does_not_replace_a_newer_one(phone_number):
    apply(body("text"))
    newer = body("reaction")
    message_of(newer).update(
        id="wamid.REACTION2",
        timestamp="1750000200",
        reaction={"message_id": message_of(body("text"))["id"], "emoji": "\u2764\ufe0f"},
    )
    apply(newer)
    apply(body("reaction"))

    assert Message.objects.get(type="text").reaction == "\u2764\ufe0f"


def test_a_reaction_to_an_outbound_message_attaches_to_it(outbound):
    payload = body("reaction")
    message_of(payload)["reaction"]["message_id"] = OUTBOUND

    apply(payload)

    outbound.refresh_from_db()
    assert outbound.reaction == "\U0001f44d"


def test_an_edit_updates_the_original_and_is_kept_as_its_own_row(phone_number):
    apply(body("text"))
    apply(body("edit"))

    original = Message.objects.get(type="text")
    assert original.text == "Hello, is my order on its way? (order 1042)"
    assert original.edited_at == at(1750000300)
    assert original.payload["text"]["body"] == "Hello, is my order on its way?"
    edit = Message.objects.get(type="edit")
    assert edit.target_wamid == original.wamid


def test_an_edit_before_its_original_is_tied_later(phone_number):
    apply(body("edit"))
    apply(body("text"))

    original = Message.objects.get(type="text")
    assert (original.text, original.edited_at) == (
        "Hello, is my order on its way? (order 1042)",
        at(1750000300),
    )


def test_a_revoke_marks_the_original_and_leaves_its_status(phone_number):
    apply(body("text"))
    apply(body("revoke"))

    original = Message.objects.get(type="text")
    assert original.revoked_at == at(1750000600)
    assert original.status == "received"


def test_a_revoke_without_its_original_is_kept_with_its_target(phone_number):
    apply(body("revoke"))

    revoke = Message.objects.get()
    assert revoke.target_wamid.endswith("TEXT")


def test_nobody_edits_or_revokes_another_contacts_message(phone_number):
    apply(body("text"))
    for name in ("edit", "revoke"):
        payload = body(name)
        message_of(payload)["from"] = "14155550123"
        payload["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"] = "14155550123"
        apply(payload)

    original = Message.objects.get(type="text")
    assert (original.text, original.edited_at, original.revoked_at) == (
        "Hello, is my order on its way?",
        None,
        None,
    )


# -- opt-out keywords -----------------------------------------------------------------------------


def test_stop_opts_the_contact_out_and_start_back_in_audited(phone_number):
    apply(text_body("  stop ", wamid="wamid.STOP", timestamp="1750000100"))

    contact = Contact.objects.get()
    assert contact.is_opted_out
    audit = AuditLog.objects.get(action="contact.opt_out")
    assert (audit.source, audit.changes["opt_out_source"][1]) == ("webhook", "keyword stop")

    apply(text_body("START", wamid="wamid.START", timestamp="1750000200"))

    contact.refresh_from_db()
    assert not contact.is_opted_out
    assert contact.opt_in_source == "keyword START"
    assert AuditLog.objects.filter(action="contact.opt_in", source="webhook").count() == 1


def test_unsubscribe_is_a_keyword_too_and_settings_can_add_more(phone_number, settings):
    settings.WHATSAPP_OPT_OUT_KEYWORDS = ["STOP", "UNSUBSCRIBE", "Baja"]
    apply(text_body("Unsubscribe", wamid="wamid.UNSUB"))
    assert Contact.objects.get().is_opted_out

    Contact.objects.update(opted_out_at=None)
    apply(text_body("baja", wamid="wamid.BAJA", timestamp="1750000100"))
    assert Contact.objects.get().is_opted_out


def test_a_keyword_inside_a_sentence_is_not_one(phone_number):
    apply(text_body("please don't stop sending offers", wamid="wamid.SENTENCE"))

    assert not Contact.objects.get().is_opted_out


def test_a_stop_older_than_a_start_already_applied_changes_nothing(phone_number):
    apply(text_body("START", wamid="wamid.START", timestamp="1750000200"))
    apply(text_body("STOP", wamid="wamid.STOP", timestamp="1750000100"))

    assert not Contact.objects.get().is_opted_out
    assert not AuditLog.objects.filter(action="contact.opt_out").exists()


def test_a_redelivered_stop_is_not_applied_again(phone_number):
    stop = text_body("STOP", wamid="wamid.STOP")
    apply(stop)
    apply(stop)

    assert AuditLog.objects.filter(action="contact.opt_out").count() == 1


def test_marketing_stop_in_user_preferences_opts_out(phone_number):
    result = apply(body("user_preferences"))

    contact = Contact.objects.get(wa_id=CUSTOMER)
    assert contact.is_opted_out
    assert contact.opt_out_source == "whatsapp marketing_messages stop"
    event = WebhookEvent.objects.get()
    assert (event.field, event.event, event.known) == ("user_preferences", "marketing_messages.stop", True)
    assert result.fields == ["user_preferences"]


# -- other fields ---------------------------------------------------------------------------------

FIELDS = [
    ("message_template_status_update", "APPROVED", 1750000100),
    ("message_template_quality_update", "YELLOW", 1750000200),
    ("message_template_components_update", "order_shipped", 1750000300),
    ("template_category_update", "MARKETING", 1750000400),
    ("phone_number_quality_update", "FLAGGED", 1750000500),
    ("phone_number_name_update", "APPROVED", 1750000600),
    ("account_update", "ACCOUNT_VIOLATION", 1750000700),
    ("account_review_update", "APPROVED", 1750000800),
    ("account_alerts", "INCREASED_CAPABILITIES_ELIGIBILITY", 1750000900),
    ("business_capability_update", "capability_update", 1750001000),
    ("security", "PIN_CHANGED", 1750001100),
    ("calls", "connect", 1750001300),
    ("history", "history_sync", None),
    ("smb_message_echoes", "text", 1750001400),
]


@pytest.mark.parametrize(("field", "event", "occurred"), FIELDS, ids=[field[0] for field in FIELDS])
def test_other_fields_are_typed_events(phone_number, field, event, occurred):
    payload = body(field)

    result = apply(payload)

    row = WebhookEvent.objects.get()
    assert (row.field, row.event, row.known, row.waba_id) == (field, event, True, "102938475610293")
    assert row.value == payload["entry"][0]["changes"][0]["value"]
    assert row.occurred_at == (at(occurred) if occurred else None)
    assert result.fields == [field]
    assert not result.unknown_fields


def test_a_call_status_is_not_a_message_status(outbound):
    payload = body("calls")
    value = payload["entry"][0]["changes"][0]["value"]
    del value["calls"]
    value["statuses"] = [{"id": OUTBOUND, "type": "call", "status": "RINGING", "timestamp": "1750001300"}]

    apply(payload)

    outbound.refresh_from_db()
    assert outbound.status == "sent"
    assert WebhookEvent.objects.get().event == "ringing"
    assert not PendingStatus.objects.exists()


def test_a_quality_update_keeps_the_numbers_rating_and_limit(phone_number):
    apply(body("phone_number_quality_update"))

    phone_number.refresh_from_db()
    assert (phone_number.quality_rating, phone_number.messaging_limit) == ("RED", "TIER_1K")

    payload = body("phone_number_quality_update")
    payload["entry"][0]["changes"][0]["value"].update(event="UNFLAGGED", current_limit="TIER_10K")
    apply(payload)

    phone_number.refresh_from_db()
    assert (phone_number.quality_rating, phone_number.messaging_limit) == ("GREEN", "TIER_10K")


def test_an_unknown_field_is_kept_raw_and_flagged(phone_number):
    result = apply(body("unknown_field"))

    row = WebhookEvent.objects.get()
    assert (row.field, row.known) == ("brand_new_field", False)
    assert row.value == {"something": "Meta added later", "level": 3}
    assert row.occurred_at == at(1750001500)
    assert result.unknown_fields and result.fields == ["brand_new_field"]


def test_an_unknown_phone_number_is_flagged_and_its_messages_kept(db):
    result = apply(body("text"))

    assert result.unknown_phone_number
    message = Message.objects.get()
    assert message.phone_number is None
    assert not PhoneNumber.objects.exists()


def test_events_are_routed_to_their_sender_number(phone_number):
    other = PhoneNumber.objects.create(
        phone_number_id="200000000000002", display_phone_number="+1 555-000-2222"
    )
    payload = body("text")
    payload["entry"][0]["changes"][0]["value"]["metadata"] = {
        "display_phone_number": "15550002222",
        "phone_number_id": "200000000000002",
    }

    apply(payload)

    assert Message.objects.get().phone_number == other


# -- idempotency, analytics -----------------------------------------------------------------------


def test_the_same_body_applied_again_doubles_nothing(phone_number):
    names = ["text", "image", "reaction", "edit", "message_template_status_update", "unknown_field"]
    payload = {"object": "whatsapp_business_account", "entry": [body(name)["entry"][0] for name in names]}
    event = event_for(payload)

    first = inbound_payload_apply(event=event)
    counts = (Message.objects.count(), Contact.objects.count(), AnalyticsEvent.objects.count())
    second = inbound_payload_apply(event=event)
    apply(payload)  # the same body, delivered as another event

    assert counts == (4, 1, 4)
    assert (Message.objects.count(), Contact.objects.count(), AnalyticsEvent.objects.count()) == counts
    assert WebhookEvent.objects.filter(inbound_event=event).count() == 2
    assert first.media_message_ids == second.media_message_ids != []
    assert AuditLog.objects.filter(action="contact.create").count() == 1


def test_a_placeholder_id_reused_by_another_body_keeps_the_first(phone_number):
    apply(text_body("first", wamid="wamid.xyzxyz"))
    apply(text_body("second", wamid="wamid.xyzxyz", timestamp="1750000100"))

    assert Message.objects.get().text == "first"


def test_each_inbound_message_writes_one_analytics_row(phone_number):
    apply(body("text"))
    apply(body("image"))
    apply(body("text"))

    rows = AnalyticsEvent.objects.filter(kind="message_received")
    assert sorted(rows.values_list("data__type", flat=True)) == ["image", "text"]
    row = rows.get(data__type="text")
    assert row.contact_id == Contact.objects.get().pk
    assert row.phone_number_id == phone_number.pk
    assert row.occurred_at == at(1750000000)


# -- webhook_replay -------------------------------------------------------------------------------


def _replay(*paths) -> dict[str, str]:
    out = io.StringIO()
    call_command("webhook_replay", *map(str, paths), stdout=out, stderr=io.StringIO())
    return dict(line.rsplit(None, 1) for line in out.getvalue().splitlines())


def test_webhook_replay_records_processes_and_counts(phone_number, tmp_path):
    for name in ("text", "image", "status_read", "unknown_field"):
        (tmp_path / f"{name}.json").write_text(json.dumps(body(name)))
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "reaction.json").write_text(json.dumps(body("reaction")))
    (tmp_path / "broken.json").write_bytes(b"{not json")
    (tmp_path / "notes.txt").write_text("not a body")

    counts = _replay(tmp_path)

    assert counts == {
        "bodies read": "6",
        "stored": "5",
        "duplicates": "0",
        "rejected": "1",
        "processed": "5",
        "messages": "3",
        "statuses received": "1",
        "statuses applied": "0",
        "statuses pending": "1",
        "webhook events": "0",
        "unknown events": "1",
        "flagged unknown phone number": "0",
        "failures": "0",
    }
    assert Message.objects.get(type="text").reaction == "\U0001f44d"
    assert bytes(InboundEvent.objects.get(state="rejected").body) == b"{not json"

    again = _replay(tmp_path / "text.json", tmp_path / "more")

    assert (again["bodies read"], again["duplicates"], again["messages"]) == ("2", "2", "0")


def test_webhook_replay_refuses_a_missing_path(db, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        _replay(tmp_path / "missing.json")


# -- shapes that must not crash -------------------------------------------------------------------

ENVELOPE = {"object": "whatsapp_business_account"}
MALFORMED = [
    None,
    [],
    "text",
    {},
    {"object": "page", "entry": [{"id": "1", "changes": []}]},
    {**ENVELOPE, "entry": "nope"},
    {**ENVELOPE, "entry": [None, 3, {"id": {"a": 1}}]},
    {**ENVELOPE, "entry": [{"id": "1", "changes": "nope"}]},
    {
        **ENVELOPE,
        "entry": [{"id": "1", "time": "soon", "changes": [None, 1, "x", {"field": 7, "value": []}]}],
    },
    {**ENVELOPE, "entry": [{"changes": [{"field": "messages", "value": {"messages": "x", "statuses": {}}}]}]},
    {
        **ENVELOPE,
        "entry": [{"changes": [{"field": "messages", "value": {"metadata": "x", "contacts": "y"}}]}],
    },
    {
        **ENVELOPE,
        "entry": [
            {
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": ["x"]},
                            "contacts": [None, {"profile": "p"}],
                            "messages": [
                                None,
                                {"id": ["x"]},
                                {"id": "wamid.nofrom"},
                                {"id": "w" * 300, "from": "1"},
                                {"id": "wamid.bad1", "from": "447400123456", "timestamp": "abc", "type": 5},
                                {"id": "wamid.bad2", "from": "4474001234567890123456789012345678901"},
                                {
                                    "id": "wamid.bad3",
                                    "from": "447400123456",
                                    "timestamp": 1e30,
                                    "type": "text",
                                    "text": ["not", "a", "dict"],
                                    "context": "c",
                                    "errors": {"code": "x"},
                                },
                                {
                                    "id": "wamid.bad4",
                                    "from": "447400123456",
                                    "type": "image",
                                    "image": {"id": {"x": 1}, "mime_type": 3},
                                },
                                {
                                    "id": "wamid.bad5",
                                    "from": "447400123456",
                                    "type": "reaction",
                                    "reaction": None,
                                },
                                {
                                    "id": "wamid.bad6",
                                    "from": "447400123456",
                                    "type": "edit",
                                    "edit": {"message": 1},
                                },
                                {
                                    "id": "wamid.bad7",
                                    "from": "447400123456",
                                    "type": "interactive",
                                    "interactive": {"type": "nfm_reply", "nfm_reply": "x"},
                                    "errors": [{"code": 2**40, "title": None}],
                                },
                            ],
                            "statuses": [
                                None,
                                {"id": "wamid.s1", "status": 7},
                                {"id": "wamid.s2", "status": "weird"},
                                {"status": "read"},
                                {"id": "wamid.s3", "status": "READ", "timestamp": "-5", "errors": "e"},
                                {"id": "wamid.s4", "status": "failed", "errors": [{"code": "131047x"}]},
                            ],
                        },
                    },
                    {"field": "user_preferences", "value": {"user_preferences": [{"wa_id": None}, "x"]}},
                    {
                        "field": "phone_number_quality_update",
                        "value": {"event": None, "current_limit": ["x"]},
                    },
                    {"field": "calls", "value": {"calls": "x", "statuses": [None]}},
                ]
            }
        ],
    },
]


@pytest.mark.parametrize("payload", MALFORMED, ids=[str(index) for index in range(len(MALFORMED))])
def test_malformed_shapes_do_not_crash(db, payload):
    event = event_for(payload)

    result = inbound_payload_apply(event=event)

    assert isinstance(result, ApplyResult)
    assert result.unknown_fields or WebhookEvent.objects.exists() or Message.objects.exists()
    inbound_payload_apply(event=event)  # and again, the same


def test_malformed_parts_are_kept_and_good_parts_applied(db):
    result = apply(MALFORMED[-1])

    assert set(Message.objects.values_list("wamid", flat=True)) == {
        "wamid.bad1",
        "wamid.bad3",
        "wamid.bad4",
        "wamid.bad5",
        "wamid.bad6",
        "wamid.bad7",
    }
    assert Message.objects.get(wamid="wamid.bad7").error_code is None
    assert set(PendingStatus.objects.values_list("wamid", "status")) == {
        ("wamid.s3", "read"),
        ("wamid.s4", "failed"),
    }
    unknown = set(WebhookEvent.objects.filter(known=False).values_list("event", flat=True))
    assert {"message_without_id", "message_without_sender", "status.weird", "status_without_id"} <= unknown
    assert result.unknown_fields and result.unknown_phone_number is False


# What the webhook view stores: jsonb holds neither NUL characters nor lone surrogates, nor infinities.
jsonb_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | jsonb_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(jsonb_text, children, max_size=3),
    max_leaves=12,
)
known_keys = st.sampled_from(
    ["id", "from", "type", "timestamp", "text", "image", "reaction", "edit", "status", "errors", "context"]
)
message_like = st.dictionaries(
    known_keys, json_values | st.sampled_from(["text", "image", "read", "1750000000"])
)
value_like = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries({"phone_number_id": json_values}),
        "contacts": st.lists(st.dictionaries(st.sampled_from(["wa_id", "user_id", "profile"]), json_values)),
        "messages": st.lists(message_like, max_size=3) | json_values,
        "statuses": st.lists(message_like, max_size=3) | json_values,
    },
)
change_like = st.fixed_dictionaries(
    {
        "field": st.sampled_from(["messages", "calls", "user_preferences", "x"]) | json_values,
        "value": value_like,
    }
)
envelope_like = st.fixed_dictionaries(
    {
        "object": st.just("whatsapp_business_account"),
        "entry": st.lists(
            st.fixed_dictionaries({"id": json_values, "time": json_values, "changes": st.lists(change_like)}),
            max_size=2,
        ),
    }
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=envelope_like | json_values)
def test_generated_bodies_never_crash(db, payload):
    with transaction.atomic():
        inbound_payload_apply(event=event_for(payload))
        transaction.set_rollback(True)


def test_an_event_without_a_payload_is_read_from_its_body_nuls_and_all(phone_number):
    """Its raw body may hold NULs, which PostgreSQL's text cannot: they are replaced, as on receipt."""
    raw = json.dumps(text_body("a\u0000b", wamid="wamid.NUL\u0000")).encode()
    event = InboundEvent.objects.create(body=raw, body_sha256=hashlib.sha256(raw).hexdigest(), payload=None)

    inbound_payload_apply(event=event)

    message = Message.objects.get()
    assert (message.wamid, message.text) == ("wamid.NUL\ufffd", "a\ufffdb")


# -- concurrency ----------------------------------------------------------------------------------


def _in_thread(target, *args):
    errors: list[BaseException] = []

    def run():
        try:
            target(*args)
        except BaseException as error:
            errors.append(error)
        finally:
            close_old_connections()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_statuses_never_move_a_message_back(outbound):
    """Worker A applies "read" and holds its transaction; worker B's late "delivered" waits on the
    row, then finds it read and leaves the status alone."""
    read_applied, release = threading.Event(), threading.Event()

    def worker_a():
        with transaction.atomic():
            apply(status_body("read"))
            read_applied.set()
            release.wait(10)

    a, a_errors = _in_thread(worker_a)
    assert read_applied.wait(10)
    b, b_errors = _in_thread(lambda: apply(status_body("delivered")))
    lock_waiter()  # B waits for A's row lock
    release.set()
    a.join(10)
    b.join(10)

    assert not a_errors and not b_errors
    outbound.refresh_from_db()
    assert outbound.status == "read"
    assert outbound.delivered_at == at(1750000010)


@pytest.mark.django_db(transaction=True)
def test_a_status_racing_its_messages_creation_is_never_left_pending(phone_number):
    """The message is created (not committed yet) while its status arrives: the status waits on the
    wamid's lock and then finds the message, instead of leaving a pending row nobody applies."""
    created, release = threading.Event(), threading.Event()

    def sender():
        with transaction.atomic():
            message = Message.objects.create(
                wamid=OUTBOUND,
                direction="outbound",
                type="text",
                status="sent",
                contact=ContactFactory(),
                timestamp=at(1749999990),
            )
            message_pending_statuses_apply(message=message)
            created.set()
            release.wait(10)

    a, a_errors = _in_thread(sender)
    assert created.wait(10)
    b, b_errors = _in_thread(lambda: apply(status_body("read")))
    assert lock_waiter().locktype == "advisory"  # on the wamid's lock
    release.set()
    a.join(10)
    b.join(10)

    assert not a_errors and not b_errors
    assert Message.objects.get(wamid=OUTBOUND).status == "read"
    assert not PendingStatus.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_same_new_sender_in_two_workers_is_one_contact(phone_number):
    barrier = threading.Barrier(2)

    def worker(index):
        barrier.wait(5)
        with transaction.atomic():
            apply(text_body(f"hello {index}", wamid=f"wamid.RACE{index}"))

    threads = [_in_thread(worker, index) for index in range(2)]
    for thread, _ in threads:
        thread.join(20)

    assert [errors for _, errors in threads] == [[], []]
    assert Contact.objects.count() == 1
    assert Message.objects.count() == 2
