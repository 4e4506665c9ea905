import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from contacts.models import Contact
from contacts.selectors import ContactPaginator
from contacts.services.cleaning import PHONE_TAKEN
from core.models import AuditLog
from tests.factories import ContactFactory

LIST = "/api/v1/contacts/"
VIEW, ADD, CHANGE, DELETE = (f"contacts.{action}_contact" for action in ("view", "add", "change", "delete"))


def detail(contact: Contact, suffix: str = "") -> str:
    return f"/api/v1/contacts/{contact.id}/{suffix}"


def upload(text: str, name: str = "contacts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


# -- doors and locks ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_token_is_401():
    response = APIClient().get(LIST)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    ("method", "path", "granted"),
    [
        ("get", "list", [ADD, CHANGE, DELETE]),
        ("post", "list", [VIEW]),
        ("get", "detail", [ADD]),
        ("patch", "detail", [VIEW, ADD]),
        ("put", "detail", [VIEW, ADD]),
        ("delete", "detail", [VIEW, CHANGE]),
        ("post", "opt-out", [VIEW]),
        ("post", "import", [ADD]),
        ("post", "import", [CHANGE]),
        ("get", "export", [ADD, CHANGE]),
    ],
)
@pytest.mark.django_db
def test_a_user_without_the_model_permission_is_403(api_client, method, path, granted):
    contact = ContactFactory()
    url = {
        "list": LIST,
        "detail": detail(contact),
        "opt-out": detail(contact, "opt-out/"),
        "import": "/api/v1/contacts/import/",
        "export": "/api/v1/contacts/export/",
    }[path]

    response = getattr(api_client(*granted), method)(url, {}, format="json")

    assert response.status_code == 403


# -- list --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_is_paginated_newest_first(api_client):
    contacts = ContactFactory.create_batch(3)

    response = api_client(VIEW).get(LIST, {"page_size": 2})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [c["id"] for c in body["results"]] == [contacts[2].id, contacts[1].id]
    assert body["next"].endswith("page=2&page_size=2")
    assert set(body["results"][0]) == {
        "id",
        "phone",
        "wa_id",
        "name",
        "email",
        "tags",
        "language",
        "attributes",
        "opted_in_at",
        "opt_in_source",
        "opted_out_at",
        "opt_out_source",
        "is_opted_out",
        "email_opted_out_at",
        "email_opt_out_source",
        "sms_opted_out_at",
        "sms_opt_out_source",
        "last_inbound_at",
        "created_at",
        "updated_at",
    }


@pytest.mark.django_db
def test_list_count_is_exact_up_to_the_bound(api_client, monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 3)
    ContactFactory.create_batch(3)

    body = api_client(VIEW).get(LIST, {"page_size": 2}).json()

    assert (body["count"], body["count_exact"]) == (3, True)
    assert list(body) == ["count", "count_exact", "next", "previous", "results"]


@pytest.mark.django_db
def test_list_count_past_the_bound_is_an_estimate_and_next_reads_every_row(api_client, monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 2)
    contacts = ContactFactory.create_batch(5, tags=["vip"])
    client = api_client(VIEW)

    body = client.get(LIST, {"tag": "vip", "page_size": 2}).json()
    assert body["count_exact"] is False
    assert body["count"] >= 3
    seen = [c["id"] for c in body["results"]]
    while body["next"]:
        body = client.get(body["next"]).json()
        seen += [c["id"] for c in body["results"]]

    assert seen == [c.id for c in reversed(contacts)]


@pytest.mark.django_db
def test_the_schema_says_the_count_may_be_an_estimate(api_client):
    schema = api_client().get("/api/schema/", {"format": "json"}).json()

    page = schema["components"]["schemas"]["PaginatedContactList"]
    assert page["properties"]["count_exact"]["type"] == "boolean"
    assert "estimate" in page["properties"]["count"]["description"]
    assert "count_exact" in page["required"]


@pytest.mark.django_db
def test_list_filters_and_searches(api_client):
    ana = ContactFactory(name="Ana Silva", phone="+447400123456", tags=["vip"])
    ContactFactory(name="Bruno Okafor", tags=["lead"])
    client = api_client(VIEW)

    def ids(**params):
        response = client.get(LIST, params)
        assert response.status_code == 200, response.json()
        return [c["id"] for c in response.json()["results"]]

    assert ids(q="silva") == [ana.id]
    assert ids(q="+44 7400-123") == [ana.id]
    assert ids(tag="vip") == [ana.id]
    assert ids(opted_out="true") == []
    assert len(ids(opted_out="false")) == 2
    assert ids(created_after="2999-01-01T00:00:00Z") == []
    assert len(ids(created_before="2999-01-01")) == 2


