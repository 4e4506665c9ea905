"""The conversations API: the inbox's list, a conversation with its timeline, and the operators'
actions through the same services as the admin, with their permissions and their 400/404/409."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditLog
from messaging.conversations import conversation_message_apply
from messaging.models import Conversation, Message
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory, labels_make

pytestmark = pytest.mark.django_db

LIST = "/api/v1/conversations/"
VIEW, CHANGE = "messaging.view_conversation", "messaging.change_conversation"
CONTACTS = "contacts.view_contact"
Status = Conversation.Status


def detail(conversation: Conversation, action: str = "") -> str:
    return f"/api/v1/conversations/{conversation.id}/" + (f"{action}/" if action else "")


def writes(contact=None, *, number=None, text="hello", ago=timedelta(0), **kwargs) -> Message:
    """A message joined to its conversation as the inbound path does it (outbound: a reply)."""
    message = MessageFactory(
        contact=contact or ContactFactory(),
        phone_number=number or PhoneNumberFactory(),
        text=text,
        timestamp=timezone.now() - ago,
        **kwargs,
    )
    conversation_message_apply(message=message, reply=message.direction == Message.Direction.OUTBOUND)
    return message


def conversation_of(message: Message) -> Conversation:
    return Conversation.objects.get(pk=Message.objects.get(pk=message.pk).conversation_id)


@pytest.fixture
def operator():
    return UserFactory(username="olivia", is_staff=True)


@pytest.fixture
def reader(api_client):
    return api_client(VIEW, CONTACTS)


@pytest.fixture
def changer(api_client):
    """An operator's client: staff, so conversations may be assigned to them too."""
    client = api_client(VIEW, CHANGE, CONTACTS)
    client.user.is_staff = True
    client.user.save(update_fields=["is_staff"])
    return client


# -- doors and locks ---------------------------------------------------------------------------------


def test_no_token_is_401():
    response = APIClient().get(LIST)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    ("method", "action", "granted"),
    [
        ("get", None, [CONTACTS, CHANGE]),
        ("get", "", [CONTACTS, CHANGE]),
        ("post", "assign", [VIEW, "messaging.add_conversation"]),
        ("post", "status", [VIEW, "messaging.add_conversation"]),
        ("post", "labels", [VIEW]),
        ("post", "priority", [VIEW]),
        ("post", "read", [VIEW, "messaging.add_conversation"]),
    ],
)
def test_a_user_without_the_permission_is_403(api_client, method, action, granted):
    conversation = conversation_of(writes())
    url = LIST if action is None else detail(conversation, action)

    response = getattr(api_client(*granted), method)(url, {}, format="json" if method == "post" else None)

    assert response.status_code == 403
    assert not AuditLog.objects.filter(action__startswith="conversation.").exists()


def test_an_unknown_conversation_is_404(changer):
    for url in ("/api/v1/conversations/999999/", "/api/v1/conversations/999999/read/"):
        method = changer.get if url.endswith("999999/") else changer.post
        assert method(url).status_code == 404


# -- the list ----------------------------------------------------------------------------------------


def test_list_items_carry_the_inbox_row(reader, operator):
    number = PhoneNumberFactory(display_phone_number="+1 555 0100")
    contact = ContactFactory(name="Grace Hopper", phone="+447400111222", wa_id="447400111222")
    message = writes(contact, number=number, text="my order   is late", ago=timedelta(hours=2))
    conversation = conversation_of(message)
    labels_make("vip")
    Conversation.objects.filter(pk=conversation.pk).update(assignee=operator, labels=["vip"], priority="high")

    response = reader.get(LIST)

    assert response.status_code == 200
    assert response.json()["count"] == 1
    (item,) = response.json()["results"]
    assert item["id"] == conversation.pk
    assert item["contact"] == {
        "id": contact.pk,
        "name": "Grace Hopper",
        "phone": "+447400111222",
        "wa_id": "447400111222",
    }
    assert item["phone_number"]["id"] == number.pk and item["phone_number"]["display"] == "+1 555 0100"
    assert item["assignee"] == {"id": operator.pk, "username": "olivia"}
    assert (item["status"], item["labels"], item["priority"]) == ("open", ["vip"], "high")
    assert item["unread_count"] == 1 and item["last_message_preview"] == "my order is late"
    assert item["waiting_since"] is not None and item["last_inbound_at"] is not None
    assert item["window"]["open"] is True
    closes_at = message.timestamp + timedelta(hours=24)
    assert item["window"]["closes_at"] == closes_at.isoformat().replace("+00:00", "Z")


