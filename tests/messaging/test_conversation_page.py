"""The conversation page as an operator's workplace: its header's controls (assignee, status, snooze,
labels, priority) through their admin URLs, the contact panel beside the timeline, and the catalogue
of labels (its admin, the services' refusal of other names, the catalogue made from labels in use)."""

import importlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from contacts.models import Contact
from core.models import AuditLog
from messaging.conversations import (
    conversation_assign,
    conversation_labels_set,
    conversation_status_set,
    phone_number_viewers_q,
    phone_number_visible,
)
from messaging.models import Conversation, Label
from tests.factories import LabelFactory, PhoneNumberFactory, UserFactory, labels_make
from tests.messaging.test_inbox import INBOX, conversation_make

pytestmark = pytest.mark.django_db

Status = Conversation.Status
catalogue = importlib.import_module("messaging.migrations.0011_label")


@pytest.fixture
def number():
    return PhoneNumberFactory(display_phone_number="15550001111")


@pytest.fixture
def ada(number) -> Conversation:
    return conversation_make(name="Ada Lovelace", number=number)


def page_url(conversation: Conversation) -> str:
    contact, number = conversation.contact_id, conversation.phone_number_id
    return f"/admin/messaging/message/conversation/{contact}/?sender={number}"


def control_url(conversation: Conversation, control: str) -> str:
    return f"/admin/messaging/conversation/{conversation.pk}/{control}/"


def act(client, conversation: Conversation, control: str, data: dict) -> list[str]:
    """POST one header control and follow its redirect back to the conversation page; returns the
    messages the page shows ("success: ..." / "error: ...")."""
    response = client.post(control_url(conversation, control), data, follow=True)
    assert response.redirect_chain == [(page_url(conversation), 302)]
    return [f"{message.level_tag}: {message.message}" for message in response.context["messages"]]


