"""The storages and the one presigned URL rule, against moto's S3 over HTTP."""

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.conf import settings

from archival.admin import archive_batch_download_url
from archival.models import ArchiveBatch
from campaigns.models import Campaign
from campaigns.reports import campaign_report_url
from core.aws import object_head, storage_ensure_bucket
from core.storage import (
    FileMissing,
    archive_storage,
    file_save,
    media_head,
    media_storage,
    presigned_url,
    reports_storage,
)
from messaging.media import media_presigned_url
from messaging.models import Message


@pytest.fixture(scope="module", autouse=True)
def bucket():
    storage_ensure_bucket()


def expires_s(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_a_file_saved_through_a_storage_is_fetched_from_its_presigned_url_over_http():
    key = f"{settings.MEDIA_INCOMING_PREFIX}tests/photo.jpg"
    assert file_save(media_storage(), key, b"\xff\xd8 jpeg", content_type="image/jpeg") == key

    url = presigned_url(media_storage(), key, content_type="image/jpeg", filename="Photo ü.jpg")

    assert url.startswith(f"{settings.AWS_ENDPOINT_URL}/{settings.AWS_STORAGE_BUCKET_NAME}/{key}?")
    assert "X-Amz-Signature=" in url and expires_s(url) == settings.PRESIGNED_URL_EXPIRY_S
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"\xff\xd8 jpeg"
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.headers["Content-Disposition"] == (
        "inline; filename=\"Photo _.jpg\"; filename*=UTF-8''Photo%20%C3%BC.jpg"
    )


@pytest.mark.parametrize(
    ("content_type", "served_as", "disposition"),
    [
        ("image/png", "image/png", "inline"),
        ("audio/ogg; codecs=opus", "audio/ogg; codecs=opus", "inline"),
        ("application/pdf", "application/pdf", "inline"),
        ("text/html", "application/octet-stream", "attachment"),
        ("image/svg+xml", "application/octet-stream", "attachment"),
        ("text/xml", "application/octet-stream", "attachment"),
        ("application/octet-stream", "application/octet-stream", "attachment"),
        (None, "application/octet-stream", "attachment"),
    ],
)
def test_only_types_a_browser_can_only_display_are_served_inline(content_type, served_as, disposition):
    key = f"{settings.MEDIA_INCOMING_PREFIX}tests/file"
    file_save(media_storage(), key, b"<script>alert(1)</script>", content_type=content_type or "text/html")

    answer = httpx.get(presigned_url(media_storage(), key, content_type=content_type))

    assert (answer.headers["Content-Type"], answer.headers["Content-Disposition"]) == (served_as, disposition)


@pytest.mark.parametrize("mime_type", ["text/html", "image/svg+xml"])
def test_a_customers_html_or_svg_downloads_as_bytes_instead_of_rendering(db, mime_type):
    key = f"{settings.MEDIA_INCOMING_PREFIX}tests/page"
    file_save(media_storage(), key, b"<html><script>alert(1)</script></html>", content_type=mime_type)
    message = Message(
        media_state=Message.MediaState.STORED,
        media_key=key,
        media_mime_type=mime_type,
        media_filename='a "page" ü.html',
    )

    answer = httpx.get(media_presigned_url(message=message))

    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.headers["Content-Disposition"] == (
        "attachment; filename=\"a _page_ _.html\"; filename*=UTF-8''a%20%22page%22%20%C3%BC.html"
    )


def test_meta_fetching_a_medium_to_send_gets_its_exact_type_still_as_an_attachment():
    key = f"{settings.MEDIA_OUTGOING_PREFIX}tests/notes.docx"
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    file_save(media_storage(), key, b"PK docx", content_type=docx)

    answer = httpx.get(presigned_url(media_storage(), key, content_type=docx, exact_type=True))

    assert (answer.headers["Content-Type"], answer.headers["Content-Disposition"]) == (docx, "attachment")


def test_media_reports_and_archives_are_linked_for_the_same_configured_time(db, settings):
    settings.PRESIGNED_URL_EXPIRY_S = 77
    media_key = f"{settings.MEDIA_INCOMING_PREFIX}tests/a.jpg"
    report_key = f"{settings.REPORTS_PREFIX}tests-campaign.json"
    archive_key = f"{settings.ARCHIVE_PREFIX}messages/tests/messages.jsonl.gz"
    file_save(media_storage(), media_key, b"jpeg", content_type="image/jpeg")
    file_save(reports_storage(), "tests-campaign.json", b"{}", content_type="application/json")
    file_save(archive_storage(), archive_key, b"gz", content_type="application/gzip")

    urls = {
        "media": media_presigned_url(
            message=Message(
                media_state=Message.MediaState.STORED, media_key=media_key, media_mime_type="image/jpeg"
            )
        ),
        "report": campaign_report_url(campaign=Campaign(report_key=report_key)),
        "archive": archive_batch_download_url(
            ArchiveBatch(kind=ArchiveBatch.Kind.MESSAGES, state=ArchiveBatch.State.DELETED, key=archive_key)
        ),
    }

    assert {name: expires_s(url) for name, url in urls.items()} == {"media": 77, "report": 77, "archive": 77}
    answers = {name: httpx.get(url) for name, url in urls.items()}
    assert {name: answer.content for name, answer in answers.items()} == {
        "media": b"jpeg",
        "report": b"{}",
        "archive": b"gz",
    }
    assert answers["report"].headers["Content-Disposition"] == (
        "attachment; filename=\"tests-campaign.json\"; filename*=UTF-8''tests-campaign.json"
    )
    assert answers["archive"].headers["Content-Disposition"] == (
        "attachment; filename=\"messages.jsonl.gz\"; filename*=UTF-8''messages.jsonl.gz"
    )


def test_a_longer_link_is_asked_for_explicitly():
    key = f"{settings.MEDIA_OUTGOING_PREFIX}tests/long.jpg"
    file_save(media_storage(), key, b"jpeg", content_type="image/jpeg")

    assert expires_s(presigned_url(media_storage(), key, expire=24 * 3600)) == 24 * 3600


def test_media_head_reads_type_and_size_without_the_bytes():
    key = f"{settings.MEDIA_OUTGOING_PREFIX}tests/head.webp"
    file_save(media_storage(), key, b"x" * 1234, content_type="image/webp")

    assert media_head(key) == ("image/webp", 1234)
    with pytest.raises(FileMissing, match="No object"):
        media_head(f"{settings.MEDIA_OUTGOING_PREFIX}tests/none.webp")


def test_saving_again_replaces_the_file_under_the_same_name():
    key = f"{settings.MEDIA_INCOMING_PREFIX}tests/again.jpg"
    file_save(media_storage(), key, b"first", content_type="image/jpeg")

    assert file_save(media_storage(), key, b"second", content_type="image/jpeg") == key

    with media_storage().open(key) as file:
        assert file.read() == b"second"
    assert media_storage().listdir(f"{settings.MEDIA_INCOMING_PREFIX}tests")[1].count("again.jpg") == 1


def test_the_reports_storage_keeps_to_the_reports_prefix():
    file_save(reports_storage(), "tests-scoped.json", b"{}", content_type="application/json")

    assert media_storage().exists(f"{settings.REPORTS_PREFIX}tests-scoped.json")
    with pytest.raises(Exception, match="denied"):
        reports_storage().open("../whatsapp-media/secret.jpg")


def test_a_gzip_file_is_stored_as_it_is_not_as_an_encoding_to_undo():
    key = f"{settings.MEDIA_INCOMING_PREFIX}tests/logs.tar.gz"
    file_save(media_storage(), key, b"\x1f\x8b gzip bytes", content_type="application/gzip")

    assert "ContentEncoding" not in object_head(key)
    answer = httpx.get(presigned_url(media_storage(), key, content_type="application/gzip"))
    assert answer.content == b"\x1f\x8b gzip bytes" and "Content-Encoding" not in answer.headers
