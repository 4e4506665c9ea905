import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from core.aws import storage_ensure_bucket
from core.models import AuditLog
from core.storage import file_save, media_storage
from messaging.models import Message
from tests.factories import ContactFactory, MessageFactory

LIST = "/api/v1/messages/"
VIEW, DELETE = "messaging.view_message", "messaging.delete_message"
CONTACTS_VIEW = "contacts.view_contact"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def detail(message: Message) -> str:
    return f"/api/v1/messages/{message.id}/"


@pytest.fixture
def stored_media(db):
    """put(message, content): the message's media as the media task leaves it, in moto's S3."""
    storage_ensure_bucket()

    def put(message: Message, content: bytes, mime_type: str = "image/jpeg") -> str:
        key = f"{settings.MEDIA_INCOMING_PREFIX}{message.wamid}"
        file_save(media_storage(), key, content, content_type=mime_type)
        Message.objects.filter(pk=message.pk).update(
            media_key=key,
            media_state=Message.MediaState.STORED,
            media_mime_type=mime_type,
            media_size=len(content),
        )
        return key

    return put


def presigned_lifetime_s(url: str) -> float:
    """How long a presigned URL stays valid, from its query (signature version 2 or 4)."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:
        return int(query["X-Amz-Expires"][0])
    return int(query["Expires"][0]) - time.time()


def s3_has(key: str) -> bool:
    return media_storage().exists(key)


# -- doors and locks ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_token_is_401():
    response = APIClient().get(LIST)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    ("method", "path", "granted"),
    [
        ("get", "list", ["contacts.view_contact", DELETE]),
        ("get", "detail", [DELETE]),
        ("delete", "detail", [VIEW]),
    ],
)
@pytest.mark.django_db
def test_a_user_without_the_model_permission_is_403(api_client, method, path, granted):
    message = MessageFactory()
    url = {"list": LIST, "detail": detail(message)}[path]

    response = getattr(api_client(*granted), method)(url)

    assert response.status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()


@pytest.mark.django_db
def test_a_post_to_the_list_is_a_send_checked_like_one(api_client):
    """Sending is POST /api/v1/messages/ (tests/messaging/test_outbound.py); this body is not one."""
    response = api_client(VIEW, "messaging.add_message").post(LIST, {"text": "hi"}, format="json")

    assert response.status_code == 400
    assert "type" in response.json()


# -- list --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_is_paginated_newest_first(api_client):
    messages = [MessageFactory(timestamp=T0 + timedelta(minutes=i)) for i in range(3)]

    response = api_client(VIEW, CONTACTS_VIEW).get(LIST, {"page_size": 2})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [m["id"] for m in body["results"]] == [messages[2].id, messages[1].id]
    assert body["next"].endswith("page=2&page_size=2")
    first = body["results"][0]
    assert first["wamid"] == messages[2].wamid
    assert (first["direction"], first["type"], first["status"]) == ("inbound", "text", "received")
    assert first["contact"] == messages[2].contact_id
    assert first["contact_phone"] == messages[2].contact.phone
    assert first["phone_number_id"] == messages[2].phone_number.phone_number_id
    assert first["error"] is None
    assert first["media_error"] is None
    assert "media_url" not in first  # presigned in the detail only


@pytest.mark.django_db
def test_list_filters(api_client):
    ana, bruno = ContactFactory(), ContactFactory()
    hello = MessageFactory(contact=ana, timestamp=T0, text="hello")
    photo = MessageFactory(contact=ana, type="image", text="", timestamp=T0 + timedelta(days=1))
    reply = MessageFactory(
        contact=bruno, direction="outbound", status="read", timestamp=T0 + timedelta(days=2)
    )
    failed = MessageFactory(
        contact=bruno,
        direction="outbound",
        status="failed",
        error_code=131026,
        error_title="Message undeliverable",
        timestamp=T0 + timedelta(days=3),
    )
    client = api_client(VIEW)

    def ids(**params) -> list[int]:
        response = client.get(LIST, params)
        assert response.status_code == 200, response.json()
        return [m["id"] for m in response.json()["results"]]

    assert ids(contact=ana.id) == [photo.id, hello.id]
    assert ids(direction="outbound") == [failed.id, reply.id]
    assert ids(direction="inbound", contact=bruno.id) == []
    assert ids(status="read") == [reply.id]
    assert ids(type="image") == [photo.id]
    assert ids(since="2025-03-02T12:00:00Z") == [failed.id, reply.id, photo.id]
    assert ids(until="2025-03-02T12:00:00Z") == [hello.id]  # until is exclusive
    assert ids(since="2025-03-02", until="2025-03-04") == [reply.id, photo.id]
    (row,) = [m for m in client.get(LIST, {"status": "failed"}).json()["results"]]
    assert row["error"] == {"code": 131026, "title": "Message undeliverable", "details": ""}


@pytest.mark.parametrize(
    "params",
    [
        {"direction": "sideways"},
        {"status": "lost"},
        {"since": "last tuesday"},
        {"contact": "ana"},
        {"since": "2025-03-02", "until": "2025-03-01"},
    ],
)
@pytest.mark.django_db
def test_list_answers_a_bad_filter_with_400_naming_it(api_client, params):
    response = api_client(VIEW).get(LIST, params)

    assert response.status_code == 400
    assert set(response.json()) <= set(params)


# -- retrieve ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retrieve_has_a_working_presigned_media_url(api_client, stored_media):
    message = MessageFactory(type="image", text="a cat")
    stored_media(message, b"\xff\xd8\xff jpeg bytes")

    response = api_client(VIEW, CONTACTS_VIEW).get(detail(message))

    assert response.status_code == 200
    body = response.json()
    assert (body["media_state"], body["media_mime_type"], body["media_size"]) == ("stored", "image/jpeg", 14)
    assert body["media_error"] is None
    assert 295 <= presigned_lifetime_s(body["media_url"]) <= 300
    fetched = httpx.get(body["media_url"])
    assert fetched.status_code == 200
    assert fetched.content == b"\xff\xd8\xff jpeg bytes"


@pytest.mark.django_db
def test_without_contacts_view_a_message_shows_no_phone_payload_or_media(api_client, stored_media):
    message = MessageFactory(type="image", text="my passport", payload={"from": "447700900123"})
    stored_media(message, b"\xff\xd8\xff passport scan")
    reader, contacts_reader = api_client(VIEW), api_client(VIEW, CONTACTS_VIEW)

    listed = reader.get(LIST).json()["results"][0]
    shown = reader.get(detail(message)).json()
    full = contacts_reader.get(detail(message)).json()

    assert (listed["contact"], listed["contact_phone"], listed["text"]) == (
        message.contact_id,
        None,
        "my passport",
    )
    assert (shown["contact_phone"], shown["payload"], shown["media_url"]) == (None, None, None)
    assert shown["media_note"] == "hidden: contact data needs the contacts.view_contact permission"
    assert (shown["text"], shown["media_state"]) == ("my passport", "stored")
    assert (full["contact_phone"], full["payload"]) == (message.contact.phone, {"from": "447700900123"})
    assert httpx.get(full["media_url"]).content == b"\xff\xd8\xff passport scan"


@pytest.mark.django_db
@pytest.mark.parametrize("mime_type", ["text/html", "image/svg+xml"])
def test_a_contacts_html_or_svg_is_served_as_bytes_to_download_never_a_page(
    api_client, stored_media, mime_type
):
    message = MessageFactory(type="document", text="", media_filename="invoice.html")
    stored_media(message, b"<html><script>fetch('/steal')</script></html>", mime_type)

    body = api_client(VIEW, CONTACTS_VIEW).get(detail(message)).json()
    fetched = httpx.get(body["media_url"])

    assert body["media_mime_type"] == mime_type  # what the contact sent, as recorded
    assert fetched.headers["Content-Type"] == "application/octet-stream"
    assert fetched.headers["Content-Disposition"] == (
        "attachment; filename=\"invoice.html\"; filename*=UTF-8''invoice.html"
    )


@pytest.mark.django_db
def test_retrieve_says_why_media_is_unavailable(api_client):
    message = MessageFactory(
        type="document",
        text="",
        media_id="1013859600285441",
        media_state=Message.MediaState.UNAVAILABLE,
        media_error="Graph API answered 404: media id expired",
    )

    body = api_client(VIEW).get(detail(message)).json()

    assert body["media_url"] is None
    assert body["media_state"] == "unavailable"
    assert body["media_error"] == "media unavailable: Graph API answered 404: media id expired"


@pytest.mark.django_db
def test_retrieve_has_statuses_errors_reply_context_and_reaction(api_client):
    contact = ContactFactory()
    question = MessageFactory(contact=contact, text="Do you open on Sunday?", timestamp=T0)
    answer = MessageFactory(
        contact=contact,
        direction="outbound",
        status="failed",
        text="Yes, from 10",
        context_wamid=question.wamid,
        reaction="👍",
        timestamp=T0 + timedelta(minutes=1),
        sent_at=T0 + timedelta(minutes=1),
        failed_at=T0 + timedelta(minutes=2),
        error_code=131047,
        error_title="Re-engagement message",
        error_details="More than 24 hours have passed since the recipient last replied.",
        payload={"id": "kept as Meta sent it"},
    )
    orphan = MessageFactory(contact=contact, context_wamid="wamid.NOT-HERE")
    client = api_client(VIEW, CONTACTS_VIEW)

    body = client.get(detail(answer)).json()

    assert body["context"] == {"wamid": question.wamid, "id": question.id, "text": "Do you open on Sunday?"}
    assert body["reaction"] == "👍"
    assert body["error"] == {
        "code": 131047,
        "title": "Re-engagement message",
        "details": "More than 24 hours have passed since the recipient last replied.",
    }
    assert body["sent_at"] == "2025-03-01T12:01:00Z"
    assert body["failed_at"] == "2025-03-01T12:02:00Z"
    assert body["delivered_at"] is None
    assert body["payload"] == {"id": "kept as Meta sent it"}
    assert body["media_url"] is None
    assert client.get(detail(orphan)).json()["context"] == {"wamid": "wamid.NOT-HERE", "id": None, "text": ""}
    assert client.get(detail(question)).json()["context"] is None


@pytest.mark.django_db
def test_retrieve_an_unknown_message_is_404(api_client):
    response = api_client(VIEW, DELETE).get("/api/v1/messages/999999/")

    assert response.status_code == 404
    assert api_client(VIEW, DELETE).delete("/api/v1/messages/999999/").status_code == 404


# -- delete ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_removes_the_row_and_its_media_and_is_audited(
    api_client, stored_media, django_capture_on_commit_callbacks
):
    message = MessageFactory(type="image")
    key = stored_media(message, b"picture")
    other = MessageFactory(type="image")
    other_key = stored_media(other, b"another picture")
    client = api_client(DELETE)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(detail(message))

    assert response.status_code == 204
    assert not Message.objects.filter(pk=message.pk).exists()
    assert not s3_has(key)
    assert s3_has(other_key)
    log = AuditLog.objects.get()
    assert (log.action, log.source, log.actor, log.target_id) == (
        "message.delete",
        "api",
        client.user,
        str(message.pk),
    )
    assert log.changes["wamid"] == message.wamid
    assert log.changes["media_key"] == key


@pytest.mark.django_db
def test_delete_without_media_touches_no_storage(api_client, django_capture_on_commit_callbacks):
    message = MessageFactory()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api_client(DELETE).delete(detail(message))

    assert response.status_code == 204
    assert callbacks == []
    assert not Message.objects.exists()


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_schema_has_the_messages_paths(admin_client):
    schema = admin_client.get("/api/schema/", {"format": "json"})

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert set(paths["/api/v1/messages/"]) == {"get", "post"}
    assert set(paths["/api/v1/messages/{id}/"]) == {"get", "delete"}
    assert set(paths["/api/v1/messages/{id}/read/"]) == {"post"}


def test_schema_of_the_messages_views_generates_without_warnings(capsys):
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)

    validate_schema(schema)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "essage" in line]
    assert warnings == []
    parameters = {p["name"] for p in schema["paths"]["/api/v1/messages/"]["get"]["parameters"]}
    assert parameters == {"contact", "direction", "status", "type", "since", "until", "page", "page_size"}
    detail_schema = schema["components"]["schemas"]["MessageDetail"]["properties"]
    assert {"media_url", "media_state", "media_error", "context", "error", "reaction"} <= set(detail_schema)


@pytest.mark.django_db
def test_list_queries_do_not_grow_with_the_page(api_client, django_assert_max_num_queries):
    client = api_client(VIEW)
    MessageFactory()
    client.get(LIST)
    with django_assert_max_num_queries(20) as few:
        client.get(LIST)
    MessageFactory.create_batch(10)

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)

    assert response.json()["count"] == 11


@pytest.mark.django_db
def test_a_contact_known_only_by_its_whatsapp_id_has_a_null_phone(api_client):
    message = MessageFactory(contact=ContactFactory(phone=None, wa_id="447400123456"))

    body = api_client(VIEW).get(detail(message)).json()

    assert body["contact"] == message.contact_id
    assert body["contact_phone"] is None
