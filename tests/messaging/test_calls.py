"""WhatsApp calls: Meta's `calls` webhooks, signed and through the webhook door, become call records
(replays and out-of-order events change nothing), join their conversation, and are listed in the
admin and the API to those who see their sender number."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.calls import calls_of_conversations
from messaging.inbound.events import inbound_events_drain
from messaging.models import Call, Conversation, InboundEvent, PhoneNumber, WebhookEvent
from tests.factories import PhoneNumberFactory, UserFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, WABA_ID, text_body, webhook_post

pytestmark = pytest.mark.django_db

BUSINESS = "15550783881"
CUSTOMER = "447700900123"
T0 = 1767225600  # 2026-01-01 00:00:00 UTC
CALLS_ADMIN = "/admin/messaging/call/"
CALLS_API = "/api/v1/calls/"
VIEW_CALL = "messaging.view_call"
CONTACTS = "contacts.view_contact"
Status = Call.Status


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# -- bodies as Meta's Cloud API Calling webhooks reference shapes them --------------------------------


def connect(
    call_id: str, *, timestamp: int = T0, business_initiated: bool = False, customer=CUSTOMER
) -> dict:
    """The call began: a user's call rings with an SDP offer; a business call carries the answer."""
    caller, callee = (BUSINESS, customer) if business_initiated else (customer, BUSINESS)
    return {
        "id": call_id,
        "from": caller,
        "to": callee,
        "event": "connect",
        "timestamp": str(timestamp),
        "direction": "BUSINESS_INITIATED" if business_initiated else "USER_INITIATED",
        "session": {"sdp_type": "answer" if business_initiated else "offer", "sdp": "v=0\r\n"},
    }


def terminate(
    call_id: str,
    *,
    ended: int,
    duration: int | None = None,
    status: str = "COMPLETED",
    business_initiated: bool = False,
    customer=CUSTOMER,
) -> dict:
    """The call ended; start, end and duration only for a call that connected."""
    caller, callee = (BUSINESS, customer) if business_initiated else (customer, BUSINESS)
    item: dict[str, Any] = {
        "id": call_id,
        "from": caller,
        "to": callee,
        "event": "terminate",
        "direction": "BUSINESS_INITIATED" if business_initiated else "USER_INITIATED",
        "timestamp": str(ended),
        "status": status,
    }
    if duration is not None:
        item |= {"start_time": str(ended - duration), "end_time": str(ended), "duration": duration}
    return item


def call_status(call_id: str, status: str, *, timestamp: int, customer=CUSTOMER) -> dict:
    """A business-initiated call's progress: RINGING, ACCEPTED, REJECTED."""
    return {
        "id": call_id,
        "timestamp": str(timestamp),
        "type": "call",
        "status": status,
        "recipient_id": customer,
    }


def calls_body(
    *,
    calls: list | None = None,
    statuses: list | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    customer: str = CUSTOMER,
    name: str = "Ada Lovelace",
    errors: list | None = None,
    field: str = "calls",
    indent: int | None = None,
) -> bytes:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS, "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": name}, "wa_id": customer}],
    }
    if calls is not None:
        value["calls"] = calls
    if statuses is not None:
        value["statuses"] = statuses
    if errors is not None:
        value["errors"] = errors
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field}]}],
    }
    return json.dumps(payload, indent=indent).encode()


def deliver(client, *bodies: bytes) -> None:
    """Post each body, signed, and let the inbound drain apply it."""
    for body in bodies:
        assert webhook_post(client, body).status_code == 200
        assert not inbound_events_drain().failed


@pytest.fixture
def number() -> PhoneNumber:
    return PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, display_phone_number=BUSINESS)


# -- webhooks into call records -----------------------------------------------------------------------