def fresh(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


def header(html: str) -> str:
    return html.split('id="conversation-header"', 1)[1].split("</header>", 1)[0]


def panel(html: str) -> str:
    return html.split('id="content-related"', 1)[1].split("</aside>", 1)[0]


# -- the header -------------------------------------------------------------------------------------


def test_the_header_shows_the_conversation_and_its_controls(admin_client, admin_user, ada):
    labels_make("vip", "refund")
    conversation_labels_set(conversation=ada, labels=["vip"], actor=None)

    html = header(admin_client.get(page_url(ada)).text)

    assert "Ada Lovelace" in html and "via 15550001111" in html
    assert 'class="wharf-status wharf-status-open"' in html
    for control in ("assign", "status", "snooze", "labels", "priority"):
        assert f'action="{control_url(ada, control)}"' in html
    assert "Assign to me" in html and f'<option value="{admin_user.pk}">admin</option>' in html
    assert 'value="resolved"' in html and ">Resolve<" in html and ">Mark pending<" in html
    assert 'name="labels" value="vip" checked' in html and 'name="labels" value="refund">' in html
    assert "1 hour" in html and "Tomorrow, 09:00" in html and "Next Monday, 09:00" in html
    assert 'type="datetime-local"' in html
    assert 'class="wharf-label wharf-label-blue"' in html  # the conversation's label, in its colour


def test_a_contact_without_a_conversation_with_the_number_gets_a_hint_and_no_controls(admin_client, ada):
    other = PhoneNumberFactory()
    url = f"/admin/messaging/message/conversation/{ada.contact_id}/?sender={other.pk}"

    html = header(admin_client.get(url).text)

    assert "No conversation with this number yet" in html
    assert "<form" not in html


def test_who_may_view_but_not_change_conversations_sees_the_state_without_controls(client, ada):
    viewer = UserFactory(is_staff=True, permissions=["messaging.view_message", "messaging.view_conversation"])
    client.force_login(viewer)

    html = header(client.get(page_url(ada)).text)

    assert "wharf-status-open" in html and "<form" not in html
    assert client.post(control_url(ada, "status"), {"status": "resolved"}).status_code == 403
    assert fresh(ada).status == Status.OPEN


def test_a_control_on_a_conversation_the_operator_does_not_see_is_404(client, ada, number):
    number.groups.set([Group.objects.create(name="team-a")])
    outsider = UserFactory(is_staff=True, permissions=["messaging.change_conversation"])
    client.force_login(outsider)

    assert client.post(control_url(ada, "status"), {"status": "resolved"}).status_code == 404
    assert fresh(ada).status == Status.OPEN


def test_a_control_answers_only_posts(admin_client, ada):
    assert admin_client.get(control_url(ada, "status")).status_code == 405


# -- assign -----------------------------------------------------------------------------------------


def test_assign_to_me_then_to_a_colleague_then_to_nobody(admin_client, admin_user, ada):
    colleague = UserFactory(username="grace", is_staff=True)

    assert act(admin_client, ada, "assign", {"assignee": admin_user.pk, "seen": ""}) == [
        "success: Assigned to admin."
    ]
    assert fresh(ada).assignee == admin_user
    assert act(admin_client, ada, "assign", {"assignee": colleague.pk, "seen": admin_user.pk}) == [
        "success: Assigned to grace."
    ]
    assert act(admin_client, ada, "assign", {"assignee": "", "seen": colleague.pk}) == [
        "success: Unassigned."
    ]
    assert fresh(ada).assignee is None
    changes = AuditLog.objects.filter(action="conversation.assign").order_by("id")
    assert [row.changes["assignee"] for row in changes] == [
        [None, admin_user.pk],
        [admin_user.pk, colleague.pk],
        [colleague.pk, None],
    ]
    # the page now offers "Assign to me" again, and the select shows nobody
    assert "Assign to me" in header(admin_client.get(page_url(ada)).text)


def test_assigning_to_someone_who_cannot_see_the_number_is_a_form_error_and_changes_nothing(
    admin_client, ada, number
):
    team_a, team_b = Group.objects.create(name="team-a"), Group.objects.create(name="team-b")
    number.groups.set([team_a])
    member = UserFactory(username="member", is_staff=True)
    member.groups.add(team_a)
    outsider = UserFactory(username="outsider", is_staff=True)
    outsider.groups.add(team_b)

    html = header(admin_client.get(page_url(ada)).text)
    assert ">member</option>" in html and "outsider" not in html  # only who sees the number is offered

    assert act(admin_client, ada, "assign", {"assignee": outsider.pk, "seen": ""}) == [
        "error: Assignee: Choose someone who sees this number's conversations."
    ]
    assert fresh(ada).assignee is None
    assert not AuditLog.objects.filter(action="conversation.assign").exists()


def test_an_assignment_conflict_says_who_took_it(admin_client, admin_user, ada):
    grace = UserFactory(username="grace", is_staff=True)
    page = admin_client.get(page_url(ada)).text  # the operator sees it unassigned
    assert 'name="seen" value=""' in header(page)
    conversation_assign(conversation=ada, assignee=grace, actor=grace)  # meanwhile, grace takes it

    messages = act(admin_client, ada, "assign", {"assignee": admin_user.pk, "seen": ""})

    assert messages == ["error: Assignee: Someone else changed the assignee meanwhile: now grace."]
    assert fresh(ada).assignee == grace


# -- status and snooze ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "status", "said"),
    [
        (Status.OPEN, Status.RESOLVED, "Resolved."),
        (Status.RESOLVED, Status.OPEN, "Reopened."),
        (Status.OPEN, Status.PENDING, "Marked pending."),
        (Status.SNOOZED, Status.OPEN, "Reopened."),
    ],
)
def test_resolve_reopen_and_mark_pending(admin_client, number, before, status, said):
    snoozed_until = timezone.now() + timedelta(hours=2) if before == Status.SNOOZED else None
    conversation = conversation_make(name="Ada", number=number, status=before, snoozed_until=snoozed_until)

    assert act(admin_client, conversation, "status", {"status": status}) == [f"success: {said}"]

    changed = fresh(conversation)
    assert (changed.status, changed.snoozed_until) == (status, None)
    assert AuditLog.objects.get(action="conversation.status").changes["status"] == [before, status]


