"""Private notes and the conversation's activity in its timeline: the note service, the admin's
note box, the notes API, the timeline's merge of messages, notes and audit rows (order, pages, a
fixed number of queries), the campaign tag, and the live token moving."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from core.audit import audit_log_record
from core.models import AuditLog
from messaging.conversations import (
    conversation_assign,
    conversation_labels_set,
    conversation_message_apply,
    conversation_note_add,
    conversation_priority_set,
    conversation_status_set,
    conversations_wake,
)
from messaging.models import Conversation, ConversationNote, Message
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory, labels_make

pytestmark = pytest.mark.django_db

VIEW, CHANGE = "messaging.view_conversation", "messaging.change_conversation"
OPERATOR = [VIEW, CHANGE, "messaging.view_message", "messaging.add_message", "contacts.view_contact"]
Status = Conversation.Status


def writes(contact, number, text: str, *, at=None, **kwargs) -> Message:
    """A message joined to its conversation as the inbound path does it (outbound: a reply)."""
    message = MessageFactory(
        contact=contact, phone_number=number, text=text, timestamp=at or timezone.now(), **kwargs
    )
    conversation_message_apply(message=message, reply=message.direction == Message.Direction.OUTBOUND)
    message.refresh_from_db()
    return message


def page_url(contact) -> str:
    return f"/admin/messaging/message/conversation/{contact.pk}/"


def notes_url(contact) -> str:
    return f"{page_url(contact)}notes/"


def api_url(conversation: Conversation, tail: str = "") -> str:
    return f"/api/v1/conversations/{conversation.pk}/{tail}"


def timeline_lines(html: str) -> list[str]:
    """The timeline's entries in page order: "message: <text>", "note: <text>", "activity: <line>"."""
    timeline = html[html.index('id="wharf-timeline"') :]
    starts = list(re.finditer(r'<div (?:id="(message|note)-\d+"|class="wharf-(activity)")', timeline))
    lines = []
    for start, after in zip(starts, [*starts[1:], None], strict=True):
        chunk = timeline[start.start() : after.start() if after else None]
        kind = start.group(1) or start.group(2)
        if kind == "activity":
            inner = chunk[: chunk.index("</div>")]
        else:
            inner = re.search(r'<div class="wharf-text">(.*?)</div>', chunk, flags=re.S).group(1)
        lines.append(f"{kind}: {' '.join(re.sub(r'<[^>]+>', ' ', inner).split())}")
    return lines


@pytest.fixture
def number():
    return PhoneNumberFactory()


@pytest.fixture
def contact():
    return ContactFactory(name="Ada Lovelace")


@pytest.fixture
def alice():
    return UserFactory(username="alice", is_staff=True, permissions=OPERATOR)


@pytest.fixture
def bob():
    return UserFactory(username="bob", is_staff=True, permissions=OPERATOR)


@pytest.fixture
def talk(contact, number) -> Conversation:
    """A conversation whose customer wrote an hour ago."""
    message = writes(contact, number, "Where is my parcel?", at=timezone.now() - timedelta(hours=1))
    return Conversation.objects.get(pk=message.conversation_id)


# -- the service ------------------------------------------------------------------------------------


def test_a_note_is_stored_audited_and_moves_the_conversation(talk, alice):
    before = Conversation.objects.get(pk=talk.pk).updated_at

    note = conversation_note_add(conversation=talk, body="  Called them: parcel is lost.\n", actor=alice)

    assert (note.conversation, note.author, note.body) == (talk, alice, "Called them: parcel is lost.")
    audit = AuditLog.objects.get(action="conversation.note")
    assert (audit.actor, audit.target_id, audit.changes) == (alice, str(talk.pk), {"note": note.pk})
    assert Conversation.objects.get(pk=talk.pk).updated_at > before


@pytest.mark.parametrize("body", ["", "   \n ", "x" * 4001, None])
def test_a_blank_or_too_long_note_is_refused_on_body(talk, alice, body):
    with pytest.raises(ValidationError) as refused:
        conversation_note_add(conversation=talk, body=body, actor=alice)

    assert list(refused.value.message_dict) == ["body"]
    assert not ConversationNote.objects.exists()
    assert not AuditLog.objects.filter(action="conversation.note").exists()


def test_a_note_of_exactly_the_limit_is_kept(talk, alice):
    assert len(conversation_note_add(conversation=talk, body="x" * 4000, actor=alice).body) == 4000