def test_an_answered_inbound_call_is_completed_with_its_times_and_joins_the_conversation(client, number):
    deliver(
        client,
        calls_body(calls=[connect("wacid.one", timestamp=T0)]),
        calls_body(calls=[terminate("wacid.one", ended=T0 + 130, duration=125)]),
    )

    call = Call.objects.select_related("contact", "conversation").get()
    assert (call.call_id, call.direction, call.status, call.missed) == (
        "wacid.one",
        "inbound",
        Status.COMPLETED,
        False,
    )
    assert (call.from_number, call.to_number) == (CUSTOMER, BUSINESS)
    assert (call.started_at, call.connected_at, call.ended_at, call.duration_s) == (
        at(T0),
        at(T0 + 5),
        at(T0 + 130),
        125,
    )
    assert (call.contact.wa_id, call.contact.name, call.phone_number_id) == (
        CUSTOMER,
        "Ada Lovelace",
        number.pk,
    )
    assert call.payload["event"] == "terminate"
    conversation = call.conversation
    assert (conversation.contact_id, conversation.phone_number_id) == (call.contact_id, number.pk)
    assert conversation.last_message_preview == "Incoming call (2:05)"
    assert conversation.last_message_at == at(T0)
    # A call is not the customer writing: nothing unread, nobody waiting, no window opened.
    assert (conversation.status, conversation.unread_count) == (Conversation.Status.PENDING, 0)
    assert conversation.waiting_since is None and conversation.last_inbound_at is None
    assert list(calls_of_conversations(conversations=Conversation.objects.filter(pk=conversation.pk))) == [
        call
    ]


def test_an_inbound_call_nobody_answered_is_missed_and_leaves_the_conversations_state(client, number):
    deliver(client, text_body(wamid="wamid.before", text="Can you call me?", timestamp=T0 - 60))
    before = Conversation.objects.get()

    deliver(
        client,
        calls_body(calls=[connect("wacid.missed", timestamp=T0)]),
        calls_body(calls=[terminate("wacid.missed", ended=T0 + 30)]),
    )

    call = Call.objects.get()
    assert (call.status, call.missed, call.connected_at, call.duration_s) == (Status.MISSED, True, None, None)
    assert call.ended_at == at(T0 + 30)
    conversation = Conversation.objects.get()
    assert call.conversation_id == conversation.pk == before.pk
    assert (conversation.status, conversation.unread_count, conversation.waiting_since) == (
        before.status,
        before.unread_count,
        before.waiting_since,
    )
    assert conversation.last_inbound_at == before.last_inbound_at
    assert (conversation.last_message_preview, conversation.last_message_at) == ("Missed call", at(T0))


def test_a_ringing_call_is_ringing_until_it_ends(client, number):
    deliver(client, calls_body(calls=[connect("wacid.ring", timestamp=T0)]))

    call = Call.objects.get()
    assert (call.status, call.missed, call.ended_at) == (Status.RINGING, False, None)
    assert Conversation.objects.get().last_message_preview == "Incoming call"


def test_replayed_events_change_nothing(client, number):
    events = [connect("wacid.replay", timestamp=T0), terminate("wacid.replay", ended=T0 + 70, duration=60)]
    deliver(client, calls_body(calls=events))
    first = Call.objects.values().get()
    conversation = Conversation.objects.values().get()

    # The same events again in other bodies (Meta batches and retries as it likes), and reprocessed.
    deliver(client, calls_body(calls=events, indent=1), calls_body(calls=events[::-1], indent=2))

    again = Call.objects.values().get()
    assert {k: v for k, v in again.items() if k != "updated_at"} == {
        k: v for k, v in first.items() if k != "updated_at"
    }
    after = Conversation.objects.values().get()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in conversation.items() if k != "updated_at"
    }
    assert InboundEvent.objects.filter(state=InboundEvent.State.PROCESSED).count() == 3


def test_a_connect_after_the_terminate_does_not_undo_the_end(client, number):
    deliver(
        client,
        calls_body(calls=[terminate("wacid.late", ended=T0 + 50, duration=40)]),
        calls_body(calls=[connect("wacid.late", timestamp=T0)]),
    )

    call = Call.objects.get()
    assert call.status == Status.COMPLETED
    assert (call.started_at, call.connected_at, call.ended_at, call.duration_s) == (
        at(T0),
        at(T0 + 10),
        at(T0 + 50),
        40,
    )
    assert call.payload["event"] == "terminate"  # the latest event by Meta's time, not by arrival
    assert Conversation.objects.get().last_message_preview == "Incoming call (0:40)"


def test_a_missed_call_stays_missed_when_its_connect_comes_last(client, number):
    deliver(
        client,
        calls_body(calls=[terminate("wacid.late-missed", ended=T0 + 20)]),
        calls_body(calls=[connect("wacid.late-missed", timestamp=T0)]),
    )

    call = Call.objects.get()
    assert (call.status, call.missed, call.started_at) == (Status.MISSED, True, at(T0))
    assert Conversation.objects.get().last_message_preview == "Missed call"


