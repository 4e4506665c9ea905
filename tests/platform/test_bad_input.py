"""Bad input through the API's doors is answered 4xx naming the field, never 5xx: ids and integers
beyond their columns, text PostgreSQL cannot store inside JSON, bodies nested too deep, a page size
that is not a number, Meta refusing a read receipt, a contact deleted while a message to it is
queued; and the schema documents every answer."""

import json
import threading

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from contacts.models import Contact
from contacts.services.contact import contact_delete
from messaging.models import Message
from messaging.outbound import send as outbound_send
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory

CAMPAIGNS, CONTACTS, MESSAGES = "/api/v1/campaigns/", "/api/v1/contacts/", "/api/v1/messages/"
NUL, SURROGATE = "\u0000", "\ud800"


def post_json(client, url: str, body, method: str = "post"):
    """The body as raw JSON text: lone surrogates and deep nesting reach the server as they are."""
    data = body if isinstance(body, str) else json.dumps(body)
    return getattr(client, method)(url, data, content_type="application/json")


def escaped(bad: str) -> str:
    """The character as JSON's escape, for a body's text."""
    return "\\u0000" if bad == NUL else "\\ud800"


def nested(depth: int) -> str:
    return '{"name": "x", "attributes": ' + '{"a": ' * depth + "1" + "}" * depth + "}"


@pytest.fixture
def campaigns(api_client):
    return api_client(
        "campaigns.add_campaign",
        "campaigns.change_campaign",
        "campaigns.view_campaign",
        "contacts.view_contact",  # the audience's matches are contact data
    )


@pytest.fixture
def sender(db):
    return PhoneNumberFactory(phone_number_id="106540352242922")


# -- campaigns: ids and integers --------------------------------------------------------------------


def test_an_unknown_contact_in_a_campaign_s_audience_is_400_naming_it(campaigns):
    known = ContactFactory()
    answer = post_json(campaigns, CAMPAIGNS, {"name": "Spring", "audience_contacts": [known.pk, 999999]})
    assert answer.status_code == 400, answer.content
    assert answer.json() == {"audience_contacts": ["No such contact: 999999."]}

    campaign = post_json(campaigns, CAMPAIGNS, {"name": "Spring", "audience_contacts": [known.pk]}).json()
    answer = post_json(campaigns, f"{CAMPAIGNS}{campaign['id']}/", {"audience_contacts": [999998]}, "patch")
    assert answer.status_code == 400, answer.content
    assert "audience_contacts" in answer.json()
    assert campaigns.get(f"{CAMPAIGNS}{campaign['id']}/").json()["audience_contacts"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate_limit_per_s", 2**31), ("audience_contacts", [2**63]), ("failure_pause_pct", 101)],
)
def test_integers_beyond_their_column_are_400_naming_the_field(campaigns, field, value):
    answer = post_json(campaigns, CAMPAIGNS, {"name": "Spring", field: value})
    assert answer.status_code == 400, answer.content
    assert field in answer.json()


def test_ids_beyond_their_column_in_filters_and_sends_are_400(api_client, sender):
    client = api_client("messaging.view_message", "messaging.add_message")
    assert client.get(f"{MESSAGES}?contact={2**63}").status_code == 400
    answer = post_json(client, MESSAGES, {"contact": 2**63, "type": "text", "text": {"body": "hi"}})
    assert answer.status_code == 400
    assert "contact" in answer.json()


def test_an_audience_csv_with_ids_that_are_no_ids_matches_none_of_them(campaigns):
    known = ContactFactory()
    campaign = post_json(campaigns, CAMPAIGNS, {"name": "Spring"}).json()
    csv = f"id\n{known.pk}\n\u00b2\n\u0664\u0662\n{2**64}\n".encode()
    answer = campaigns.post(
        f"{CAMPAIGNS}{campaign['id']}/audience/csv/",
        {"file": SimpleUploadedFile("ids.csv", csv, content_type="text/csv")},
        format="multipart",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["matched"] == 1

    for hostile in (b"email\nana\x00@example.com\n", b"phone\n\xff\xfe\n"):
        answer = campaigns.post(
            f"{CAMPAIGNS}{campaign['id']}/audience/csv/",
            {"file": SimpleUploadedFile("list.csv", hostile, content_type="text/csv")},
            format="multipart",
        )
        assert answer.status_code in (200, 400), answer.content


# -- text PostgreSQL cannot store, inside JSON ------------------------------------------------------


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_nul_and_lone_surrogates_in_a_contact_s_attributes_are_400_naming_the_field(api_client, bad):
    client = api_client("contacts.add_contact")
    answer = post_json(client, CONTACTS, {"phone": "+447400123456", "attributes": {"plan": f"gold{bad}"}})
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["attributes.plan"]
    answer = post_json(client, CONTACTS, {"phone": "+447400123456", "attributes": {f"pl{bad}an": "gold"}})
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["attributes.pl\ufffdan"]  # the bad key named, without its bad part
    assert not Contact.objects.exists()


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template_parameters": {"body": ["{{name}}", "x{bad}"]}}, "template_parameters.body[1]"),
        ({"audience_filters": {"attributes": {"plan": "{bad}"}}}, "audience_filters.attributes.plan"),
    ],
)
def test_nul_and_lone_surrogates_in_a_campaign_s_json_fields_are_400_naming_the_field(
    campaigns, bad, body, field
):
    text = json.dumps({"name": "Spring", **body}).replace("{bad}", escaped(bad))
    answer = post_json(campaigns, CAMPAIGNS, text)
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == [field]


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize(
    ("kind", "content", "field"),
    [
        ("text", {"body": "hello {bad}"}, "text.body"),
        (
            "interactive",
            {
                "type": "button",
                "body": {"text": "Pick one"},
                "footer": {"text": "{bad}"},
                "action": {"buttons": [{"reply": {"id": "a", "title": "A"}}]},
            },
            "interactive.footer.text",
        ),
        ("location", {"latitude": 1, "longitude": 2, "name": "x{bad}"}, "location.name"),
    ],
)
def test_nul_and_lone_surrogates_in_message_content_are_400_naming_the_field(
    api_client, sender, bad, kind, content, field
):
    contact = ContactFactory(last_inbound_at=timezone.now())
    client = api_client("messaging.add_message")
    text = json.dumps({"contact": contact.pk, "type": kind, kind: content})
    text = text.replace("{bad}", escaped(bad))
    answer = post_json(client, MESSAGES, text)
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == [field]
    assert not Message.objects.exists()