def test_list_without_contacts_view_shows_the_contact_id_only(api_client):
    contact = ContactFactory(name="Grace Hopper")
    writes(contact)
    client = api_client(VIEW)

    (item,) = client.get(LIST).json()["results"]
    searched = client.get(LIST, {"q": "Grace"})

    assert item["contact"] == {"id": contact.pk}
    assert searched.status_code == 403
    assert CONTACTS in searched.json()["detail"]


def test_list_by_tab_filter_sort_and_search(api_client, operator):
    client = api_client(VIEW, CONTACTS)
    client.user.is_staff = True
    client.user.save()
    number_a, number_b = PhoneNumberFactory(), PhoneNumberFactory()
    old = conversation_of(
        writes(ContactFactory(name="Ada"), number=number_a, text="refund", ago=timedelta(hours=3))
    )
    new = conversation_of(
        writes(ContactFactory(name="Bob"), number=number_b, text="hi", ago=timedelta(hours=1))
    )
    answered = conversation_of(
        writes(ContactFactory(name="Cy"), number=number_a, text="x", ago=timedelta(hours=2))
    )
    writes(answered.contact, number=number_a, direction="outbound", text="done", ago=timedelta(minutes=1))
    Conversation.objects.filter(pk=old.pk).update(assignee=client.user)
    labels_make("vip")
    Conversation.objects.filter(pk=new.pk).update(assignee=operator, labels=["vip"])

    def ids(**params) -> list[int]:
        response = client.get(LIST, params)
        assert response.status_code == 200, response.json()
        return [item["id"] for item in response.json()["results"]]

    assert ids() == [old.pk, new.pk, answered.pk]  # waiting longest first, answered last
    assert ids(sort="latest") == [answered.pk, new.pk, old.pk]
    assert ids(tab="mine") == [old.pk]
    assert ids(tab="unassigned") == [answered.pk]
    assert ids(tab="all", status="pending") == [answered.pk]
    assert ids(phone_number=number_b.pk) == [new.pk]
    assert ids(label="vip") == [new.pk]
    assert ids(assignee=operator.pk) == [new.pk]
    assert ids(q="refund") == [old.pk]  # message text
    assert ids(q="bob") == [new.pk]  # the contact's name


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tab": "everyone"}, "tab"),
        ({"status": "closed"}, "status"),
        ({"sort": "oldest"}, "sort"),
        ({"phone_number": "x"}, "phone_number"),
        ({"assignee": "0"}, "assignee"),
    ],
)
def test_list_answers_a_bad_filter_with_400_naming_it(reader, params, field):
    response = reader.get(LIST, params)

    assert response.status_code == 400
    assert field in response.json()


def test_list_is_paginated_and_its_queries_do_not_grow_with_the_page(reader, django_assert_max_num_queries):
    writes()
    reader.get(LIST)
    with django_assert_max_num_queries(20) as few:
        reader.get(LIST)
    for _ in range(6):
        writes()

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = reader.get(LIST, {"page_size": 5})

    assert response.json()["count"] == 7 and len(response.json()["results"]) == 5
    assert response.json()["next"]


# -- one conversation and its timeline ----------------------------------------------------------------


