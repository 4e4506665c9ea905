"""Hostile values inside signed webhooks: numbers too large for a float, digits that are not ASCII
ones, text PostgreSQL cannot store, deep nesting. Each event is still processed, the bad part read
as absent (or recorded as unknown); none ends `failed`, and the admin shows every stored body."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Contact
from messaging.inbound.events import inbound_events_drain
from messaging.models import InboundEvent, Message, PendingStatus, WebhookEvent
from tests.messaging.test_webhook_fuzz import deliver_and_drain
from tests.messaging.webhook_helpers import status_body, text_message, webhook_post

pytestmark = pytest.mark.django_db

HUGE = 10**400  # json.loads reads it as an int; as a float it overflows


def delivered(client, body: bytes | str) -> InboundEvent:
    body = body.encode() if isinstance(body, str) else body
    assert webhook_post(client, body).status_code == 200
    inbound_events_drain()
    event = InboundEvent.objects.get()
    assert event.state == InboundEvent.State.PROCESSED, event.last_error
    return event


def test_a_timestamp_of_10_to_the_400_is_no_time(client):
    payload = text_message(wamid="wamid.huge-time", text="Hello")
    payload["entry"][0]["time"] = HUGE
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = HUGE
    event = delivered(client, json.dumps(payload))
    message = Message.objects.get(wamid="wamid.huge-time")
    assert message.timestamp == event.received_at  # the time it arrived stands in


@pytest.mark.parametrize("timestamp", [str(HUGE), "1e400", "-1", "١٧٦٧٢٢٥٦٠٠", str(2**64)])
def test_a_status_timestamp_that_is_no_time_is_read_as_none(client, timestamp):
    body = status_body(wamid="wamid.unknown-1", status="delivered", timestamp=0).decode()
    body = body.replace('"timestamp": "0"', f'"timestamp": {json.dumps(timestamp)}')
    delivered(client, body)
    assert PendingStatus.objects.get().wamid == "wamid.unknown-1"


def test_superscript_digits_in_an_error_code_are_no_code(client):
    payload = text_message(wamid="wamid.sup-code", text="")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(type="unsupported", errors=[{"code": "²", "title": "Unsupported", "message": "x"}])
    delivered(client, json.dumps(payload))
    message = Message.objects.get(wamid="wamid.sup-code")
    assert (message.error_code, message.error_title) == (None, "Unsupported")


@pytest.mark.parametrize("callback", ["²", "١٢", "9" * 40, "-5"])
def test_a_callback_data_that_is_not_our_id_is_ignored(client, callback):
    body = json.loads(status_body(wamid="wamid.unknown-2", status="sent", timestamp=1767225600))
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = callback
    delivered(client, json.dumps(body))
    assert PendingStatus.objects.get().payload["biz_opaque_callback_data"] == callback


@pytest.mark.parametrize(
    "sender",
    [
        "\u0664\u0664\u0667\u0667\u0660\u0660\u0669",
        "\uff14\uff14\uff17\uff17\uff10\uff10",
        "44770090012\u00b3",
    ],
    ids=["arabic-indic", "fullwidth", "superscript"],
)
def test_unicode_digits_in_from_make_no_contact(client, sender):
    payload = text_message(wamid="wamid.unicode-from", text="Hello", wa_id=sender)
    delivered(client, json.dumps(payload))
    assert not Contact.objects.exists()
    assert not Message.objects.exists()
    unknown = WebhookEvent.objects.get(known=False)
    assert (unknown.field, unknown.event) == ("messages", "message_without_sender")


def test_unicode_digits_in_a_profile_s_wa_id_are_not_taken(client):
    payload = text_message(wamid="wamid.profile", text="Hello", wa_id="447700900123")
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = "٤٤٧٧٠٠٩٠٠١٢٣"
    del value["messages"][0]["from"]
    delivered(client, json.dumps(payload))
    assert not Contact.objects.exclude(wa_id__regex=r"^[0-9]*$").exists()


# -- the admin shows any stored body --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (
            b'{"object": "whatsapp_business_account", "note": "\\ud800 and \\udfff"}',
            "\\ud800 and \\udfff",
        ),
        (b'{"a": ' + b"[" * 900 + b"]" * 900 + b"}", "[" * 900),
        (b"[" * 5000 + b"]" * 5000, "[" * 5000),
    ],
    ids=["surrogate-escapes", "900-deep", "5000-deep"],
)
def test_the_admin_shows_an_inbound_event_whatever_its_body(client, admin_client, body, shown):
    assert webhook_post(client, body).status_code in (200, 400)  # 400: stored, not a JSON object to read
    inbound_events_drain()
    event = InboundEvent.objects.get()
    assert event.state in (InboundEvent.State.PROCESSED, InboundEvent.State.REJECTED), event.last_error
    answer = admin_client.get(f"/admin/messaging/inboundevent/{event.pk}/change/")
    assert answer.status_code == 200
    assert shown in answer.content.decode()


# -- properties -----------------------------------------------------------------------------------------

hostile = st.sampled_from(
    [
        HUGE,
        -HUGE,
        2**63,
        1e308,
        -1e308,
        "²",
        "٤٤٧٧٠٠٩٠٠١٢٣",
        "1e400",
        "\x00",
        "a\ud800b",
        "\udfff",
        "9" * 40,
        "",
        None,
        [],
        {},
    ]
)
deep = st.integers(min_value=1, max_value=300).map(lambda depth: json.loads("[" * depth + "]" * depth))


@st.composite
def hostile_webhook(draw):
    """A text message and a status, with hostile values in the places Meta's numbers and ids go."""
    payload = text_message(wamid=draw(st.sampled_from(["wamid.h1", "wamid.h2"])), text="Hi")
    value = payload["entry"][0]["changes"][0]["value"]
    value["statuses"] = [
        {"id": "wamid.h3", "status": "failed", "timestamp": "1767225600", "recipient_id": "447700900123"}
    ]
    places = [
        (payload["entry"][0], "time"),
        (value["messages"][0], "timestamp"),
        (value["messages"][0], "from"),
        (value["contacts"][0], "wa_id"),
        (value["statuses"][0], "timestamp"),
        (value["statuses"][0], "biz_opaque_callback_data"),
        (value["statuses"][0], "recipient_id"),
        (value["statuses"][0], "errors"),
        (value["metadata"], "display_phone_number"),
    ]
    for parent, key in draw(st.lists(st.sampled_from(places), min_size=1, max_size=4)):
        choice = draw(st.one_of(hostile, deep, st.just([{"code": draw(hostile), "title": draw(hostile)}])))
        parent[key] = choice
    return payload


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=hostile_webhook())
def test_hostile_values_in_a_signed_webhook_never_fail_its_event(client, payload):
    deliver_and_drain(client, json.dumps(payload).encode())