def test_the_send_service_checks_content_whatever_the_door(sender):
    """The admin's reply box and campaigns reach the service without the API's parser."""
    contact = ContactFactory(last_inbound_at=timezone.now())
    with pytest.raises(ValidationError) as raised:
        outbound_send.message_send(
            phone_number=sender,
            contact=contact,
            kind="text",
            content={"body": f"hi{NUL}"},
            actor=None,
            source="api",
        )
    assert raised.value.message_dict == {"text.body": ["Must not contain NUL characters (\\u0000)."]}


# -- deep nesting and page sizes --------------------------------------------------------------------


@pytest.mark.parametrize("depth", [70, 1000, 5000])
def test_a_body_nested_too_deep_is_400_on_every_json_endpoint(api_client, campaigns, depth):
    contacts = api_client("contacts.add_contact", "messaging.add_message")
    for client, url in ((contacts, CONTACTS), (campaigns, CAMPAIGNS), (contacts, MESSAGES)):
        answer = post_json(client, url, nested(depth))
        assert answer.status_code == 400, (url, answer.content[:200])
        assert "Nested more than 64 levels deep" in answer.json()["detail"]
    arrays = "[" * depth + "]" * depth
    assert post_json(contacts, CONTACTS, arrays).status_code == 400


def test_a_body_nested_within_the_limit_is_taken(api_client):
    answer = post_json(
        api_client("contacts.add_contact"),
        CONTACTS,
        '{"phone": "+447400123456", "attributes": ' + '{"a": ' * 60 + "1" + "}" * 60 + "}",
    )
    assert answer.status_code == 201, answer.content


@pytest.mark.parametrize("page_size", ["null", "abc", "0", "-1", "1.5", "²"])
def test_a_page_size_that_is_not_a_whole_number_is_400(api_client, page_size):
    answer = api_client("contacts.view_contact").get(f"{CONTACTS}?page_size={page_size}")
    assert answer.status_code == 400
    assert list(answer.json()) == ["page_size"]


def test_a_page_size_that_is_a_whole_number_is_taken(api_client):
    ContactFactory.create_batch(3)
    answer = api_client("contacts.view_contact").get(f"{CONTACTS}?page_size=2")
    assert answer.status_code == 200
    assert len(answer.json()["results"]) == 2


def test_an_api_url_no_view_answers_is_a_json_404(api_client, admin_client):
    answer = api_client("campaigns.view_campaign").get(f"{CAMPAIGNS}not-a-number/")
    assert (answer.status_code, answer["Content-Type"], answer.json()) == (
        404,
        "application/json",
        {"detail": "Not found."},
    )
    assert admin_client.get("/no-such-page/").status_code == 404  # elsewhere: Django's page


# -- Meta's answers, a deleted contact ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_send_to_a_contact_deleted_meanwhile_is_400_naming_the_contact(api_client, sender, monkeypatch):
    contact = ContactFactory(last_inbound_at=timezone.now())
    client = api_client("messaging.add_message")
    build = outbound_send.content_build

    def delete_from_elsewhere(contact_id: int) -> None:
        try:
            contact_delete(contact=Contact.objects.get(pk=contact_id), actor=None, source="api")
        finally:
            connection.close()

    def built_while_deleted(*args, **kwargs):
        built = build(*args, **kwargs)
        elsewhere = threading.Thread(target=delete_from_elsewhere, args=(contact.pk,))
        elsewhere.start()
        elsewhere.join()
        return built

    monkeypatch.setattr(outbound_send, "content_build", built_while_deleted)
    answer = post_json(client, MESSAGES, {"contact": contact.pk, "type": "text", "text": {"body": "hi"}})

    assert answer.status_code == 400, answer.content
    assert answer.json() == {"contact": ["No such contact."]}
    assert not Message.objects.exists()


# -- what the schema says -------------------------------------------------------------------------------


@pytest.fixture
def schema(db):
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_operation_documents_its_error_answers(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert {"401", "403", "429"} <= set(answers), (method, path)
            if "{" in path:
                assert "404" in answers, (method, path)
            if "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", [])):
                assert "400" in answers, (method, path)
            for code in {"400", "401", "403", "404", "429"} & set(answers):
                assert "content" in answers[code], (method, path, code)
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]


def test_the_read_receipt_s_answers_are_documented(schema):
    answers = schema["paths"]["/api/v1/messages/{id}/read/"]["post"]["responses"]
    assert {"200", "400", "404", "409", "502"} <= set(answers)
    assert answers["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GraphRefusal"
    }


def test_a_message_s_error_code_is_null_when_meta_gave_none_and_the_schema_says_so(api_client, schema):
    message = MessageFactory(direction="outbound", status="failed", error_title="Sent nowhere")
    answer = api_client("messaging.view_message").get(f"{MESSAGES}{message.pk}/")
    assert answer.json()["error"] == {"code": None, "title": "Sent nowhere", "details": ""}
    assert schema["components"]["schemas"]["MessageError"]["properties"]["code"]["nullable"] is True