def test_retrieve_has_the_timeline_newest_page_first_and_pages_back(reader):
    contact, number = ContactFactory(), PhoneNumberFactory()
    messages = [writes(contact, number=number, text=f"m{i}", ago=timedelta(minutes=10 - i)) for i in range(5)]
    writes(contact, number=PhoneNumberFactory(), text="to another number")  # another conversation
    failed = writes(
        contact,
        number=number,
        direction="outbound",
        status=Message.Status.FAILED,
        text="late",
        error_code=131047,
        error_title="Re-engagement message",
    )
    conversation = conversation_of(failed)

    page = reader.get(detail(conversation), {"limit": 3}).json()

    assert [m["text"] for m in page["messages"]] == ["m3", "m4", "late"]
    assert page["messages"][-1]["error"] == {"code": 131047, "title": "Re-engagement message"}
    assert page["messages"][-1]["direction"] == "outbound" and page["messages"][0]["error"] is None
    assert set(page["messages"][0]) >= {"id", "wamid", "direction", "type", "text", "status", "timestamp"}
    assert page["status"] == "pending" and page["window"]["open"] is True
    older = reader.get(detail(conversation), {"limit": 3, "before": page["before"]}).json()
    assert [m["id"] for m in older["messages"]] == [m.id for m in messages[:3]]
    assert older["before"] is None


@pytest.mark.parametrize(("params", "field"), [({"limit": 0}, "limit"), ({"limit": 201}, "limit")])
def test_retrieve_answers_a_bad_page_with_400(reader, params, field):
    response = reader.get(detail(conversation_of(writes())), params)

    assert response.status_code == 400
    assert field in response.json()


def test_retrieve_refuses_a_message_of_another_conversation_as_before(reader):
    contact = ContactFactory()
    mine = writes(contact)
    other = writes(contact, number=PhoneNumberFactory())

    response = reader.get(detail(conversation_of(mine)), {"before": other.pk})

    assert response.status_code == 400
    assert "before" in response.json()


# -- actions ------------------------------------------------------------------------------------------


def test_assign_and_unassign(changer, operator):
    conversation = conversation_of(writes())

    assigned = changer.post(detail(conversation, "assign"), {"assignee": operator.pk}, format="json")
    unassigned = changer.post(
        detail(conversation, "assign"), {"assignee": None, "expected_assignee": operator.pk}, format="json"
    )

    assert assigned.status_code == 200
    assert assigned.json()["assignee"] == {"id": operator.pk, "username": "olivia"}
    assert unassigned.status_code == 200 and unassigned.json()["assignee"] is None
    audits = AuditLog.objects.filter(action="conversation.assign", source=AuditLog.Source.API)
    assert audits.count() == 2 and audits.first().actor == changer.user


def test_assigning_over_someone_else_is_409_naming_who(changer, operator):
    conversation = conversation_of(writes())
    Conversation.objects.filter(pk=conversation.pk).update(assignee=operator)
    me = changer.user

    for expected in (None, me.pk):
        response = changer.post(
            detail(conversation, "assign"), {"assignee": me.pk, "expected_assignee": expected}, format="json"
        )

        assert response.status_code == 409
        assert response.json()["assignee"] == {"id": operator.pk, "username": "olivia"}
        assert "olivia" in response.json()["detail"]
    assert Conversation.objects.get(pk=conversation.pk).assignee == operator


@pytest.mark.parametrize("who", ["missing", "not staff", "inactive", "not a number"])
def test_assigning_to_someone_who_cannot_be_is_400_on_assignee(changer, who):
    conversation = conversation_of(writes())
    assignee = {
        "missing": 999999,
        "not staff": UserFactory().pk,
        "inactive": UserFactory(is_staff=True, is_active=False).pk,
        "not a number": "olivia",
    }[who]

    response = changer.post(detail(conversation, "assign"), {"assignee": assignee}, format="json")

    assert response.status_code == 400
    assert "assignee" in response.json()
    assert Conversation.objects.get(pk=conversation.pk).assignee is None