def test_the_status_buttons_follow_the_status(admin_client, number):
    resolved = conversation_make(name="Ada", number=number, status=Status.RESOLVED)
    html = header(admin_client.get(page_url(resolved)).text)
    assert ">Reopen<" in html and ">Resolve<" not in html and ">Mark pending<" not in html


def test_snoozing_is_refused_anything_but_open_resolved_or_pending_as_a_status(admin_client, ada):
    assert act(admin_client, ada, "status", {"status": "snoozed"})[0].startswith("error: Status: ")
    assert fresh(ada).status == Status.OPEN


def test_snooze_for_an_hour(admin_client, ada):
    before = timezone.now()

    [said] = act(admin_client, ada, "snooze", {"until": "hour"})

    changed = fresh(ada)
    assert changed.status == Status.SNOOZED
    assert before + timedelta(hours=1) <= changed.snoozed_until <= timezone.now() + timedelta(hours=1)
    assert said.startswith("success: Snoozed until ") and said.endswith(" UTC.")


@pytest.mark.parametrize("choice", ["tomorrow", "monday"])
def test_snooze_until_nine_tomorrow_or_next_monday(admin_client, ada, choice):
    act(admin_client, ada, "snooze", {"until": choice})

    until = timezone.localtime(fresh(ada).snoozed_until)
    today = timezone.localdate()
    assert (until.hour, until.minute) == (9, 0)
    if choice == "tomorrow":
        assert until.date() == today + timedelta(days=1)
    else:
        assert until.weekday() == 0 and 1 <= (until.date() - today).days <= 7


def test_snooze_until_a_chosen_time(admin_client, ada):
    when = timezone.localtime() + timedelta(days=3)
    act(admin_client, ada, "snooze", {"until": "custom", "custom": when.strftime("%Y-%m-%dT%H:%M")})

    assert fresh(ada).snoozed_until == when.replace(second=0, microsecond=0)


