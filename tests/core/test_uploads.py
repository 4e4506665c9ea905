"""Uploads are limited before they are read whole: the API answers 413 naming the field on a
Content-Length past the door's limit without reading the body, forms name the field, and any
multipart request past UPLOAD_MAX_BYTES is refused before even the CSRF check reads it."""

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from contacts.models import Contact
from core.aws import storage_ensure_bucket
from core.storage import media_storage
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CSV = "phone,name\n" + "".join(f"+4474000{n:05d},Name {n}\n" for n in range(40))  # about 1 KB
MEDIA = "/api/v1/media/"
IMPORT = "/api/v1/contacts/import/"


def outgoing_objects() -> int:
    return len(media_storage().listdir(settings.MEDIA_OUTGOING_PREFIX)[0])


def test_the_api_refuses_a_body_longer_than_its_limit_unread_naming_the_field(api_client, settings):
    settings.MEDIA_UPLOAD_MAX_BYTES = 1000
    client = api_client("messaging.add_message")

    # The length is all that is looked at: the short body behind it is never read (reading it
    # would fail, the stream being shorter than announced).
    claimed = client.post(
        MEDIA,
        {"file": SimpleUploadedFile("a.pdf", b"%PDF", content_type="application/pdf")},
        format="multipart",
        CONTENT_LENGTH=str(200_000),
    )

    assert claimed.status_code == 413
    assert list(claimed.json()) == ["file"]
    assert "1,000 bytes" in claimed.json()["file"][0]


def test_a_file_to_send_past_whatsapps_limit_for_its_type_is_refused_and_not_stored(api_client):
    storage_ensure_bucket()
    before = outgoing_objects()
    sticker = SimpleUploadedFile("big.webp", b"RIFF" + b"0" * 600 * 1024, content_type="image/webp")

    answer = api_client("messaging.add_message").post(MEDIA, {"file": sticker}, format="multipart")

    assert answer.status_code == 400
    assert list(answer.json()) == ["file"]
    assert "image/webp" in answer.json()["file"][0]
    assert outgoing_objects() == before


def test_a_contacts_csv_past_its_limit_is_refused_naming_the_file(api_client, settings):
    settings.CSV_UPLOAD_MAX_BYTES = 500  # the file is about 1 KB, under the form's envelope
    client = api_client("contacts.add_contact", "contacts.change_contact")

    answer = client.post(
        IMPORT,
        {"file": SimpleUploadedFile("c.csv", CSV.encode(), content_type="text/csv")},
        format="multipart",
    )

    assert answer.status_code == 400
    assert list(answer.json()) == ["file"] and "500 bytes" in answer.json()["file"][0]
    assert not Contact.objects.exists()
    settings.CSV_UPLOAD_MAX_BYTES = 50 * 1024 * 1024
    assert (
        client.post(
            IMPORT,
            {"file": SimpleUploadedFile("c.csv", CSV.encode(), content_type="text/csv")},
            format="multipart",
        ).json()["created"]
        == 40
    )


def test_the_admins_csv_import_names_the_file_when_it_is_too_large(client, settings):
    settings.CSV_UPLOAD_MAX_BYTES = 500
    client.force_login(
        UserFactory(is_staff=True, permissions=["contacts.add_contact", "contacts.change_contact"])
    )

    page = client.post(
        "/admin/contacts/contact/import/", {"file": SimpleUploadedFile("c.csv", CSV.encode())}
    ).content.decode()

    assert "The file is larger than 500 bytes" in page
    assert not Contact.objects.exists()


def test_any_multipart_request_past_upload_max_bytes_is_refused_before_the_csrf_check_reads_it(settings):
    settings.UPLOAD_MAX_BYTES = 20_000
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(
        UserFactory(is_staff=True, permissions=["contacts.add_contact", "contacts.change_contact"])
    )
    big = SimpleUploadedFile("c.csv", b"phone\n" + b"+447400000001\n" * 2000)

    refused = browser.post("/admin/contacts/contact/import/", {"file": big})
    small = browser.post("/admin/contacts/contact/import/", {"file": SimpleUploadedFile("c.csv", b"phone\n")})

    assert refused.status_code == 413
    assert refused.json() == {"body": "The request is longer than 20,000 bytes (UPLOAD_MAX_BYTES)."}
    assert small.status_code == 403  # read, then refused by the CSRF check: no token
    assert not Contact.objects.exists()