def test_a_business_call_follows_its_statuses_whatever_their_order(client, number):
    call_id = "wacid.business"
    deliver(
        client,
        calls_body(calls=[connect(call_id, timestamp=T0, business_initiated=True)]),
        calls_body(statuses=[call_status(call_id, "RINGING", timestamp=T0 + 1)]),
        calls_body(statuses=[call_status(call_id, "ACCEPTED", timestamp=T0 + 8)]),
    )
    call = Call.objects.get()
    assert (call.direction, call.status, call.connected_at) == ("outbound", Status.ONGOING, at(T0 + 8))
    assert (call.from_number, call.to_number, call.contact.wa_id) == (BUSINESS, CUSTOMER, CUSTOMER)
    assert Conversation.objects.get().last_message_preview == "Call in progress"

    deliver(
        client,
        calls_body(calls=[terminate(call_id, ended=T0 + 68, duration=60, business_initiated=True)]),
        calls_body(statuses=[call_status(call_id, "RINGING", timestamp=T0 + 1)], indent=1),  # a late replay
    )

    call.refresh_from_db()
    assert (call.status, call.missed, call.duration_s, call.connected_at) == (
        Status.COMPLETED,
        False,
        60,
        at(T0 + 8),
    )
    assert Conversation.objects.get().last_message_preview == "Outgoing call (1:00)"


def test_a_business_call_the_user_declines_or_leaves_ringing(client, number):
    deliver(
        client,
        calls_body(statuses=[call_status("wacid.declined", "REJECTED", timestamp=T0 + 3)]),
        calls_body(calls=[terminate("wacid.declined", ended=T0 + 3, business_initiated=True)]),
        calls_body(statuses=[call_status("wacid.unanswered", "RINGING", timestamp=T0)]),
        calls_body(calls=[terminate("wacid.unanswered", ended=T0 + 45, business_initiated=True)]),
    )

    calls = {call.call_id: call for call in Call.objects.all()}
    assert (calls["wacid.declined"].status, calls["wacid.declined"].missed) == (Status.REJECTED, False)
    assert (calls["wacid.unanswered"].status, calls["wacid.unanswered"].missed) == (Status.UNANSWERED, False)


def test_a_failed_call_keeps_metas_error(client, number):
    errors = [
        {"code": 138006, "title": "Call failed", "message": "Call failed", "error_data": {"details": "x"}}
    ]

    deliver(
        client, calls_body(calls=[terminate("wacid.failed", ended=T0 + 2, status="FAILED")], errors=errors)
    )

    call = Call.objects.get()
    assert (call.status, call.missed, call.end_status) == (Status.FAILED, True, "FAILED")
    assert (call.error_code, call.error_title, call.error_details) == (138006, "Call failed", "x")
    assert Conversation.objects.get().last_message_preview == "Failed call"


def test_a_call_status_in_the_messages_field_is_a_call_status(client, number):
    deliver(
        client,
        calls_body(statuses=[call_status("wacid.elsewhere", "RINGING", timestamp=T0)], field="messages"),
    )

    call = Call.objects.get()
    assert (call.call_id, call.direction, call.status) == ("wacid.elsewhere", "outbound", Status.RINGING)
    assert not WebhookEvent.objects.filter(known=False).exists()


def test_malformed_call_entries_are_kept_as_unknown_events_and_the_rest_is_applied(client, number):
    body = calls_body(
        calls=[
            {"event": "connect", "timestamp": str(T0)},  # no id
            "not an object",
            {**connect("wacid.odd"), "event": "transfer"},
            {**connect("wacid.nobody"), "from": None},
            connect("wacid.good", timestamp=T0),
        ],
        statuses=[{"id": "wacid.good", "type": "call", "status": "HOLDING", "timestamp": str(T0)}],
    )
    body = json.loads(body)
    body["entry"][0]["changes"][0]["value"]["contacts"] = []  # nobody for the entry without a caller
    deliver(client, json.dumps(body).encode())

    event = InboundEvent.objects.get()
    assert (event.state, event.unknown_fields) == (InboundEvent.State.PROCESSED, True)
    assert list(Call.objects.values_list("call_id", flat=True)) == ["wacid.good"]
    unknown = WebhookEvent.objects.filter(known=False).order_by("position")
    assert [(row.field, row.event) for row in unknown] == [
        ("calls", "call_without_id"),
        ("calls", "call_not_an_object"),
        ("calls", "call.transfer"),
        ("calls", "call_without_contact"),
        ("calls", "call_status.holding"),
    ]
    assert WebhookEvent.objects.filter(known=True, field="calls", event="connect").count() == 1


