"""The inbox's report: medians of first responses and resolutions, conversations handled, per day and
per operator or number, over a constructed history; who sees which figures; the admin page."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from contacts.models import Contact
from core.audit import audit_log_record
from core.models import AuditLog
from messaging.bulk import BulkEntry, TemplateBatch, template_messages_queue
from messaging.conversations import conversation_message_apply, conversation_status_set
from messaging.models import Conversation, Message, PhoneNumber
from messaging.outbound.send import message_send
from messaging.reports import Figures, inbox_report
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory

pytestmark = pytest.mark.django_db

REPORTS = "/admin/messaging/conversation/reports/"
SINCE = datetime(2024, 3, 1, tzinfo=UTC)
UNTIL = datetime(2024, 3, 4, tzinfo=UTC)
MAR_1, MAR_2, MAR_3 = (SINCE.date() + timedelta(days=n) for n in range(3))


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A time in 2024: day 1-3 of March, or 29 February with day 0, or earlier with negative days."""
    return SINCE + timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second)


def customer_writes(contact: Contact, number: PhoneNumber, when: datetime, kind: str = "text") -> None:
    message = MessageFactory(contact=contact, phone_number=number, timestamp=when, type=kind)
    conversation_message_apply(message=message)


def operator_replies(operator, contact: Contact, number: PhoneNumber, when: datetime) -> None:
    """A reply as the send service leaves it (its row, the conversation answered, its audit row)."""
    message = MessageFactory(
        contact=contact, phone_number=number, timestamp=when, direction="outbound", created_by=operator
    )
    conversation_message_apply(message=message, reply=True)
    audit_log_record(actor=operator, source="admin", action="message.send", target=message)


def campaign_sends(manager, contact: Contact, number: PhoneNumber, when: datetime) -> None:
    batch = TemplateBatch(phone_number=number, name="offer", language="en", keys=(), text="Our offer")
    (pk,) = template_messages_queue(
        batch=batch,
        entries=[BulkEntry(contact_id=contact.pk, to=contact.phone, values={})],
        created_by=manager,
    )
    Message.objects.filter(pk=pk).update(timestamp=when)


def resolves(operator, contact: Contact, number: PhoneNumber, when: datetime) -> None:
    """Through the service; its audit row then dated `when`."""
    conversation = Conversation.objects.get(contact=contact, phone_number=number)
    conversation_status_set(conversation=conversation, status="resolved", actor=operator)
    AuditLog.objects.filter(pk=AuditLog.objects.latest("id").pk).update(created_at=when)


@pytest.fixture
def history():
    """Two numbers of two teams, two operators, four conversations over three days (see the test)."""
    team_a, team_b = Group.objects.create(name="team-a"), Group.objects.create(name="team-b")
    a = PhoneNumberFactory(display_phone_number="15550000001")
    b = PhoneNumberFactory(display_phone_number="15550000002")
    a.groups.set([team_a])
    b.groups.set([team_b])
    olivia = UserFactory(username="olivia", is_staff=True, permissions=["messaging.view_conversation"])
    paul = UserFactory(username="paul", is_staff=True, permissions=["messaging.view_conversation"])
    olivia.groups.add(team_a, team_b)
    paul.groups.add(team_a)
    ada, bea, cy, dee = (ContactFactory(name=name) for name in ("Ada", "Bea", "Cy", "Dee"))

    # Ada (A): waiting since before the period; a quiet reaction and a second reply count nothing.
    customer_writes(ada, a, at(0, 23, 50))
    operator_replies(olivia, ada, a, at(1, 0, 10))  # olivia: 20 min
    customer_writes(ada, a, at(1, 1, 0))
    customer_writes(ada, a, at(1, 1, 1), kind="reaction")
    customer_writes(ada, a, at(1, 1, 5))
    operator_replies(paul, ada, a, at(1, 1, 15))  # paul: 15 min
    operator_replies(paul, ada, a, at(1, 1, 16))
    resolves(olivia, ada, a, at(1, 2, 0))  # olivia: 2 h 10 min since the first message

    # Bea (A): resolved without a reply, then a new wait that starts after the resolution.
    customer_writes(bea, a, at(1, 10, 0))
    operator_replies(olivia, bea, a, at(1, 10, 5))  # olivia: 5 min
    customer_writes(bea, a, at(2, 9, 0))
    resolves(olivia, bea, a, at(2, 9, 30))  # olivia: 23 h 30 min since 1 March 10:00
    customer_writes(bea, a, at(2, 10, 0))
    operator_replies(paul, bea, a, at(2, 10, 2))  # paul: 2 min
    resolves(paul, bea, a, at(2, 11, 0))  # paul: 1 h

    # Cy (B): a campaign message by olivia is nobody's reply.
    customer_writes(cy, b, at(1, 12, 0))
    campaign_sends(olivia, cy, b, at(1, 12, 10))
    operator_replies(paul, cy, b, at(1, 12, 30))  # paul: 30 min
    resolves(paul, cy, b, at(1, 13, 0))  # paul: 1 h

    # Dee (A): resolved long before; the period's resolution counts from the new message.
    customer_writes(dee, a, at(-9, 8, 0))
    resolves(olivia, dee, a, at(-9, 9, 0))
    customer_writes(dee, a, at(3, 8, 0))
    operator_replies(olivia, dee, a, at(3, 8, 0, 40))  # olivia: 40 s
    resolves(olivia, dee, a, at(3, 9, 0))  # olivia: 1 h

    # Outside the period: nothing of it counts.
    customer_writes(dee, a, at(4, 8, 0))
    operator_replies(olivia, dee, a, at(4, 8, 1))
    return {"a": a, "b": b, "olivia": olivia, "paul": paul, "team_a": team_a}