@pytest.mark.parametrize(
    ("custom", "said"),
    [
        (
            (timezone.localtime() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "A snooze ends in the future.",
        ),
        ("", "Say until when."),
        ("next week", "Enter a valid date/time."),
    ],
)
def test_a_snooze_in_the_past_or_without_a_time_is_refused(admin_client, ada, custom, said):
    assert act(admin_client, ada, "snooze", {"until": "custom", "custom": custom}) == [
        f"error: Snooze: {said}"
    ]

    changed = fresh(ada)
    assert (changed.status, changed.snoozed_until) == (Status.OPEN, None)
    assert not AuditLog.objects.filter(action="conversation.status").exists()


# -- labels and priority ----------------------------------------------------------------------------


def test_labels_are_ticked_from_the_catalogue(admin_client, ada):
    labels_make("vip", "refund", "spam")

    assert act(admin_client, ada, "labels", {"labels": ["vip", "refund"]}) == [
        "success: Labels: vip, refund."
    ]
    assert fresh(ada).labels == ["vip", "refund"]
    assert act(admin_client, ada, "labels", {}) == ["success: Labels removed."]
    assert fresh(ada).labels == []


def test_an_unknown_label_is_refused_and_nothing_changes(admin_client, ada):
    labels_make("vip")
    conversation_labels_set(conversation=ada, labels=["vip"], actor=None)

    assert act(admin_client, ada, "labels", {"labels": ["vip", "nope"]}) == [
        "error: Labels: Unknown label: nope."
    ]
    assert fresh(ada).labels == ["vip"]


def test_priority(admin_client, ada):
    assert act(admin_client, ada, "priority", {"priority": "high"}) == ["success: Priority: high."]
    assert fresh(ada).priority == Conversation.Priority.HIGH
    assert act(admin_client, ada, "priority", {"priority": "huge"})[0].startswith("error: Priority: ")
    assert fresh(ada).priority == Conversation.Priority.HIGH


# -- the contact panel ------------------------------------------------------------------------------


def contact_details(conversation: Conversation) -> Contact:
    Contact.objects.filter(pk=conversation.contact_id).update(
        tags=["customer", "berlin"],
        attributes={"plan": "gold", "city": "Berlin"},
        email="ada@example.com",
        sms_opted_out_at=timezone.now(),
        sms_opt_out_source="STOP",
    )
    return Contact.objects.get(pk=conversation.contact_id)


def test_the_panel_shows_the_contact_their_reach_other_conversations_and_campaigns(admin_client, ada):
    contact = contact_details(ada)
    elsewhere = conversation_make(name="x", number=PhoneNumberFactory(display_phone_number="15550002222"))
    Conversation.objects.filter(pk=elsewhere.pk).update(contact=contact, status=Status.RESOLVED)
    campaigns = [
        Campaign.objects.create(
            name=f"Campaign {n}",
            channel=Campaign.Channel.EMAIL,
            started_at=timezone.now() - timedelta(days=9 - n),
        )
        for n in range(7)
    ]
    for campaign in campaigns:
        Recipient.objects.create(
            campaign=campaign,
            contact=contact,
            address=contact.email,
            status=Recipient.Status.SENT,
            sent_at=campaign.started_at,
        )
    sms = Campaign.objects.create(name="Text blast", channel=Campaign.Channel.SMS, started_at=timezone.now())
    Recipient.objects.create(
        campaign=sms, contact=contact, address=contact.phone, status=Recipient.Status.SKIPPED
    )

    html = panel(admin_client.get(page_url(ada)).text)

    assert "Ada Lovelace" in html and contact.phone in html and "ada@example.com" in html
    assert "customer" in html and "berlin" in html
    assert "<dt>plan</dt><dd>gold</dd>" in html and "<dt>city</dt><dd>Berlin</dd>" in html
    assert f'href="/admin/contacts/contact/{contact.pk}/change/"' in html
    channels = html.split("wharf-panel-channels", 1)[1].split("</section>", 1)[0]
    assert "wharf-channel-reachable" in channels and "wharf-channel-opted-out" in channels
    assert "opted out" in channels and "STOP" in channels
    others = html.split("wharf-panel-others", 1)[1].split("</section>", 1)[0]
    assert f"?sender={elsewhere.phone_number_id}" in others and "via 15550002222" in others
    assert "wharf-status-resolved" in others
    recent = html.split("wharf-panel-campaigns", 1)[1].split("</section>", 1)[0]
    shown = [line.split("</a>")[0].split(">")[-1] for line in recent.split("<li>")[1:]]
    assert shown == ["Text blast", "Campaign 6", "Campaign 5", "Campaign 4", "Campaign 3"]  # the latest 5
    assert "skipped" in recent and "sent" in recent


def test_without_the_view_contact_permission_the_panel_shows_only_name_and_number(client, ada):
    contact_details(ada)
    campaign = Campaign.objects.create(name="Spring sale", channel=Campaign.Channel.EMAIL)
    Recipient.objects.create(campaign=campaign, contact_id=ada.contact_id, address="ada@example.com")
    operator = UserFactory(
        is_staff=True, permissions=["messaging.view_message", "messaging.view_conversation"]
    )
    client.force_login(operator)

    html = panel(client.get(page_url(ada)).text)

    assert "Ada Lovelace" in html
    for private in ("ada@example.com", "berlin", "gold", "STOP", "Spring sale", "/admin/contacts/contact/"):
        assert private not in html


# -- the catalogue ----------------------------------------------------------------------------------


def test_labels_are_managed_in_the_admin_and_conversations_follow(admin_client, ada):
    response = admin_client.post(
        "/admin/messaging/label/add/", {"name": "vip", "colour": "red", "description": "Big customers"}
    )
    assert response.status_code == 302
    vip = Label.objects.get(name="vip")
    assert (vip.colour, vip.description) == ("red", "Big customers")
    conversation_labels_set(conversation=ada, labels=["vip"], actor=None)

    refused = admin_client.post("/admin/messaging/label/add/", {"name": "Not a label", "colour": "red"})
    assert refused.status_code == 200 and "errorlist" in refused.text

    renamed = admin_client.post(
        f"/admin/messaging/label/{vip.pk}/change/", {"name": "gold", "colour": "orange", "description": ""}
    )
    assert renamed.status_code == 302
    assert fresh(ada).labels == ["gold"]
    listing = admin_client.get("/admin/messaging/label/").text
    assert 'class="wharf-label wharf-label-orange"' in listing

    deleted = admin_client.post(f"/admin/messaging/label/{vip.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert fresh(ada).labels == []
    assert list(
        AuditLog.objects.filter(action__startswith="label.").order_by("id").values_list("action", flat=True)
    ) == [
        "label.create",
        "label.update",
        "label.delete",
    ]


def test_managing_labels_needs_the_label_permissions(client):
    viewer = UserFactory(is_staff=True, permissions=["messaging.view_label"])
    client.force_login(viewer)
    assert client.get("/admin/messaging/label/").status_code == 200
    assert client.post("/admin/messaging/label/add/", {"name": "vip", "colour": "red"}).status_code == 403
    assert not Label.objects.exists()


def test_the_migration_puts_the_labels_in_use_in_the_catalogue(number):
    LabelFactory(name="vip", colour=Label.Colour.RED)
    conversation_make(name="Ada", number=number, labels=["vip", "refund"])
    conversation_make(name="Bea", number=number, labels=["refund", "late-reply"])

    with connection.cursor() as cursor:
        cursor.execute(catalogue.CATALOGUE_FROM_CONVERSATIONS)

    assert dict(Label.objects.values_list("name", "colour")) == {
        "vip": "red",  # left as it was
        "refund": "grey",
        "late-reply": "grey",
    }


def test_the_inbox_filters_by_the_catalogue_and_shows_label_colours(admin_client, ada):
    LabelFactory(name="vip", colour=Label.Colour.PURPLE)
    LabelFactory(name="refund")
    conversation_labels_set(conversation=ada, labels=["vip"], actor=None)

    html = admin_client.get(INBOX).text

    assert '<option value="vip">vip</option>' in html and '<option value="refund">refund</option>' in html
    assert 'class="wharf-label wharf-label-purple" href="?label=vip"' in html
    assert '<option value="vip" selected>' in admin_client.get(INBOX, {"label": "vip"}).text


# -- whom a conversation may be given to ------------------------------------------------------------


def test_the_users_who_see_a_number_are_those_it_is_visible_to(number):
    team_a, team_b = Group.objects.create(name="team-a"), Group.objects.create(name="team-b")
    open_number = PhoneNumberFactory()
    number.groups.set([team_a])
    users = [
        UserFactory(is_superuser=True),
        UserFactory(),
        UserFactory(),
        UserFactory(),
    ]
    users[1].groups.add(team_a)
    users[2].groups.add(team_b)
    users[3].groups.add(team_a, team_b)
    model = type(users[0])

    for phone_number in (number, open_number):
        viewers = set(model.objects.filter(phone_number_viewers_q(phone_number_id=phone_number.pk)))
        visible = {user for user in users if phone_number_visible(user=user, phone_number_id=phone_number.pk)}
        assert viewers == visible
    assert len(model.objects.filter(phone_number_viewers_q(phone_number_id=number.pk))) == 3  # no doubles


def test_the_live_page_fetches_the_header_as_it_is_now(admin_client, ada):
    before = admin_client.get(f"{page_url(ada)}&fragment=header")
    assert before.status_code == 200
    assert before.text.lstrip().startswith('<header class="wharf-convo-header" id="conversation-header"')
    assert ">Open<" in header(before.text) and "<script" not in before.text

    conversation_status_set(conversation=ada, status=Status.RESOLVED, actor=None)
    after = admin_client.get(f"{page_url(ada)}&fragment=header")

    assert ">Resolved<" in header(after.text)
    assert "<html" not in after.text  # the header alone, for the page to swap in