def test_a_call_to_a_number_wharf_does_not_know_is_kept_without_one(client):
    deliver(client, calls_body(calls=[connect("wacid.stray")], phone_number_id="999"))

    call = Call.objects.get()
    assert call.phone_number is None
    assert call.conversation.phone_number is None
    assert InboundEvent.objects.get().unknown_phone_number


# -- who sees which calls -----------------------------------------------------------------------------


@pytest.fixture
def teams(client):
    """A call on number A (team A) from Ada, a missed one on number B (team B) from Bea, and a
    completed one on a number with no groups from Sam."""
    team_a, team_b = Group.objects.create(name="team-a"), Group.objects.create(name="team-b")
    a, b, shared = PhoneNumberFactory(), PhoneNumberFactory(), PhoneNumberFactory()
    a.groups.set([team_a])
    b.groups.set([team_b])
    deliver(
        client,
        calls_body(
            calls=[terminate("wacid.a", ended=T0 + 100, duration=90, customer="447400123001")],
            phone_number_id=a.phone_number_id,
            customer="447400123001",
            name="Ada",
        ),
        calls_body(
            calls=[terminate("wacid.b", ended=T0 + 200, customer="447400123002")],
            phone_number_id=b.phone_number_id,
            customer="447400123002",
            name="Bea",
        ),
        calls_body(
            calls=[
                terminate(
                    "wacid.shared",
                    ended=T0 + 300,
                    duration=30,
                    business_initiated=True,
                    customer="447400123003",
                )
            ],
            phone_number_id=shared.phone_number_id,
            customer="447400123003",
            name="Sam",
        ),
    )
    return {"a": a, "b": b, "shared": shared, "team_a": team_a, "team_b": team_b}


def operator_in(group: Group | None, *permissions: str):
    user = UserFactory(is_staff=True, permissions=permissions or (VIEW_CALL, CONTACTS))
    if group is not None:
        user.groups.add(group)
    return user