def test_the_wake_up_writes_one_audit_row_per_woken_conversation(contact, number, alice):
    other = PhoneNumberFactory()
    first = Conversation.objects.get(pk=writes(contact, number, "hi").conversation_id)
    second = Conversation.objects.get(pk=writes(contact, other, "hi").conversation_id)
    until = timezone.now() + timedelta(hours=1)
    for conversation in (first, second):
        conversation_status_set(
            conversation=conversation, status=Status.SNOOZED, snoozed_until=until, actor=alice
        )

    assert conversations_wake(now=until) == 2

    woken = AuditLog.objects.filter(action="conversation.wake")
    assert sorted(woken.values_list("target_id", flat=True)) == sorted([str(first.pk), str(second.pk)])
    assert {row.source for row in woken} == {AuditLog.Source.SYSTEM}
    assert all(row.changes == {"status": ["snoozed", "open"]} for row in woken)
    assert conversations_wake(now=until) == 0 and woken.count() == 2


# -- the timeline -----------------------------------------------------------------------------------


def test_the_timeline_merges_messages_notes_and_activity_by_time(
    admin_client, contact, number, talk, alice, bob
):
    conversation_assign(conversation=talk, assignee=bob, actor=alice)
    conversation_note_add(conversation=talk, body="VIP: be quick.", actor=alice)
    talk.refresh_from_db()
    conversation_assign(conversation=talk, assignee=None, actor=bob)
    labels_make("billing", "vip")
    conversation_labels_set(conversation=talk, labels=["billing", "vip"], actor=alice)
    conversation_priority_set(conversation=talk, priority="high", actor=alice)
    until = timezone.now() + timedelta(days=2)
    conversation_status_set(conversation=talk, status=Status.SNOOZED, snoozed_until=until, actor=bob)
    conversations_wake(now=until)
    audit_log_record(actor=alice, source="admin", action="conversation.read", target=talk)  # not activity
    audit_log_record(actor=alice, source="admin", action="conversation.shrug", target=talk)  # unknown
    audit_log_record(
        actor=alice, source="admin", action="conversation.status", target=talk, changes={}
    )  # bad
    talk.refresh_from_db()
    conversation_assign(conversation=talk, assignee=alice, actor=alice)
    conversation_status_set(conversation=talk, status=Status.RESOLVED, actor=alice)
    writes(contact, number, "Thanks, got it!", at=timezone.now() + timedelta(minutes=5))

    html = admin_client.get(page_url(contact)).text

    lines = timeline_lines(html)
    assert [line.split(" · ")[0] for line in lines] == [
        "message: Where is my parcel?",
        "activity: alice assigned this to bob",
        "note: VIP: be quick.",
        "activity: bob unassigned bob",
        "activity: alice set the labels: billing, vip",
        "activity: alice set the priority to high",
        f"activity: bob snoozed this until {timezone.localtime(until):%a %-d %b %H:%M}",
        "activity: woke up from snooze",
        "activity: alice self-assigned this",
        "activity: alice resolved this",
        "message: Thanks, got it!",
    ]
    assert '<span class="wharf-note-author">alice</span>' in html
    assert "Private note — not sent to the customer" in html


def test_pages_hold_the_activity_of_their_time_range_and_the_latest_what_came_after(
    contact, number, talk, alice, bob, api_client
):
    # given messages an hour ago and now, activity between them, a message in an hour, activity after it
    middle = writes(contact, number, "Any news?", at=timezone.now() - timedelta(minutes=1))
    conversation_assign(conversation=talk, assignee=bob, actor=alice)
    latest = writes(contact, number, "Hello?", at=timezone.now() + timedelta(minutes=1))
    AuditLog.objects.filter(action="conversation.assign").update(
        created_at=middle.timestamp + timedelta(seconds=1)
    )
    conversation_note_add(conversation=talk, body="after the latest message", actor=alice)
    ConversationNote.objects.update(created_at=latest.timestamp + timedelta(seconds=1))
    reader = api_client(VIEW)

    def page(**params) -> tuple[list[tuple[str, str]], int | None]:
        body = reader.get(api_url(talk), {"limit": 1, **params}).json()
        shown = []
        for entry in body["timeline"]:
            if entry["kind"] == "note":
                shown.append(("note", entry["note"]["body"]))
            else:
                shown.append((entry["kind"], entry[entry["kind"]]["text"]))
        return shown, body["before"]

    newest, before = page()
    assert newest == [("message", "Hello?"), ("note", "after the latest message")]
    middle_page, before = page(before=before)
    assert middle_page == [("message", "Any news?"), ("activity", "alice assigned this to bob")]
    oldest, before = page(before=before)
    assert (oldest, before) == ([("message", "Where is my parcel?")], None)