def report(user, group_by: str):
    return inbox_report(since=SINCE, until=UNTIL, user=user, group_by=group_by)


def by_label(found) -> dict:
    return {row.label: row for row in found.rows}


def test_medians_per_operator_per_day_and_for_the_team(history, admin_user):
    found = report(admin_user, "operator")

    assert found.days == [MAR_1, MAR_2, MAR_3]
    rows = by_label(found)
    assert list(rows) == ["olivia", "paul"]  # most handled first, then by name
    assert rows["olivia"].total == Figures(
        handled=3, first_response_s=300, resolution_s=7800, first_responses=3, resolutions=3
    )
    assert rows["paul"].total == Figures(
        handled=3, first_response_s=900, resolution_s=3600, first_responses=3, resolutions=2
    )
    assert rows["olivia"].by_day == {
        MAR_1: Figures(handled=2, first_response_s=750, resolution_s=7800, first_responses=2, resolutions=1),
        MAR_2: Figures(
            handled=1, first_response_s=None, resolution_s=84600, first_responses=0, resolutions=1
        ),
        MAR_3: Figures(handled=1, first_response_s=40, resolution_s=3600, first_responses=1, resolutions=1),
    }
    assert found.team == Figures(
        handled=4, first_response_s=600, resolution_s=3600, first_responses=6, resolutions=5
    )
    assert found.team_by_day == {
        MAR_1: Figures(handled=3, first_response_s=1050, resolution_s=5700, first_responses=4, resolutions=2),
        MAR_2: Figures(handled=1, first_response_s=120, resolution_s=44100, first_responses=1, resolutions=2),
        MAR_3: Figures(handled=1, first_response_s=40, resolution_s=3600, first_responses=1, resolutions=1),
    }


def test_medians_per_number(history, admin_user):
    rows = by_label(report(admin_user, "number"))

    assert rows["15550000001"].total == Figures(
        handled=3, first_response_s=300, resolution_s=5700, first_responses=5, resolutions=4
    )
    assert rows["15550000002"].total == Figures(
        handled=1, first_response_s=1800, resolution_s=3600, first_responses=1, resolutions=1
    )


def test_an_operator_sees_only_the_figures_of_the_numbers_they_see(history):
    paul = history["paul"]  # team A only

    assert list(by_label(report(paul, "number"))) == ["15550000001"]
    rows = by_label(report(paul, "operator"))
    assert rows["paul"].total == Figures(
        handled=2, first_response_s=510, resolution_s=3600, first_responses=2, resolutions=1
    )
    assert report(paul, "operator").team.first_response_s == 300