def api_as(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def admin_names(response) -> list[str]:
    return [call.contact.name for call in response.context["cl"].result_list]


# -- the admin's list ---------------------------------------------------------------------------------


def test_the_calls_list_shows_each_call_with_missed_ones_marked(admin_client, teams):
    response = admin_client.get(CALLS_ADMIN)

    assert response.status_code == 200
    assert admin_names(response) == ["Sam", "Bea", "Ada"]  # the latest first
    page = response.content.decode()
    assert '<strong class="wharf-call-missed"' in page
    assert page.count("wharf-call-missed") == 1
    assert "1:30" in page and "0:30" in page  # durations
    assert reverse("admin:messaging_call_change", args=[Call.objects.get(call_id="wacid.a").pk]) in page
    assert "Calls" in admin_client.get("/admin/messaging/").content.decode()  # in the menu


def test_the_calls_list_filters_and_searches(admin_client, teams):
    assert admin_names(admin_client.get(CALLS_ADMIN, {"missed": "yes"})) == ["Bea"]
    assert admin_names(admin_client.get(CALLS_ADMIN, {"missed": "no"})) == ["Sam", "Ada"]
    assert admin_names(admin_client.get(CALLS_ADMIN, {"status": "completed"})) == ["Sam", "Ada"]
    assert admin_names(admin_client.get(CALLS_ADMIN, {"direction__exact": "outbound"})) == ["Sam"]
    number = teams["a"].pk
    assert admin_names(admin_client.get(CALLS_ADMIN, {"phone_number__id__exact": number})) == ["Ada"]
    assert admin_names(admin_client.get(CALLS_ADMIN, {"q": "Bea"})) == ["Bea"]
    assert admin_names(admin_client.get(CALLS_ADMIN, {"q": "+44 7400 123003"})) == ["Sam"]


def test_an_operator_sees_only_the_calls_of_the_numbers_their_groups_see(client, teams):
    client.force_login(operator_in(teams["team_a"]))

    response = client.get(CALLS_ADMIN)

    assert admin_names(response) == ["Sam", "Ada"]
    hidden = Call.objects.get(call_id="wacid.b")
    assert (
        client.get(reverse("admin:messaging_call_change", args=[hidden.pk])).status_code == 302
    )  # not there
    shown = Call.objects.get(call_id="wacid.a")
    page = client.get(reverse("admin:messaging_call_change", args=[shown.pk]))
    assert page.status_code == 200 and "wacid.a" in page.content.decode()


def test_an_operator_in_no_team_of_the_number_sees_nothing_of_it(client, teams):
    client.force_login(operator_in(teams["team_b"]))
    assert admin_names(client.get(CALLS_ADMIN, {"phone_number__id__exact": teams["a"].pk})) == []


def test_the_calls_list_needs_view_call(client, teams):
    client.force_login(operator_in(None, "messaging.view_conversation"))

    assert client.get(CALLS_ADMIN).status_code == 403


# -- the API ------------------------------------------------------------------------------------------


def test_the_api_lists_calls_latest_first_with_their_contact_and_number(teams):
    response = api_as(operator_in(None, VIEW_CALL, CONTACTS)).get(CALLS_API)  # in no team: the shared number

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (sam,) = body["results"]
    assert sam["call_id"] == "wacid.shared"
    assert (sam["direction"], sam["status"], sam["missed"], sam["duration_s"]) == (
        "outbound",
        "completed",
        False,
        30,
    )
    assert sam["contact"]["name"] == "Sam" and sam["contact"]["wa_id"] == "447400123003"
    assert sam["phone_number"]["id"] == teams["shared"].pk
    assert sam["conversation"] == Call.objects.get(call_id="wacid.shared").conversation_id
    assert sam["started_at"].startswith("2026-01-01T00:04:30")
    assert sam["error"] is None


def test_the_api_shows_each_user_the_calls_of_the_numbers_they_see(teams, admin_user):
    ids = lambda user: [c["call_id"] for c in api_as(user).get(CALLS_API).json()["results"]]  # noqa: E731

    assert ids(operator_in(teams["team_a"])) == ["wacid.shared", "wacid.a"]
    assert ids(operator_in(teams["team_b"])) == ["wacid.shared", "wacid.b"]
    assert ids(admin_user) == ["wacid.shared", "wacid.b", "wacid.a"]


def test_the_api_needs_view_call(teams):
    user = operator_in(None, "messaging.view_conversation", "messaging.view_message", CONTACTS)
    call = Call.objects.get(call_id="wacid.shared")

    api = api_as(user)
    assert api.get(CALLS_API).status_code == 403
    assert api.get(f"{CALLS_API}{call.pk}/").status_code == 403
    assert APIClient().get(CALLS_API).status_code == 401


def test_the_api_shows_only_the_contacts_id_without_view_contact(teams):
    (call,) = api_as(operator_in(None, VIEW_CALL)).get(CALLS_API).json()["results"]

    assert call["contact"] == {"id": Call.objects.get(call_id="wacid.shared").contact_id}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"direction": "outbound"}, ["wacid.shared"]),
        ({"direction": "inbound"}, ["wacid.b", "wacid.a"]),
        ({"status": "missed"}, ["wacid.b"]),
        ({"missed": "true"}, ["wacid.b"]),
        ({"missed": "false"}, ["wacid.shared", "wacid.a"]),
        ({"since": "2026-01-01T00:03:00Z"}, ["wacid.shared", "wacid.b"]),
        ({"page_size": "1"}, ["wacid.shared"]),
    ],
)
def test_the_api_filters(teams, admin_user, params, expected):
    response = api_as(admin_user).get(CALLS_API, params)

    assert response.status_code == 200
    assert [c["call_id"] for c in response.json()["results"]] == expected


def test_the_api_filters_by_number_and_contact(teams, admin_user):
    api = api_as(admin_user)
    ada = Call.objects.get(call_id="wacid.a")

    assert [c["call_id"] for c in api.get(CALLS_API, {"phone_number": teams["b"].pk}).json()["results"]] == [
        "wacid.b"
    ]
    assert [c["call_id"] for c in api.get(CALLS_API, {"contact": ada.contact_id}).json()["results"]] == [
        "wacid.a"
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"missed": "perhaps"}, "missed"),
        ({"status": "on_hold"}, "status"),
        ({"direction": "sideways"}, "direction"),
        ({"since": "yesterday"}, "since"),
        ({"phone_number": "x"}, "phone_number"),
        ({"contact": "0"}, "contact"),
    ],
)
def test_a_bad_filter_is_400_naming_the_field(teams, admin_user, params, field):
    response = api_as(admin_user).get(CALLS_API, params)

    assert response.status_code == 400
    assert field in response.json()


def test_the_api_answers_one_call_with_its_latest_event_and_404_for_one_not_seen(teams):
    user = operator_in(teams["team_a"])
    seen, hidden = Call.objects.get(call_id="wacid.a"), Call.objects.get(call_id="wacid.b")

    api = api_as(user)
    response = api.get(f"{CALLS_API}{seen.pk}/")

    assert response.status_code == 200
    assert response.json()["payload"]["event"] == "terminate"
    assert response.json()["connected_at"].startswith("2026-01-01T00:00:10")
    assert api.get(f"{CALLS_API}{hidden.pk}/").status_code == 404
    assert api.get(f"{CALLS_API}999999/").status_code == 404


