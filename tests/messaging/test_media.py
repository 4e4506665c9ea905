"""Media fetches against the sandbox Graph API over HTTP and moto's S3; the task on a real worker.

The sandbox is the session's own process (tests/stack.py); its faults are cleared after each test.
"""

import base64
import hashlib
import io
import re
import tracemalloc
from datetime import UTC, datetime, timedelta
from io import StringIO
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import httpx
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from contacts.models import Contact
from core.aws import storage_ensure_bucket
from core.queues import queues_ensure
from core.storage import media_storage
from messaging.graph import (
    GraphAuthError,
    GraphClient,
    GraphPermanentError,
    GraphRetryableError,
    graph_error_from_response,
)
from messaging.inbound.apply import inbound_payload_apply
from messaging.media import (
    BACKOFF_MAX_S,
    MediaIntegrityError,
    media_fetch,
    media_fetch_backoff_s,
    media_fetch_sweep,
    media_fetch_task,
    media_key,
    media_presigned_url,
)
from messaging.models import InboundEvent, Message, PhoneNumber
from tests.factories import sandbox_number_register
from tests.platform.conftest import broker_connection, wait_for, worker_running

JPEG = b"\xff\xd8\xff\xe0" + hashlib.sha256(b"a picture").digest() * 64 + b"\xff\xd9"
PHONE_NUMBER_ID = "106540352242922"


def sandbox_root() -> str:
    parts = urlsplit(settings.WHATSAPP_GRAPH_URL)
    return f"{parts.scheme}://{parts.netloc}"


def sandbox_faults(**faults) -> None:
    httpx.post(f"{sandbox_root()}/sandbox/faults", json=faults).raise_for_status()


def sandbox_faults_left() -> dict:
    return httpx.get(f"{sandbox_root()}/sandbox/faults").json()


def sandbox_media_put(content: bytes, mime_type: str) -> str:
    """Media as a WhatsApp user sends it: its id is what the webhook carries."""
    response = httpx.post(
        f"{sandbox_root()}/sandbox/media",
        params={"phone_number_id": PHONE_NUMBER_ID},
        files={"file": ("upload", content, mime_type)},
    )
    response.raise_for_status()
    return response.json()["id"]


@pytest.fixture(autouse=True)
def clean_sandbox():
    yield
    httpx.delete(f"{sandbox_root()}/sandbox/faults").raise_for_status()


@pytest.fixture(scope="module")
def bucket():
    storage_ensure_bucket()
    return settings.AWS_STORAGE_BUCKET_NAME


@pytest.fixture
def inbound_media(db, bucket):
    """inbound_media(content, mime_type): an inbound message whose media waits in the sandbox."""

    def make(
        content: bytes = JPEG, mime_type: str = "image/jpeg", *, number: bool = True, **fields
    ) -> Message:
        phone_number, _ = PhoneNumber.objects.get_or_create(
            phone_number_id=PHONE_NUMBER_ID, defaults={"display_phone_number": "15550783881"}
        )
        contact, _ = Contact.objects.get_or_create(phone="+447700900123", defaults={"wa_id": "447700900123"})
        family = mime_type.split("/")[0]
        kind = family if family in ("image", "video", "audio") else "document"
        return Message.objects.create(
            wamid=f"wamid.{uuid4().hex}",
            direction=Message.Direction.INBOUND,
            type=kind,
            status=Message.Status.RECEIVED,
            contact=contact,
            phone_number=phone_number if number else None,
            media_id=sandbox_media_put(content, mime_type),
            media_mime_type=mime_type,
            **{"media_state": Message.MediaState.PENDING, "timestamp": datetime.now(UTC), **fields},
        )

    return make


def stored(key: str) -> dict:
    with media_storage().open(key) as file:
        return {"body": file.read(), "content_type": file.obj.content_type}


def keys_under(prefix: str) -> list[str]:
    folder, _, start = prefix.rpartition("/")
    return [f"{folder}/{name}" for name in media_storage().listdir(folder)[1] if name.startswith(start)]


# -- the fetch ----------------------------------------------------------------------------------


def test_media_is_stored_at_its_key_with_its_bytes_type_size_and_hash(inbound_media):
    message = inbound_media(JPEG, "image/jpeg")

    media_fetch(message_id=message.id)

    message.refresh_from_db()
    expected_key = f"whatsapp-media/whatsapp-media-incoming/{PHONE_NUMBER_ID}/{message.media_id}.jpg"
    assert message.media_state == Message.MediaState.STORED
    assert message.media_key == expected_key
    assert message.media_mime_type == "image/jpeg"
    assert message.media_size == len(JPEG)
    assert message.media_sha256 == hashlib.sha256(JPEG).hexdigest()
    assert message.media_error == ""
    assert stored(expected_key) == {"body": JPEG, "content_type": "image/jpeg"}