def test_status_resolve_and_snooze(changer):
    conversation = conversation_of(writes())
    until = timezone.now() + timedelta(hours=2)

    resolved = changer.post(detail(conversation, "status"), {"status": "resolved"}, format="json")
    snoozed = changer.post(
        detail(conversation, "status"),
        {"status": "snoozed", "snoozed_until": until.isoformat()},
        format="json",
    )

    assert resolved.status_code == 200 and resolved.json()["waiting_since"] is None
    assert snoozed.json()["status"] == "snoozed"
    assert Conversation.objects.get(pk=conversation.pk).snoozed_until == until


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "closed"}, "status"),
        ({}, "status"),
        ({"status": "snoozed"}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": "2020-01-01T00:00:00Z"}, "snoozed_until"),
        ({"status": "snoozed", "snoozed_until": "tomorrow"}, "snoozed_until"),
    ],
)
def test_a_bad_status_is_400_naming_the_field_and_changes_nothing(changer, body, field):
    conversation = conversation_of(writes())

    response = changer.post(detail(conversation, "status"), body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert Conversation.objects.get(pk=conversation.pk).status == Status.OPEN


def test_labels_are_replaced_and_normalised(changer):
    conversation = conversation_of(writes())
    labels_make("vip", "refund")

    response = changer.post(
        detail(conversation, "labels"), {"labels": ["VIP", "refund", "vip"]}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["labels"] == ["vip", "refund"]


@pytest.mark.parametrize(
    "labels", [["not a label"], ["x" * 33], "vip", [{"a": 1}], [f"l{i}" for i in range(21)], [""]]
)
def test_a_malformed_label_is_400_on_labels(changer, labels):
    conversation = conversation_of(writes())

    response = changer.post(detail(conversation, "labels"), {"labels": labels}, format="json")

    assert response.status_code == 400
    assert "labels" in response.json()
    assert Conversation.objects.get(pk=conversation.pk).labels == []


def test_labels_not_in_the_catalogue_are_400_on_labels_and_change_nothing(changer):
    conversation = conversation_of(writes())
    labels_make("vip")
    assert changer.post(detail(conversation, "labels"), {"labels": ["vip"]}, format="json").status_code == 200

    response = changer.post(detail(conversation, "labels"), {"labels": ["vip", "x", "y"]}, format="json")

    assert response.status_code == 400
    assert response.json()["labels"] == ["Unknown label: x, y."]
    assert Conversation.objects.get(pk=conversation.pk).labels == ["vip"]


def test_priority(changer):
    conversation = conversation_of(writes())

    response = changer.post(detail(conversation, "priority"), {"priority": "urgent"}, format="json")
    bad = changer.post(detail(conversation, "priority"), {"priority": "asap"}, format="json")

    assert response.status_code == 200 and response.json()["priority"] == "urgent"
    assert bad.status_code == 400 and "priority" in bad.json()


def test_read_clears_the_unread_count(changer):
    contact, number = ContactFactory(), PhoneNumberFactory()
    writes(contact, number=number)
    conversation = conversation_of(writes(contact, number=number))
    assert conversation.unread_count == 2

    response = changer.post(detail(conversation, "read"), format="json")

    assert response.status_code == 200 and response.json()["unread_count"] == 0
    assert AuditLog.objects.filter(action="conversation.read", source=AuditLog.Source.API).count() == 1


def test_an_action_without_contacts_view_answers_the_contact_id_only(api_client):
    conversation = conversation_of(writes())
    client = api_client(VIEW, CHANGE)

    response = client.post(detail(conversation, "priority"), {"priority": "low"}, format="json")

    assert response.json()["contact"] == {"id": conversation.contact_id}


# -- schema -------------------------------------------------------------------------------------------


def test_schema_documents_every_conversation_operation_and_its_errors(admin_client):
    paths = admin_client.get("/api/schema/", {"format": "json"}).json()["paths"]

    assert set(paths[LIST]) == {"get"}
    assert set(paths["/api/v1/conversations/{id}/"]) == {"get"}
    for action in ("assign", "status", "labels", "priority", "read"):
        responses = paths[f"/api/v1/conversations/{{id}}/{action}/"]["post"]["responses"]
        assert {"200", "401", "403", "404"} <= set(responses)
        assert ("400" in responses) == (action != "read")
    assert "409" in paths["/api/v1/conversations/{id}/assign/"]["post"]["responses"]


def test_schema_generates_without_any_warning(capsys):
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)

    validate_schema(schema)
    assert "Warning" not in capsys.readouterr().err
    assert not GENERATOR_STATS  # neither warnings nor errors
    parameters = {p["name"] for p in schema["paths"][LIST]["get"]["parameters"]}
    assert parameters == {
        "tab",
        "status",
        "phone_number",
        "label",
        "assignee",
        "sort",
        "q",
        "page",
        "page_size",
    }
    assert {"messages", "before", "window"} <= set(
        schema["components"]["schemas"]["ConversationDetail"]["properties"]
    )