def test_the_schema_documents_the_calls_api(admin_client):
    paths = admin_client.get("/api/schema/", {"format": "json"}).json()["paths"]

    parameters = {p["name"] for p in paths[CALLS_API]["get"]["parameters"]}
    assert parameters == {
        "direction",
        "status",
        "missed",
        "phone_number",
        "contact",
        "since",
        "page",
        "page_size",
    }
    assert {"200", "400", "401", "403"} <= set(paths[CALLS_API]["get"]["responses"])
    assert {"200", "401", "403", "404"} <= set(paths["/api/v1/calls/{id}/"]["get"]["responses"])


# -- the conversation's calls, for its timeline --------------------------------------------------------


def test_calls_of_a_conversation_are_its_own_oldest_first_within_a_span(client, number):
    deliver(
        client,
        calls_body(calls=[terminate("wacid.second", ended=T0 + 600, duration=60)]),
        calls_body(calls=[terminate("wacid.first", ended=T0 + 100)]),
        calls_body(
            calls=[connect("wacid.other", timestamp=T0, customer="447400123999")],
            customer="447400123999",
            name="Other",
        ),
    )
    conversation = Call.objects.get(call_id="wacid.first").conversation

    calls = calls_of_conversations(conversations=Conversation.objects.filter(pk=conversation.pk))
    assert [call.call_id for call in calls] == ["wacid.first", "wacid.second"]
    span = calls_of_conversations(
        conversations=Conversation.objects.filter(pk=conversation.pk), since=at(T0 + 200), until=at(T0 + 1000)
    )
    assert [call.call_id for call in span] == ["wacid.second"]


def test_a_message_after_a_call_keeps_its_own_preview(client, number):
    deliver(client, calls_body(calls=[terminate("wacid.earlier", ended=T0 + 30)]))
    deliver(client, text_body(wamid="wamid.after", text="Sorry I missed you", timestamp=T0 + 120))
    deliver(client, calls_body(calls=[connect("wacid.earlier", timestamp=T0)]))  # a late connect

    conversation = Conversation.objects.get()
    assert conversation.last_message_preview == "Sorry I missed you"
    assert (conversation.status, conversation.unread_count) == (Conversation.Status.OPEN, 1)


# -- the development stack ----------------------------------------------------------------------------


def test_sandbox_inbound_posts_a_missed_call(live_server, transactional_db):
    out = StringIO()

    call_command(
        "sandbox_inbound",
        "--from", "+44 7700 900123",
        "--name", "Ana",
        "--call", "missed",
        "--url", f"{live_server.url}/webhooks/whatsapp/",
        stdout=out,
    )  # fmt: skip
    inbound_events_drain()

    assert out.getvalue().count("answer: 200") == 2
    call = Call.objects.select_related("contact").get()
    assert (call.status, call.missed, call.contact.name) == (Status.MISSED, True, "Ana")
    assert call.ended_at - call.started_at == timedelta(seconds=20)


def test_calls_show_in_the_conversations_timeline_between_its_messages(admin_client, number):
    deliver(
        admin_client,
        text_body(wamid="wamid.call.before", text="Can you call me?", timestamp=T0 - 60),
        calls_body(calls=[connect("wacid.timeline", timestamp=T0)]),
        calls_body(calls=[terminate("wacid.timeline", ended=T0 + 30)]),
        text_body(wamid="wamid.call.after", text="You missed me", timestamp=T0 + 60),
    )
    conversation = Conversation.objects.get()

    page = admin_client.get(
        reverse("admin:messaging_message_conversation", args=[conversation.contact_id]),
        {"sender": number.pk},
    )
    text = page.text
    assert page.status_code == 200
    assert 'class="wharf-call wharf-call-missed"' in text
    assert text.index("Can you call me?") < text.index("Missed call") < text.index("You missed me")

    api = APIClient()
    api.force_authenticate(UserFactory(is_superuser=True, is_staff=True))
    timeline = api.get(f"/api/v1/conversations/{conversation.pk}/").json()["timeline"]
    assert [entry["kind"] for entry in timeline] == ["message", "call", "message"]
    call = timeline[1]["call"]
    assert (call["text"], call["status"], call["missed"]) == ("Missed call", "missed", True)
    assert call["id"] == Call.objects.get().pk