@pytest.mark.parametrize(
    ("mime_type", "extension"),
    [
        ("audio/ogg; codecs=opus", ".ogg"),
        ("application/pdf", ".pdf"),
        ("video/mp4", ".mp4"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
        ("application/x-unheard-of", ""),
    ],
)
def test_the_key_takes_the_extension_of_the_type(mime_type, extension):
    assert media_key(phone_number_id="1", media_id="2", mime_type=mime_type) == (
        f"{settings.MEDIA_INCOMING_PREFIX}1/2{extension}"
    )


def test_media_of_an_unknown_number_goes_under_unknown(inbound_media):
    message = inbound_media(b"voice", "audio/ogg", number=False)

    media_fetch(message_id=message.id)

    message.refresh_from_db()
    assert message.media_key == f"{settings.MEDIA_INCOMING_PREFIX}unknown/{message.media_id}.ogg"
    assert stored(message.media_key)["body"] == b"voice"


def test_a_sha256_mismatch_is_an_error_and_stores_nothing(inbound_media):
    message = inbound_media()
    sandbox_faults(corrupt_downloads=1)

    with pytest.raises(MediaIntegrityError, match="sha256 mismatch"):
        media_fetch(message_id=message.id)

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.PENDING
    assert keys_under(f"{settings.MEDIA_INCOMING_PREFIX}{PHONE_NUMBER_ID}/{message.media_id}") == []


def test_media_over_the_size_limit_is_refused(inbound_media, settings):
    settings.WHATSAPP_MEDIA_MAX_BYTES = 100
    message = inbound_media(b"x" * 101, "image/jpeg")

    with pytest.raises(GraphPermanentError, match="larger than the limit of 100 bytes"):
        media_fetch(message_id=message.id)


def test_a_large_medium_streams_from_meta_to_s3_without_being_held_in_memory(inbound_media):
    video = hashlib.sha256(b"frame").digest() * (40 * 1024 * 1024 // 32)  # 40 MB
    message = inbound_media(video, "video/mp4")

    tracemalloc.start()
    try:
        media_fetch(message_id=message.id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    message.refresh_from_db()
    assert (message.media_state, message.media_size) == ("stored", len(video))
    assert message.media_sha256 == hashlib.sha256(video).hexdigest()
    assert stored(message.media_key)["body"] == video
    assert peak < 25 * 1024 * 1024  # a few 5 MB parts at a time, never the 40 MB (or two copies)


def test_running_twice_is_harmless(inbound_media):
    message = inbound_media()
    media_fetch_task.apply(args=[message.id])
    # Meta's id is gone now: a second run that asked for it again would mark the media unavailable
    httpx.post(f"{sandbox_root()}/sandbox/media/{message.media_id}/expire").raise_for_status()

    media_fetch_task.apply(args=[message.id])

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.STORED
    assert message.media_error == ""
    folder = f"{settings.MEDIA_INCOMING_PREFIX}{PHONE_NUMBER_ID}/"
    assert keys_under(folder + message.media_id) == [message.media_key]


def test_a_retry_after_a_crash_writes_the_same_key(inbound_media):
    message = inbound_media()
    media_fetch(message_id=message.id)
    message.refresh_from_db()
    first_key = message.media_key
    Message.objects.filter(id=message.id).update(media_state=Message.MediaState.PENDING, media_key="")

    media_fetch(message_id=message.id)

    message.refresh_from_db()
    assert message.media_key == first_key
    assert keys_under(f"{settings.MEDIA_INCOMING_PREFIX}{PHONE_NUMBER_ID}/{message.media_id}") == [first_key]


def test_a_message_not_pending_is_left_alone(inbound_media):
    message = inbound_media(media_state=Message.MediaState.UNAVAILABLE)

    media_fetch(message_id=message.id)
    media_fetch(message_id=10**12)  # deleted since: nothing to do

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.UNAVAILABLE
    assert message.media_key == ""


# -- the task's retries and final failures ------------------------------------------------------


def test_server_errors_are_retried_until_the_fetch_succeeds(inbound_media):
    message = inbound_media()
    sandbox_faults(media_5xx=3)  # the media info, twice, then the download

    media_fetch_task.apply(args=[message.id])  # eager: each retry runs at once

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.STORED
    assert stored(message.media_key)["body"] == JPEG
    assert sandbox_faults_left()["errors"] == []


def test_a_corrupted_download_is_retried(inbound_media):
    message = inbound_media()
    sandbox_faults(corrupt_downloads=2)

    media_fetch_task.apply(args=[message.id])

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.STORED
    assert message.media_sha256 == hashlib.sha256(JPEG).hexdigest()


def test_when_the_retries_run_out_the_media_is_unavailable_with_metas_reason(inbound_media, settings):
    settings.MEDIA_FETCH_MAX_RETRIES = 2
    message = inbound_media()
    sandbox_faults(media_5xx=10)

    media_fetch_task.apply(args=[message.id])

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.UNAVAILABLE
    assert (
        message.media_error == "media unavailable: (#1) An unknown error occurred (HTTP 500) (after 3 tries)"
    )
    assert sandbox_faults_left()["errors"][0]["times"] == 7  # three tries, no more


def test_a_permanent_error_is_not_retried_and_shows_metas_code_title_and_details(inbound_media):
    message = inbound_media()
    sandbox_faults(
        errors=[
            {
                "route": "media_download",
                "status": 400,
                "code": 131052,
                "message": "(#131052) Media download error",
                "details": "Downloading the media from the sender failed.",
                "times": 2,
            }
        ]
    )

    media_fetch_task.apply(args=[message.id])

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.UNAVAILABLE
    assert message.media_error == (
        "media unavailable: (#131052) Media download error: Downloading the media from the sender failed. "
        "(HTTP 400)"
    )
    assert sandbox_faults_left()["errors"][0]["times"] == 1  # tried once


def test_an_expired_media_id_is_unavailable_at_once(inbound_media):
    message = inbound_media()
    httpx.post(f"{sandbox_root()}/sandbox/media/{message.media_id}/expire").raise_for_status()

    media_fetch_task.apply(args=[message.id])

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.UNAVAILABLE
    assert message.media_error.startswith(
        "media unavailable: (#100) Unsupported get request. "
        f"Object with ID '{message.media_id}' does not exist"
    )


def test_a_wrong_token_is_unavailable_with_code_190(inbound_media, settings):
    settings.WHATSAPP_ACCESS_TOKEN = "a-revoked-token"
    message = inbound_media()

    media_fetch_task.apply(args=[message.id])

    message.refresh_from_db()
    assert message.media_state == Message.MediaState.UNAVAILABLE
    assert message.media_error == (
        "media unavailable: (#190) Invalid OAuth access token - Cannot parse access token (HTTP 401)"
    )


def test_the_backoff_doubles_with_jitter_and_stays_below_sqs_delay_limit(settings):
    settings.MEDIA_FETCH_BACKOFF_S = 10
    first = {media_fetch_backoff_s(retries=0) for _ in range(50)}
    third = {media_fetch_backoff_s(retries=2) for _ in range(50)}
    late = {media_fetch_backoff_s(retries=30) for _ in range(50)}

    assert first <= set(range(5, 11)) and len(first) > 1
    assert third <= set(range(20, 41))
    assert late <= set(range(BACKOFF_MAX_S // 2, BACKOFF_MAX_S + 1)) and BACKOFF_MAX_S < 900


def test_the_sweeper_enqueues_stale_pending_media_again_and_gives_up_on_expired_ids(
    inbound_media, django_capture_on_commit_callbacks
):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    stale, fresh = inbound_media(), inbound_media()
    done = inbound_media(media_state=Message.MediaState.STORED)
    expired = inbound_media(timestamp=timezone.now() - timedelta(days=8))
    Message.objects.filter(id__in=[stale.id, done.id, expired.id]).update(updated_at=an_hour_ago)

    with django_capture_on_commit_callbacks() as enqueued:
        swept = media_fetch_sweep()
    again = media_fetch_sweep()

    assert swept == [stale.id]
    assert len(enqueued) == 1
    assert again == []  # touched: the next sweep leaves it to the task just enqueued
    expired.refresh_from_db()
    assert expired.media_state == Message.MediaState.UNAVAILABLE
    assert expired.media_error == (
        "media unavailable: Meta's media id expired (after 7 days) before it could be fetched"
    )
    fresh.refresh_from_db()
    assert fresh.media_state == Message.MediaState.PENDING


# -- the Graph API client -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, 4, GraphRetryableError),
        (400, 80007, GraphRetryableError),
        (400, 130429, GraphRetryableError),
        (400, 131000, GraphRetryableError),
        (500, 1, GraphRetryableError),
        (503, None, GraphRetryableError),
        (429, None, GraphRetryableError),
        (400, 100, GraphPermanentError),
        (400, 131052, GraphPermanentError),
        (404, None, GraphPermanentError),
        (401, 190, GraphAuthError),
        (400, 190, GraphAuthError),
    ],
)
def test_errors_are_told_retryable_or_permanent_by_status_and_metas_code(status, code, kind):
    error_json = {
        "error": {
            "message": f"(#{code}) Something",
            "type": "OAuthException",
            "code": code,
            "error_subcode": 2494010,
            "error_data": {"messaging_product": "whatsapp", "details": "More about it."},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }
    response = httpx.Response(status, json=error_json if code else None)

    error = graph_error_from_response(response)

    assert type(error) is kind
    assert error.retryable is (kind is GraphRetryableError)
    assert error.status == status
    if code:
        assert (error.code, error.title, error.details) == (code, "Something", "More about it.")
        assert (error.subcode, error.fbtrace_id) == (2494010, "Az8or2yhqkZfEZ-_4Qn_Bam")
        assert error.reason == f"(#{code}) Something: More about it. (HTTP {status})"


def test_a_slow_graph_api_is_a_retryable_timeout():
    client = GraphClient(
        base_url=settings.WHATSAPP_GRAPH_URL, access_token=settings.WHATSAPP_ACCESS_TOKEN, timeout_s=0.2
    )
    sandbox_faults(latency_ms=1000)

    with pytest.raises(GraphRetryableError, match="timed out"):
        client.media_info("123")
    client.close()


def test_an_unreachable_graph_api_is_retryable():
    client = GraphClient(base_url="http://127.0.0.1:9/v23.0", access_token="x", timeout_s=1)

    with pytest.raises(GraphRetryableError, match="unreachable"):
        client.media_info("123")
    client.close()


def test_uploads_go_through_metas_endpoint_and_come_back_by_id():
    sandbox_number_register(PHONE_NUMBER_ID)  # no PhoneNumber row here: the number Meta knows
    client = GraphClient(
        base_url=settings.WHATSAPP_GRAPH_URL, access_token=settings.WHATSAPP_ACCESS_TOKEN, timeout_s=5
    )

    media_id = client.media_upload(
        phone_number_id=PHONE_NUMBER_ID, content=JPEG, mime_type="image/jpeg", filename="a.jpg"
    )
    info = client.media_info(media_id)

    out = io.BytesIO()
    assert client.media_download(info["url"], out=out, max_bytes=len(JPEG)) == len(JPEG)
    assert out.getvalue() == JPEG
    client.close()


# -- presigned URLs -----------------------------------------------------------------------------


def test_a_presigned_url_downloads_the_media_over_http_and_expires_as_configured(inbound_media, settings):
    message = inbound_media()
    assert media_presigned_url(message=message) is None  # not stored yet
    media_fetch(message_id=message.id)
    message.refresh_from_db()

    url = media_presigned_url(message=message)
    settings.PRESIGNED_URL_EXPIRY_S = 60
    shorter = media_presigned_url(message=message)

    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == JPEG
    assert response.headers["Content-Type"] == "image/jpeg"
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["300"]
    assert parse_qs(urlsplit(shorter).query)["X-Amz-Expires"] == ["60"]


def test_a_documents_presigned_url_carries_its_file_name(inbound_media):
    message = inbound_media(b"%PDF-1.7", "application/pdf", media_filename="Factura nº 7.pdf")
    media_fetch(message_id=message.id)
    message.refresh_from_db()

    response = httpx.get(media_presigned_url(message=message))

    assert response.content == b"%PDF-1.7"
    assert response.headers["Content-Disposition"] == (
        "inline; filename=\"Factura n_ 7.pdf\"; filename*=UTF-8''Factura%20n%C2%BA%207.pdf"
    )


# -- manage.py sandbox_inbound against a live server --------------------------------------------


def test_sandbox_inbound_posts_a_signed_webhook_that_is_stored(live_server, transactional_db):
    out = StringIO()

    call_command(
        "sandbox_inbound",
        "--from", "+44 7700 900123",
        "--name", "Ana",
        "--text", "hello",
        "--url", f"{live_server.url}/webhooks/whatsapp/",
        stdout=out,
    )  # fmt: skip

    assert "answer: 200" in out.getvalue()
    (event,) = InboundEvent.objects.all()
    value = event.payload["entry"][0]["changes"][0]["value"]
    (number,) = PhoneNumber.objects.all()  # none existed: the sandbox's own, so that it is routed
    assert value["metadata"] == {
        "display_phone_number": number.display_phone_number,
        "phone_number_id": number.phone_number_id,
    }
    assert value["contacts"] == [{"profile": {"name": "Ana"}, "wa_id": "447700900123"}]
    assert value["messages"][0]["text"] == {"body": "hello"}
    assert value["messages"][0]["id"] in out.getvalue()


def send_image(live_server, tmp_path) -> InboundEvent:
    image = tmp_path / "photo.jpg"
    image.write_bytes(JPEG)
    call_command(
        "sandbox_inbound",
        "--from", "+447700900123",
        "--text", "a caption",
        "--image", str(image),
        "--url", f"{live_server.url}/webhooks/whatsapp/",
        stdout=StringIO(),
    )  # fmt: skip
    (event,) = InboundEvent.objects.all()
    return event


def test_sandbox_inbound_with_an_image_puts_it_in_the_sandbox_first(live_server, transactional_db, tmp_path):
    PhoneNumber.objects.create(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881")

    event = send_image(live_server, tmp_path)

    value = event.payload["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID}
    (sent,) = value["messages"]
    assert sent["type"] == "image"
    image = sent["image"]
    assert image["caption"] == "a caption" and image["mime_type"] == "image/jpeg"
    assert base64.b64decode(image["sha256"]) == hashlib.sha256(JPEG).digest()
    client = GraphClient(
        base_url=settings.WHATSAPP_GRAPH_URL, access_token=settings.WHATSAPP_ACCESS_TOKEN, timeout_s=5
    )
    info = client.media_info(image["id"])
    out = io.BytesIO()
    assert client.media_download(info["url"], out=out, max_bytes=len(JPEG)) == len(JPEG)
    assert out.getvalue() == JPEG
    client.close()


def test_an_image_sent_with_sandbox_inbound_ends_in_s3_once_parsed(
    live_server, transactional_db, tmp_path, bucket
):
    event = send_image(live_server, tmp_path)

    (message_id,) = inbound_payload_apply(event=event).media_message_ids
    media_fetch(message_id=message_id)
    message = Message.objects.get(id=message_id)
    assert message.media_state == Message.MediaState.STORED
    assert stored(message.media_key)["body"] == JPEG


def test_sandbox_inbound_says_when_the_endpoint_refuses(live_server, transactional_db):
    with pytest.raises(CommandError, match="answered 404"):
        call_command(
            "sandbox_inbound", "--from", "+447700900123", "--text", "hi",
            "--url", f"{live_server.url}/webhooks/nowhere/", stdout=StringIO(),
        )  # fmt: skip
    assert not InboundEvent.objects.exists()


# -- the task on a real worker over SQS ---------------------------------------------------------


@pytest.fixture
def sqs_queue_prefix(settings) -> str:
    """Queues of the test's own in the session's moto server, so that they start empty."""
    settings.SQS_QUEUE_PREFIX = f"wharf-test-{uuid4().hex[:10]}-"
    queues_ensure(visibility_timeout_override=30)
    return settings.SQS_QUEUE_PREFIX


@pytest.fixture
def incoming_worker(transactional_db, sqs_queue_prefix, tmp_path):
    """A real worker on `incoming`, with one-second backoffs."""
    with worker_running(
        queues=["incoming"],
        queue_prefix=sqs_queue_prefix,
        log_path=tmp_path / "worker.log",
        env={"MEDIA_FETCH_BACKOFF_S": "1"},
    ) as worker:
        yield worker


@pytest.mark.e2e
def test_a_worker_retries_through_sqs_delays_and_stores_the_media(
    inbound_media, incoming_worker, sqs_queue_prefix
):
    message = inbound_media()
    sandbox_faults(media_5xx=2)

    with broker_connection(sqs_queue_prefix) as connection:
        media_fetch_task.apply_async((message.id,), connection=connection)

    def fetched():
        message.refresh_from_db()
        return message.media_state == Message.MediaState.STORED

    wait_for(fetched, timeout_s=60, worker=incoming_worker, what="media stored")
    log = incoming_worker.log()
    assert log.count("Task messaging.media_fetch[") == 6  # received, retried, twice; received, succeeded
    # each retry waits in SQS (DelaySeconds), not in the worker as a Celery eta
    assert log.count("retry: Retry in 0s") == 2
    assert re.search(r"try 2 in 1 s", log) and re.search(r"try 3 in [12] s", log)
    assert stored(message.media_key)["body"] == JPEG