@pytest.mark.django_db
def test_list_answers_a_bad_filter_with_400_naming_it(api_client):
    response = api_client(VIEW).get(LIST, {"created_after": "last tuesday"})

    assert response.status_code == 400
    assert list(response.json()) == ["created_after"]


# -- create, read, update, delete --------------------------------------------------------------


@pytest.mark.django_db
def test_create_normalises_and_audits(api_client):
    client = api_client(ADD)

    response = client.post(
        LIST,
        {"phone": "+44 7400 123456", "name": "Ana", "tags": ["vip"], "attributes": {"plan": "gold"}},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["phone"], body["name"], body["tags"], body["attributes"]) == (
        "+447400123456",
        "Ana",
        ["vip"],
        {"plan": "gold"},
    )
    assert body["is_opted_out"] is False
    log = AuditLog.objects.get()
    assert (log.action, log.source, log.actor) == ("contact.create", "api", client.user)


@pytest.mark.django_db
def test_create_with_an_invalid_phone_is_400_naming_phone(api_client):
    response = api_client(ADD).post(LIST, {"phone": "12345"}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["phone"]
    assert not Contact.objects.exists()


@pytest.mark.django_db
def test_create_with_a_duplicate_phone_is_400_saying_it_exists(api_client):
    ContactFactory(phone="+447400123456")

    response = api_client(ADD).post(LIST, {"phone": "+44 7400 123456"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"phone": [PHONE_TAKEN]}


@pytest.mark.django_db
def test_create_names_each_bad_field(api_client):
    response = api_client(ADD).post(
        LIST, {"phone": "+447400123456", "email": "nope", "attributes": [1, 2]}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()) == {"attributes"}  # the serializer's shape check answers first

    response = api_client(ADD).post(
        LIST, {"phone": "+447400123456", "email": "nope", "language": "?"}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()) == {"email", "language"}


@pytest.mark.django_db
def test_malformed_json_is_400(api_client):
    response = api_client(ADD).post(LIST, data='{"phone": "+4474', content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


@pytest.mark.django_db
def test_retrieve_and_404(api_client):
    contact = ContactFactory()
    client = api_client(VIEW)

    assert client.get(detail(contact)).json()["phone"] == contact.phone
    assert client.get("/api/v1/contacts/999999/").status_code == 404


@pytest.mark.django_db
def test_patch_changes_only_what_it_names(api_client):
    contact = ContactFactory(name="Old", email="old@example.com", tags=["a"])

    response = api_client(CHANGE).patch(detail(contact), {"name": "New"}, format="json")

    assert response.status_code == 200, response.json()
    contact.refresh_from_db()
    assert (contact.name, contact.email, contact.tags) == ("New", "old@example.com", ["a"])
    assert AuditLog.objects.get().changes == {"name": ["Old", "New"]}


@pytest.mark.django_db
def test_put_replaces_the_fields(api_client):
    contact = ContactFactory(name="Old", email="old@example.com", tags=["a"])

    response = api_client(CHANGE).put(detail(contact), {"phone": contact.phone, "name": "New"}, format="json")

    assert response.status_code == 200, response.json()
    contact.refresh_from_db()
    assert (contact.name, contact.email, contact.tags) == ("New", "", [])


@pytest.mark.django_db
def test_update_to_a_taken_phone_is_400(api_client):
    ContactFactory(phone="+447400000001")
    contact = ContactFactory(phone="+447400000002")

    response = api_client(CHANGE).patch(detail(contact), {"phone": "+447400000001"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"phone": [PHONE_TAKEN]}


@pytest.mark.django_db
def test_delete(api_client):
    contact = ContactFactory()

    response = api_client(DELETE).delete(detail(contact))

    assert response.status_code == 204
    assert not Contact.objects.exists()
    assert AuditLog.objects.get().action == "contact.delete"


@pytest.mark.django_db
def test_opt_out_and_opt_in(api_client):
    contact = ContactFactory()
    client = api_client(CHANGE)

    response = client.post(detail(contact, "opt-out/"), {"reason": "asked by phone"}, format="json")

    assert response.status_code == 200
    assert (response.json()["is_opted_out"], response.json()["opt_out_source"]) == (True, "asked by phone")

    response = client.post(detail(contact, "opt-in/"), {}, format="json")

    assert response.status_code == 200
    assert response.json()["is_opted_out"] is False
    assert response.json()["opt_in_source"] == "api"


# -- CSV ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_reports_bad_rows_by_line_and_imports_the_good_ones(api_client):
    ContactFactory(phone="+447400000001", name="Before")
    text = (
        "phone,name,email,tags\n"
        "+447400000001,After,,vip\n"
        "not a phone,Bad,,\n"
        "+447400000002,Bea,bea@example.com,lead;vip\n"
        "+447400000003,Cy,cy@,\n"
    )

    response = api_client(ADD, CHANGE).post(
        "/api/v1/contacts/import/", {"file": upload(text)}, format="multipart"
    )

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "created": 1,
        "updated": 1,
        "unchanged": 0,
        "total_rows": 4,
        "header": ["phone", "name", "email", "tags"],
        "errors": [
            {
                "line": 3,
                "reason": "phone: not a valid phone number: start it with + and the country code",
                "cells": ["not a phone", "Bad", "", ""],
            },
            {
                "line": 5,
                "reason": "email: not a valid email address",
                "cells": ["+447400000003", "Cy", "cy@", ""],
            },
        ],
    }
    assert dict(Contact.objects.values_list("phone", "name")) == {
        "+447400000001": "After",
        "+447400000002": "Bea",
    }
    assert AuditLog.objects.get(action="contacts.import").target_repr == "contacts.csv"


@pytest.mark.django_db
def test_import_without_a_phone_column_is_400_naming_file(api_client):
    response = api_client(ADD, CHANGE).post(
        "/api/v1/contacts/import/", {"file": upload("name,email\nAna,ana@example.com\n")}, format="multipart"
    )

    assert response.status_code == 400
    assert response.json() == {"file": ['The header line has no "phone" column.']}


@pytest.mark.django_db
def test_import_without_a_file_is_400(api_client):
    response = api_client(ADD, CHANGE).post("/api/v1/contacts/import/", {}, format="multipart")

    assert response.status_code == 400
    assert list(response.json()) == ["file"]


@pytest.mark.django_db
def test_export_streams_csv_with_the_lists_filters(api_client):
    ContactFactory(name="Ana", phone="+447400000001", tags=["vip", "lead"], attributes={"plan": "gold"})
    ContactFactory(name="Bruno", phone="+447400000002")

    response = api_client(VIEW).get("/api/v1/contacts/export/", {"tag": "vip"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="contacts-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["phone"], r["name"], r["tags"], r["attributes"]) for r in rows] == [
        ("+447400000001", "Ana", "vip;lead", '{"plan":"gold"}')
    ]


@pytest.mark.django_db
def test_export_defuses_cells_that_start_with_a_tab_or_a_carriage_return(api_client):
    ContactFactory(
        phone="+447400000001",
        name='\t=HYPERLINK("http://evil")',
        tags=["\r=1+1"],
        opt_out_source="\t@SUM(1)",
    )

    response = api_client(VIEW).get("/api/v1/contacts/export/")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert [(r["name"], r["tags"], r["opt_out_source"]) for r in rows] == [
        ('\'\t=HYPERLINK("http://evil")', "'\r=1+1", "'\t@SUM(1)")
    ]


@pytest.mark.django_db
def test_export_accepts_a_client_asking_for_csv(api_client):
    ContactFactory()

    response = api_client(VIEW).get("/api/v1/contacts/export/", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"phone,wa_id,name,email,tags")


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_schema_and_docs_answer(admin_client):
    schema = admin_client.get("/api/schema/", {"format": "json"})

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/contacts/", "/api/v1/contacts/{id}/", "/api/v1/contacts/import/"} <= set(paths)
    assert set(paths["/api/v1/contacts/{id}/"]) == {"get", "put", "patch", "delete"}
    assert admin_client.get("/api/docs/").status_code == 200


def test_schema_of_the_contacts_views_generates_without_warnings(capsys):
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    GENERATOR_STATS.reset()  # it prints each warning once per process
    schema = SchemaGenerator().get_schema(request=None, public=True)

    validate_schema(schema)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "Contact" in line]
    assert warnings == []
    parameters = {p["name"] for p in schema["paths"]["/api/v1/contacts/"]["get"]["parameters"]}
    assert parameters == {"q", "tag", "opted_out", "created_after", "created_before", "page", "page_size"}
