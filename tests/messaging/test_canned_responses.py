"""Canned responses: kept per team (everyone's and the operator's groups'), managed in the admin with
its permissions through the services, and filled with the contact's placeholders in the reply box."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from core.models import AuditLog
from messaging.canned import (
    canned_response_create,
    canned_response_update,
    canned_responses_delete,
    canned_responses_filled,
    canned_responses_for,
)
from messaging.models import CannedResponse
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/messaging/cannedresponse/add/"
LIST = "/admin/messaging/cannedresponse/"


@pytest.fixture
def sales() -> Group:
    return Group.objects.create(name="Sales")


@pytest.fixture
def support() -> Group:
    return Group.objects.create(name="Support")


def canned(shortcut: str, group: Group | None = None, body: str = "Some text") -> CannedResponse:
    return CannedResponse.objects.create(shortcut=shortcut, title=shortcut.title(), body=body, group=group)


def operator(*groups: Group, permissions: tuple[str, ...] = ()) -> object:
    user = UserFactory(is_staff=True, permissions=list(permissions))
    user.groups.set(groups)
    return user


# -- who sees which ---------------------------------------------------------------------------------


def test_an_operator_sees_everyones_and_their_teams_canned_responses(sales, support):
    shared, for_sales, for_support = canned("hours"), canned("prices", sales), canned("refund", support)
    sales_hours = canned("hours", sales)

    # by shortcut, a team's before everyone's of the same shortcut
    assert list(canned_responses_for(operator(sales))) == [sales_hours, shared, for_sales]
    assert list(canned_responses_for(operator(support))) == [shared, for_support]
    assert list(canned_responses_for(operator(sales, support))) == [
        sales_hours,
        shared,
        for_sales,
        for_support,
    ]
    assert list(canned_responses_for(operator())) == [shared]
    assert set(canned_responses_for(UserFactory(is_superuser=True))) == {
        shared,
        sales_hours,
        for_sales,
        for_support,
    }


def test_a_shortcut_is_unique_per_team_and_once_among_everyones(sales, support, admin_user):
    canned_response_create(
        shortcut="hours", title="Hours", body="9-5", group=None, actor=admin_user, source="t"
    )
    canned_response_create(
        shortcut="hours", title="Hours", body="8-6", group=sales, actor=admin_user, source="t"
    )
    canned_response_create(
        shortcut="hours", title="Hours", body="7-7", group=support, actor=admin_user, source="t"
    )

    with pytest.raises(ValidationError) as refused:
        canned_response_create(
            shortcut="hours", title="Again", body="x", group=None, actor=admin_user, source="t"
        )
    assert "shortcut" in refused.value.message_dict
    with pytest.raises(ValidationError):
        canned_response_create(
            shortcut="hours", title="Again", body="x", group=sales, actor=admin_user, source="t"
        )
    with pytest.raises(IntegrityError):  # the database holds the rule for everyone's too (NULLS NOT DISTINCT)
        CannedResponse.objects.create(shortcut="hours", title="Direct", body="x", group=None)


def test_the_services_check_shortcut_body_and_placeholders_and_audit(admin_user):
    made = canned_response_create(
        shortcut="/Hours", title=" Opening hours ", body="Hi {{first_name|there}}", group=None,
        actor=admin_user, source="admin",
    )  # fmt: skip
    assert (made.shortcut, made.title, made.created_by) == ("hours", "Opening hours", admin_user)
    assert AuditLog.objects.filter(action="canned_response.create", target_id=str(made.pk)).exists()

    for fields, field in [
        ({"shortcut": "opening hours"}, "shortcut"),
        ({"body": "x" * 4097}, "body"),  # WhatsApp's text limit is 4096
        ({"body": "Hi {{contact.name}}"}, "body"),
        ({"title": ""}, "title"),
    ]:
        with pytest.raises(ValidationError) as refused:
            canned_response_update(canned_response=made, actor=admin_user, source="admin", **fields)
        assert field in refused.value.message_dict
    made.refresh_from_db()
    assert made.body == "Hi {{first_name|there}}"

    canned_response_update(canned_response=made, actor=admin_user, source="admin", body="x" * 4096)
    assert AuditLog.objects.filter(action="canned_response.update").count() == 1
    assert canned_responses_delete(canned_responses=[made], actor=admin_user, source="admin") == 1
    assert AuditLog.objects.filter(action="canned_response.delete").count() == 1


# -- placeholders -------------------------------------------------------------------------------------


def test_placeholders_are_filled_from_the_contact(admin_user):
    canned("hours", body="Hi {{first_name|there}}, this is for {{name}} at {{phone}}.")
    ada = ContactFactory(name="Ada King Lovelace", phone="+447700900123")
    nameless = ContactFactory(name="", phone="+447700900124")

    [for_ada] = canned_responses_filled(user=admin_user, contact=ada)
    [for_nameless] = canned_responses_filled(user=admin_user, contact=nameless)

    assert for_ada.body == "Hi Ada, this is for Ada King Lovelace at +447700900123."
    assert for_nameless.body == "Hi there, this is for  at +447700900124."


def test_the_reply_box_lists_the_operators_canned_responses_filled_for_the_contact(client, sales, support):
    canned("hours", body="Hi {{first_name}}, we open at 9.")
    canned("prices", sales, body="Our prices </script><b>")
    canned("refund", support)
    contact = ContactFactory(name="Ada Lovelace", last_inbound_at=timezone.now() - timedelta(hours=1))
    MessageFactory(contact=contact, phone_number=PhoneNumberFactory(), timestamp=contact.last_inbound_at)
    client.force_login(operator(sales, permissions=("messaging.view_message", "messaging.add_message")))

    page = client.get(f"/admin/messaging/message/conversation/{contact.pk}/").content.decode()

    listed = re.search(
        r'<script id="reply-canned-responses" type="application/json">(.*?)</script>', page, re.S
    )
    assert listed, "the canned responses are in the page"
    entries = json.loads(listed.group(1))
    assert [(entry["shortcut"], entry["team"]) for entry in entries] == [("hours", ""), ("prices", "Sales")]
    assert entries[0]["body"] == "Hi Ada, we open at 9."
    assert entries[1]["body"] == "Our prices </script><b>"  # escaped in the page, whole once parsed


# -- the admin ----------------------------------------------------------------------------------------


def test_managing_canned_responses_needs_their_permissions(client):
    shared = canned("hours")
    client.force_login(operator(permissions=("messaging.view_cannedresponse",)))
    assert client.get(LIST).status_code == 200
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, {"shortcut": "new", "title": "New", "body": "x"}).status_code == 403
    form = {"shortcut": "hours", "title": "Changed", "body": "x"}
    assert client.post(f"{LIST}{shared.pk}/change/", form).status_code == 403
    assert client.post(f"{LIST}{shared.pk}/delete/", {"post": "yes"}).status_code == 403
    shared.refresh_from_db()
    assert shared.title == "Hours"


def test_an_operator_adds_changes_and_deletes_their_teams_canned_responses(client, sales, support):
    user = operator(
        sales,
        permissions=(
            "messaging.view_cannedresponse",
            "messaging.add_cannedresponse",
            "messaging.change_cannedresponse",
            "messaging.delete_cannedresponse",
        ),
    )
    client.force_login(user)

    # the team offered is among their own groups; another team's is refused
    form_page = client.get(ADD).content.decode()
    assert ">Sales</option>" in form_page and ">Support</option>" not in form_page
    refused = client.post(ADD, {"shortcut": "hours", "title": "Hours", "body": "x", "group": support.pk})
    assert refused.status_code == 200 and not CannedResponse.objects.exists()

    added = client.post(
        ADD, {"shortcut": "hours", "title": "Hours", "body": "Hi {{first_name}}", "group": sales.pk}
    )
    assert added.status_code == 302
    made = CannedResponse.objects.get()
    assert (made.group, made.created_by) == (sales, user)
    assert AuditLog.objects.filter(action="canned_response.create", actor=user).exists()

    # a second one with the same shortcut in the same team is a form error, not a failure
    again = client.post(ADD, {"shortcut": "hours", "title": "Again", "body": "y", "group": sales.pk})
    assert (
        again.status_code == 200
        and "already has a canned response with this shortcut" in again.content.decode()
    )
    unknown = client.post(ADD, {"shortcut": "hi", "title": "Hi", "body": "Hi {{contact.name}}", "group": ""})
    assert unknown.status_code == 200 and "Unknown placeholder" in unknown.content.decode()

    changed = client.post(
        f"{LIST}{made.pk}/change/",
        {"shortcut": "hours", "title": "Opening hours", "body": "9-5", "group": sales.pk},
    )
    assert changed.status_code == 302
    made.refresh_from_db()
    assert (made.title, made.body) == ("Opening hours", "9-5")

    # another team's are not theirs to see or change
    theirs = canned("refund", support)
    listing = client.get(LIST).content.decode()
    assert "/hours" in listing and "/refund" not in listing
    assert client.get(f"{LIST}{theirs.pk}/change/").status_code == 302  # "does not exist", back to the index

    assert client.post(f"{LIST}{made.pk}/delete/", {"post": "yes"}).status_code == 302
    assert list(CannedResponse.objects.all()) == [theirs]
    assert AuditLog.objects.filter(action="canned_response.delete", actor=user).exists()