def test_the_page_costs_the_same_queries_whatever_the_number_of_entries(
    admin_client, contact, number, talk, alice, bob, django_assert_max_num_queries
):
    def add(count: int) -> None:
        for i in range(count):
            writes(contact, number, f"question {i}")
            writes(contact, number, f"answer {i}", direction="outbound")
            conversation_note_add(conversation=talk, body=f"note {i}", actor=alice)
            talk.refresh_from_db()
            conversation_assign(
                conversation=talk, assignee=bob if talk.assignee_id != bob.pk else alice, actor=alice
            )
            labels_make(f"l{i}")
            conversation_labels_set(conversation=talk, labels=[f"l{i}"], actor=bob)

    add(1)
    admin_client.get(page_url(contact))  # sessions, permissions, content types and the like, once
    with django_assert_max_num_queries(40) as few:
        admin_client.get(page_url(contact))
    budget = len(few.captured_queries)  # before the next request empties the connection's log
    add(15)
    admin_client.get(page_url(contact))  # the new messages read, as the first ones were

    with django_assert_max_num_queries(budget):
        response = admin_client.get(page_url(contact))

    assert response.text.count('class="wharf-note"') == 16
    assert response.text.count('class="wharf-activity"') == 32


def test_the_api_timeline_costs_the_same_queries_whatever_the_number_of_entries(
    contact, number, talk, alice, bob, api_client, django_assert_max_num_queries
):
    reader = api_client(VIEW)
    reader.get(api_url(talk))

    def add(count: int) -> None:
        for i in range(count):
            writes(contact, number, f"question {i}")
            conversation_note_add(conversation=talk, body=f"note {i}", actor=alice)
            conversation_priority_set(conversation=talk, priority="high" if i % 2 else "low", actor=bob)

    add(1)
    with django_assert_max_num_queries(30) as few:
        reader.get(api_url(talk))
    add(15)

    with django_assert_max_num_queries(len(few.captured_queries)):
        body = reader.get(api_url(talk)).json()

    assert [entry["kind"] for entry in body["timeline"]].count("note") == 16


def test_a_campaign_send_carries_its_campaign_linked_for_those_who_may_view_campaigns(
    client, admin_client, contact, number, talk
):
    sent = writes(contact, number, "Spring offer: 20% off", direction="outbound")
    campaign = Campaign.objects.create(name="Spring sale", phone_number=number)
    Recipient.objects.create(campaign=campaign, contact=contact, address=contact.phone, message=sent)
    writes(contact, number, "An answer", direction="outbound")  # an operator's: no tag

    html = admin_client.get(page_url(contact)).text

    assert html.count("Campaign: ") == 1
    assert f'Campaign: <a href="/admin/campaigns/campaign/{campaign.pk}/change/">Spring sale</a>' in html
    client.force_login(UserFactory(is_staff=True, permissions=OPERATOR))
    html = client.get(page_url(contact)).text
    assert "Campaign: Spring sale" in html and "/admin/campaigns/campaign/" not in html


# -- the live token ---------------------------------------------------------------------------------


def test_a_note_and_an_action_move_the_live_token(client, contact, talk, alice, bob):
    client.force_login(alice)
    changes = f"{page_url(contact)}changes/"
    token = client.get(page_url(contact)).context["token"]
    assert client.get(changes, {"since": token}).json()["changed"] is False

    conversation_note_add(conversation=talk, body="moved?", actor=bob)
    moved = client.get(changes, {"since": token}).json()
    assert moved["changed"] is True
    assert "moved?" in client.get(page_url(contact), {"fragment": "timeline"}).text

    talk.refresh_from_db()
    conversation_assign(conversation=talk, assignee=alice, actor=bob)
    assert client.get(changes, {"since": moved["token"]}).json()["changed"] is True
    assert "bob assigned this to alice" in client.get(page_url(contact), {"fragment": "timeline"}).text


# -- the admin's note box ---------------------------------------------------------------------------


def test_an_operator_adds_a_note_from_the_conversation_page(client, contact, number, talk, alice):
    client.force_login(alice)
    page = client.get(page_url(contact), {"sender": number.pk}).text
    assert 'aria-label="Private note"' in page and "Add private note" in page

    response = client.post(notes_url(contact), {"phone_number": number.pk, "body": "Refund\r\napproved."})

    note = ConversationNote.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{page_url(contact)}?sender={number.pk}#note-{note.pk}"
    assert (note.conversation, note.author, note.body) == (talk, alice, "Refund\napproved.")
    html = client.get(response["Location"]).text
    assert f'id="note-{note.pk}"' in html and "Refund<br>approved." in html
    assert "Private note — not sent to the customer" in html


