"""Who sees what: an operator sees the conversations of the sender numbers their groups are named on
(a number with no groups: everyone who may view conversations; superusers: all), in the selector,
the inbox, its changes token, the API, the conversation page, and assignment."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.models import AuditLog
from messaging.conversations import conversation_assign
from messaging.models import Conversation, PhoneNumber
from messaging.outbound.send import phone_number_default
from messaging.selectors import conversation_changes_token, conversation_counts, conversation_list
from tests.factories import MessageFactory, PhoneNumberFactory, UserFactory
from tests.messaging.test_inbox import CHANGES, INBOX, conversation_make, names

pytestmark = pytest.mark.django_db

OPERATOR_PERMISSIONS = [
    "messaging.view_conversation",
    "messaging.change_conversation",
    "messaging.view_message",
    "messaging.add_message",
    "contacts.view_contact",
]


@pytest.fixture
def numbers():
    """Number A (team A), number B (team B), and a number with no groups."""
    team_a, team_b = Group.objects.create(name="team-a"), Group.objects.create(name="team-b")
    a, b, shared = PhoneNumberFactory(), PhoneNumberFactory(), PhoneNumberFactory()
    a.groups.set([team_a])
    b.groups.set([team_b])
    return {"a": a, "b": b, "shared": shared, "team_a": team_a, "team_b": team_b}


@pytest.fixture
def conversations(numbers):
    return {
        "a": conversation_make(name="Ada", number=numbers["a"]),
        "b": conversation_make(name="Bea", number=numbers["b"]),
        "shared": conversation_make(name="Sam", number=numbers["shared"]),
    }


def operator_in(group: Group, **kwargs):
    user = UserFactory(is_staff=True, permissions=OPERATOR_PERMISSIONS, **kwargs)
    user.groups.add(group)
    return user


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_the_selector_lists_what_the_operators_groups_see(numbers, conversations):
    olivia = operator_in(numbers["team_a"])

    assert {c.contact.name for c in conversation_list(user=olivia)} == {"Ada", "Sam"}
    assert conversation_counts(user=olivia)["all"] == 2
    assert list(conversation_list(user=olivia, phone_number=numbers["b"].pk)) == []


def test_a_superuser_sees_every_conversation(numbers, conversations, admin_user):
    assert {c.contact.name for c in conversation_list(user=admin_user)} == {"Ada", "Bea", "Sam"}


def test_a_number_without_groups_is_seen_by_everyone_who_may_view(numbers, conversations):
    nobody_in_a_team = UserFactory(is_staff=True, permissions=OPERATOR_PERMISSIONS)
    assert [c.contact.name for c in conversation_list(user=nobody_in_a_team)] == ["Sam"]


def test_a_conversation_without_a_number_is_seen_by_everyone_who_may_view(numbers, conversations):
    unknown = conversation_make(name="Nan")
    Conversation.objects.filter(pk=unknown.pk).update(phone_number=None)
    olivia = operator_in(numbers["team_b"])
    assert {c.contact.name for c in conversation_list(user=olivia)} == {"Bea", "Sam", "Nan"}


def test_the_inbox_page_shows_only_what_the_operator_sees(client, numbers, conversations):
    client.force_login(operator_in(numbers["team_a"]))

    page = client.get(INBOX)
    assert page.status_code == 200
    assert sorted(names(page)) == ["Ada", "Sam"]
    assert "Bea" not in page.text and "a message from Bea" not in page.text
    assert page.context["counts"]["all"] == 2
    assert numbers["b"] not in page.context["senders"]
    assert (
        client.get(reverse("admin:messaging_conversation_change", args=[conversations["b"].pk])).status_code
        == 404
    )


def test_the_changes_token_does_not_move_for_a_number_the_operator_does_not_see(
    client, numbers, conversations, admin_user
):
    olivia = operator_in(numbers["team_a"])
    client.force_login(olivia)
    token = client.get(CHANGES).json()["token"]

    conversation_assign(conversation=conversations["b"], assignee=None, actor=admin_user)  # no change
    Conversation.objects.filter(pk=conversations["b"].pk).update(unread_count=5)
    conversation_assign(
        conversation=Conversation.objects.get(pk=conversations["b"].pk), assignee=admin_user, actor=admin_user
    )

    assert client.get(CHANGES, {"since": token}).json() == {"changed": False, "token": token}
    assert conversation_changes_token(user=admin_user) != token

    conversation_assign(conversation=conversations["a"], assignee=olivia, actor=olivia)
    assert client.get(CHANGES, {"since": token}).json()["changed"] is True


def test_the_api_lists_and_retrieves_only_what_the_caller_sees(numbers, conversations):
    api = api_as(operator_in(numbers["team_a"]))

    listed = api.get("/api/v1/conversations/").json()["results"]
    assert {row["contact"]["name"] for row in listed} == {"Ada", "Sam"}
    assert api.get(f"/api/v1/conversations/{conversations['a'].pk}/").status_code == 200
    assert api.get(f"/api/v1/conversations/{conversations['b'].pk}/").status_code == 404
    for action, body in [("assign", {"assignee": None}), ("status", {"status": "resolved"}), ("read", {})]:
        url = f"/api/v1/conversations/{conversations['b'].pk}/{action}/"
        assert api.post(url, body, format="json").status_code == 404
    assert Conversation.objects.get(pk=conversations["b"].pk).status == Conversation.Status.OPEN


def test_the_conversation_page_is_404_for_a_contact_the_operator_sees_on_no_number(
    client, numbers, conversations
):
    client.force_login(operator_in(numbers["team_a"]))
    ada, bea = conversations["a"].contact, conversations["b"].contact
    MessageFactory(
        contact=ada, phone_number=numbers["a"], text="about my order", conversation=conversations["a"]
    )
    MessageFactory(contact=ada, phone_number=numbers["b"], text="asked team B", conversation=None)

    page = client.get(reverse("admin:messaging_message_conversation", args=[ada.pk]))
    assert page.status_code == 200
    assert "about my order" in page.text and "asked team B" not in page.text
    assert numbers["b"] not in page.context["reply"]["senders"]

    assert client.get(reverse("admin:messaging_message_conversation", args=[bea.pk])).status_code == 404
    url = reverse("admin:messaging_message_conversation", args=[ada.pk])
    assert client.get(url, {"sender": numbers["b"].pk}).status_code == 404
    assert Conversation.objects.get(pk=conversations["b"].pk).unread_count == 1  # not read by opening


def test_the_live_conversation_page_answers_404_for_what_the_operator_does_not_see(
    client, numbers, conversations
):
    client.force_login(operator_in(numbers["team_a"]))
    ada, bea = conversations["a"].contact, conversations["b"].contact
    changes = "admin:messaging_message_conversation_changes"

    assert client.get(reverse(changes, args=[ada.pk])).status_code == 200
    assert client.get(reverse(changes, args=[bea.pk])).status_code == 404
    fragment = reverse("admin:messaging_message_conversation", args=[bea.pk])
    assert client.get(fragment, {"fragment": "timeline"}).status_code == 404


def test_assigning_to_someone_who_does_not_see_the_number_is_refused(numbers, conversations):
    olivia, bruno = operator_in(numbers["team_a"]), operator_in(numbers["team_b"])
    conversation = conversations["a"]

    with pytest.raises(ValidationError) as refused:
        conversation_assign(conversation=conversation, assignee=bruno, actor=olivia)
    assert "assignee" in refused.value.message_dict

    response = api_as(olivia).post(
        f"/api/v1/conversations/{conversation.pk}/assign/", {"assignee": bruno.pk}, format="json"
    )
    assert response.status_code == 400 and "assignee" in response.json()
    assert Conversation.objects.get(pk=conversation.pk).assignee_id is None
    assert not AuditLog.objects.filter(action="conversation.assign").exists()

    conversation_assign(conversation=conversations["shared"], assignee=bruno, actor=olivia)  # no groups: all
    assert conversation_assign(conversation=conversation, assignee=olivia, actor=olivia).assignee == olivia


def test_the_sender_numbers_admin_sets_its_groups_through_the_service(admin_client, numbers):
    number = numbers["shared"]
    url = reverse("admin:messaging_phonenumber_change", args=[number.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "groups"}
    data["groups"] = [numbers["team_a"].pk]

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(PhoneNumber.objects.get(pk=number.pk).groups.all()) == [numbers["team_a"]]
    assert AuditLog.objects.get(action="phone_number.groups").changes == {"groups": [[], ["team-a"]]}


def test_the_message_list_shows_only_messages_of_numbers_the_operator_sees(client, numbers, conversations):
    client.force_login(operator_in(numbers["team_a"]))
    MessageFactory(phone_number=numbers["a"], text="for team A")
    hidden = MessageFactory(phone_number=numbers["b"], text="for team B")

    listing = client.get(reverse("admin:messaging_message_changelist"))

    assert listing.status_code == 200
    assert "for team A" in listing.text and "for team B" not in listing.text
    in_doubt = reverse("admin:messaging_message_in_doubt", args=[hidden.pk])
    assert client.post(in_doubt, {"decision": "abandon"}).status_code == 404


def test_the_messages_api_shows_and_sends_only_through_numbers_the_caller_sees(numbers, conversations):
    olivia = operator_in(numbers["team_a"])
    api = api_as(olivia)
    seen = MessageFactory(phone_number=numbers["a"], text="for team A")
    hidden = MessageFactory(phone_number=numbers["b"], text="for team B")

    listed = api.get("/api/v1/messages/")
    assert listed.status_code == 200
    texts = {row["text"] for row in listed.json()["results"]}
    assert "for team A" in texts and "for team B" not in texts
    assert api.get(f"/api/v1/messages/{seen.pk}/").status_code == 200
    assert api.get(f"/api/v1/messages/{hidden.pk}/").status_code == 404

    refused = api.post(
        "/api/v1/messages/",
        {
            "contact": hidden.contact_id,
            "phone_number_id": numbers["b"].phone_number_id,
            "type": "text",
            "text": {"body": "hi"},
        },
        format="json",
    )
    assert refused.status_code == 400
    assert "phone_number_id" in refused.json()
    assert not hidden.contact.messages.filter(text="hi").exists()


def test_the_default_sender_is_one_the_user_sees(numbers):
    olivia = operator_in(numbers["team_a"])
    written_to_b = MessageFactory(phone_number=numbers["b"], direction="inbound")

    assert phone_number_default(contact=written_to_b.contact) == numbers["b"]
    chosen = phone_number_default(contact=written_to_b.contact, user=olivia)
    assert chosen in (numbers["a"], numbers["shared"])