def test_a_reply_through_the_send_service_counts(admin_user):
    number = PhoneNumberFactory()
    contact = ContactFactory(phone="+447700900123", wa_id="447700900123", last_inbound_at=timezone.now())
    olivia = UserFactory(username="olivia", is_staff=True)
    customer_writes(contact, number, timezone.now() - timedelta(minutes=3))
    message_send(
        phone_number=number,
        contact=contact,
        kind="text",
        content={"body": "Hi"},
        actor=olivia,
        source="admin",
    )
    inbound, reply = Message.objects.order_by("timestamp")

    now = timezone.now()
    found = inbox_report(
        since=now - timedelta(days=1), until=now + timedelta(minutes=1), user=admin_user, group_by="operator"
    )

    (row,) = found.rows
    assert (row.label, row.total.handled) == ("olivia", 1)
    assert row.total.first_response_s == pytest.approx((reply.timestamp - inbound.timestamp).total_seconds())


def test_group_by_is_operator_or_number(admin_user):
    with pytest.raises(ValueError):
        report(admin_user, "label")


# -- the admin page --------------------------------------------------------------------------------


@pytest.fixture
def recent():
    """Yesterday at 9: Ada waited 4 min 10 s for olivia on number A, then 2 h 3 min to be resolved;
    Cy, on number B (team B), waited 1 min for paul."""
    team_b = Group.objects.create(name="team-b")
    a = PhoneNumberFactory(display_phone_number="15550000001")
    b = PhoneNumberFactory(display_phone_number="15550000002")
    b.groups.set([team_b])
    olivia = UserFactory(username="olivia", is_staff=True, permissions=["messaging.view_conversation"])
    paul = UserFactory(username="paul", is_staff=True, permissions=["messaging.view_conversation"])
    paul.groups.add(team_b)
    ada, cy = ContactFactory(name="Ada"), ContactFactory(name="Cy")
    start = datetime.combine(
        timezone.localdate() - timedelta(days=1), time(9), tzinfo=timezone.get_current_timezone()
    )
    customer_writes(ada, a, start)
    operator_replies(olivia, ada, a, start + timedelta(minutes=4, seconds=10))
    resolves(olivia, ada, a, start + timedelta(hours=2, minutes=3))
    customer_writes(cy, b, start)
    operator_replies(paul, cy, b, start + timedelta(minutes=1))
    return {"olivia": olivia, "paul": paul}


def test_the_page_shows_the_chart_and_the_tables(admin_client, recent):
    response = admin_client.get(REPORTS)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="wharf-bar"') == 30
    assert 'class="wharf-line"' in html
    lines = {line.label: line for line in response.context["lines"]}
    assert (lines["olivia"].handled, lines["olivia"].first_response, lines["olivia"].resolution) == (
        1,
        "4m 10s",
        "2h 3m",
    )
    assert (lines["paul"].first_response, lines["paul"].resolution) == ("1m", "—")
    assert "Conversations handled" in html and "First response" in html  # the definitions


def test_the_page_toggles_numbers_and_ranges(admin_client, recent):
    response = admin_client.get(REPORTS, {"by": "number", "days": "7"})

    assert [line.label for line in response.context["lines"]] == ["15550000001", "15550000002"]
    assert response.content.decode().count('class="wharf-bar"') == 7
    assert admin_client.get(REPORTS, {"days": "5", "by": "x"}).context["report"].group_by == "operator"
    assert len(admin_client.get(REPORTS, {"days": "5"}).context["report"].days) == 30


def test_an_operator_sees_the_figures_of_the_numbers_they_see(client, recent):
    client.force_login(recent["olivia"])  # not in team B

    response = client.get(REPORTS, {"by": "number"})

    assert [line.label for line in response.context["lines"]] == ["15550000001"]
    assert "15550000002" not in response.content.decode()


def test_the_page_needs_the_permission_to_view_conversations(client, db):
    client.force_login(UserFactory(is_staff=True))

    assert client.get(REPORTS).status_code == 403


def test_the_table_downloads_as_csv(admin_client, recent):
    response = admin_client.get(REPORTS, {"format": "csv"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = response.content.decode().splitlines()
    assert rows[0] == (
        "day,operator,conversations_handled,median_first_response_s,median_resolution_s,first_responses,resolutions"
    )
    assert rows[1:3] == ["total,olivia,1,250,7380,1,1", "total,paul,1,60,,1,0"]
    day = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert f"{day},olivia,1,250,7380,1,1" in rows


def test_the_inbox_links_to_the_reports(admin_client):
    response = admin_client.get("/admin/messaging/conversation/")

    assert f'href="{REPORTS}"' in response.content.decode()