@pytest.mark.parametrize(("body", "error"), [("   ", "Write the note first."), ("x" * 4001, "At most 4000")])
def test_a_refused_note_is_shown_as_a_form_error_with_what_was_typed(
    client, contact, number, talk, alice, body, error
):
    client.force_login(alice)

    response = client.post(notes_url(contact), {"phone_number": number.pk, "body": body})

    assert response.status_code == 200
    assert 'class="errorlist wharf-note-errors"' in response.text and error in response.text
    assert body.strip() in response.text
    assert not ConversationNote.objects.exists()


def test_without_a_conversation_on_the_number_the_page_says_so_and_adds_nothing(client, contact, talk, alice):
    other = PhoneNumberFactory()
    client.force_login(alice)

    page = client.get(page_url(contact), {"sender": other.pk}).text
    response = client.post(notes_url(contact), {"phone_number": other.pk, "body": "hello"})

    assert "There is no conversation with this contact on this number yet" in page
    assert "Add private note" not in page
    assert response.status_code == 200 and "a note needs one" in response.text
    assert not ConversationNote.objects.exists() and Conversation.objects.count() == 1


def test_a_note_needs_change_conversation_and_a_number_the_operator_sees(client, contact, number, talk):
    reader = UserFactory(is_staff=True, permissions=["messaging.view_message", VIEW])
    client.force_login(reader)
    assert "Add private note" not in client.get(page_url(contact)).text
    assert client.post(notes_url(contact), {"phone_number": number.pk, "body": "x"}).status_code == 403
    assert client.get(notes_url(contact)).status_code == 405

    number.groups.set([Group.objects.create(name="elsewhere")])
    client.force_login(UserFactory(is_staff=True, permissions=OPERATOR))
    assert client.post(notes_url(contact), {"phone_number": number.pk, "body": "x"}).status_code == 404
    assert not ConversationNote.objects.exists()


# -- the API ----------------------------------------------------------------------------------------


def test_the_api_lists_and_adds_notes(api_client, talk, alice):
    conversation_note_add(conversation=talk, body="first", actor=alice)
    changer = api_client(VIEW, CHANGE)

    created = changer.post(api_url(talk, "notes/"), {"body": "second"}, format="json")
    listed = api_client(VIEW).get(api_url(talk, "notes/"))

    assert created.status_code == 201
    assert created.json()["body"] == "second"
    assert created.json()["author"] == {"id": changer.user.pk, "username": changer.user.username}
    assert listed.status_code == 200
    assert [note["body"] for note in listed.json()["results"]] == ["first", "second"]
    assert listed.json()["results"][0]["author"]["username"] == "alice"
    assert AuditLog.objects.filter(action="conversation.note", source="api", actor=changer.user).count() == 1


@pytest.mark.parametrize("payload", [{}, {"body": ""}, {"body": "  "}, {"body": "x" * 4001}, {"body": ["x"]}])
def test_a_bad_note_is_400_naming_body(api_client, talk, payload):
    response = api_client(VIEW, CHANGE).post(api_url(talk, "notes/"), payload, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["body"]
    assert not ConversationNote.objects.exists()


def test_notes_need_their_permissions_and_a_conversation_the_user_sees(api_client, talk, number):
    assert api_client(CHANGE).get(api_url(talk, "notes/")).status_code == 403
    assert api_client(VIEW).post(api_url(talk, "notes/"), {"body": "x"}, format="json").status_code == 403
    assert api_client(VIEW, CHANGE).get(api_url(Conversation(pk=talk.pk + 1000), "notes/")).status_code == 404

    number.groups.set([Group.objects.create(name="elsewhere")])
    outsider = api_client(VIEW, CHANGE)
    assert outsider.get(api_url(talk, "notes/")).status_code == 404
    assert outsider.post(api_url(talk, "notes/"), {"body": "x"}, format="json").status_code == 404
    assert not ConversationNote.objects.exists()


def test_the_api_timeline_has_kinds_and_keeps_its_messages(api_client, contact, number, talk, alice, bob):
    conversation_note_add(conversation=talk, body="checking", actor=alice)
    until = timezone.now() + timedelta(hours=3)
    conversation_status_set(conversation=talk, status=Status.SNOOZED, snoozed_until=until, actor=alice)

    body = api_client(VIEW).get(api_url(talk)).json()

    assert [entry["kind"] for entry in body["timeline"]] == ["message", "note", "activity"]
    message, note, activity = body["timeline"]
    assert message["message"]["text"] == "Where is my parcel?" and message["note"] is None
    assert note["note"]["body"] == "checking" and note["note"]["author"]["username"] == "alice"
    assert activity["activity"]["action"] == "conversation.status"
    assert activity["activity"]["text"] == "alice snoozed this"
    assert activity["activity"]["actor"]["username"] == "alice"
    assert activity["activity"]["snoozed_until"] is not None
    assert [m["text"] for m in body["messages"]] == ["Where is my parcel?"]
