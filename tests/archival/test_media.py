"""Media archival on moto's S3 over HTTP: copy, check, repoint, delete; crashes between the steps;
presigned links that keep working; cold media that answer "archived, restore requested"."""

from io import StringIO

import httpx
import pytest
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.management import call_command

from archival.media import media_archive, media_archive_key
from archival.models import ArchiveBatch, ArchivedMedia
from core.aws import object_copy, object_head
from core.models import OperatorAlert
from core.storage import ARCHIVED_RESTORE_REQUESTED, file_save, media_storage
from messaging.media import media_access, media_presigned_url
from messaging.models import Message
from tests.archival.conftest import closed_port, days_ago
from tests.factories import MessageFactory, UserFactory

pytestmark = pytest.mark.django_db

JPEG = b"\xff\xd8\xff\xe0" + b"picture" * 100 + b"\xff\xd9"


class Crash(Exception):
    pass


@pytest.fixture
def media(archive_prefix):
    """Two old media messages (one sharing its file with a recent message), one recent, one old
    whose file is missing."""
    made = {}
    for name, days in (("old", 40), ("shared", 31), ("recent", 10), ("missing", 50)):
        key = f"{settings.MEDIA_INCOMING_PREFIX}{archive_prefix}{name}.jpg"
        if name != "missing":
            file_save(media_storage(), key, JPEG, content_type="image/jpeg")
        made[name] = MessageFactory(
            type="image",
            timestamp=days_ago(days),
            media_key=key,
            media_state=Message.MediaState.STORED,
            media_mime_type="image/jpeg",
            media_size=len(JPEG),
        )
    made["twin"] = MessageFactory(
        type="image",
        timestamp=days_ago(2),
        media_key=made["shared"].media_key,
        media_state=Message.MediaState.STORED,
    )
    return made


def exists(key: str) -> bool:
    return media_storage().exists(key)


def test_old_media_move_and_keep_working_links(media):
    originals = {name: message.media_key for name, message in media.items()}

    batch = media_archive()

    assert (batch.kind, batch.state, batch.record_count, batch.bytes) == (
        ArchiveBatch.Kind.MEDIA,
        ArchiveBatch.State.DELETED,
        2,
        2 * len(JPEG),
    )
    for name in ("old", "shared", "twin"):
        message = Message.objects.get(pk=media[name].pk)
        assert message.media_key == media_archive_key(source_key=originals[name])
        assert not exists(originals[name]) and exists(message.media_key)
        answer = httpx.get(media_presigned_url(message=message))
        assert answer.status_code == 200 and answer.content == JPEG
    head = object_head(Message.objects.get(pk=media["old"].pk).media_key)
    assert head["StorageClass"] == "STANDARD_IA"
    assert Message.objects.get(pk=media["recent"].pk).media_key == originals["recent"]
    assert Message.objects.get(pk=media["missing"].pk).media_key == originals["missing"]
    assert ArchivedMedia.objects.filter(source_deleted_at__isnull=False).count() == 2

    assert media_archive().record_count == 0


@pytest.mark.parametrize("point", ["media_copied", "media_repointed"])
def test_a_crash_between_the_steps_converges(media, monkeypatch, point):
    source = media["old"].media_key

    def crash(name: str) -> None:
        if name == point:
            raise Crash(name)

    monkeypatch.setattr("archival.media.archival_crash_point", crash)
    with pytest.raises(Crash):
        media_archive()
    message = Message.objects.get(pk=media["old"].pk)
    assert exists(message.media_key), "the message points at an object that is there"
    assert exists(source)

    monkeypatch.setattr("archival.media.archival_crash_point", lambda name: None)
    media_archive()

    message.refresh_from_db()
    assert message.media_key == media_archive_key(source_key=source)
    assert exists(message.media_key) and not exists(source)
    assert ArchivedMedia.objects.filter(source_key=source, source_deleted_at__isnull=False).count() == 1


def test_cold_media_answer_archived_restore_requested_then_work_again(media):
    media_archive()
    message = Message.objects.get(pk=media["old"].pk)
    # the bucket's lifecycle moves it to Glacier (moto does not run lifecycles: done by hand)
    object_copy(source_key=message.media_key, key=message.media_key, storage_class="GLACIER")
    with pytest.raises(ClientError, match="InvalidObjectState"):
        media_storage().open(message.media_key).read()

    reader = UserFactory(permissions=["contacts.view_contact"])
    assert media_access(message=message, user=reader) == (None, ARCHIVED_RESTORE_REQUESTED)

    assert object_head(message.media_key).get("Restore")
    url, note = media_access(message=message, user=reader)  # moto restores at once
    assert note == "" and httpx.get(url).content == JPEG


def test_the_admin_and_the_api_say_archived_restore_requested(media, admin_client, api_client):
    media_archive()
    message = Message.objects.get(pk=media["old"].pk)

    def freeze():  # a fresh cold copy each time: moto completes a restore at once
        object_copy(source_key=message.media_key, key=message.media_key, storage_class="DEEP_ARCHIVE")

    freeze()
    page = admin_client.get(f"/admin/messaging/message/conversation/{message.contact_id}/")
    assert ARCHIVED_RESTORE_REQUESTED in page.content.decode()

    freeze()
    client = api_client("messaging.view_message", "contacts.view_contact")
    body = client.get(f"/api/v1/messages/{message.pk}/").json()
    assert (body["media_url"], body["media_note"]) == (None, ARCHIVED_RESTORE_REQUESTED)


def test_command_moves_with_a_progress_bar(media):
    out, err = StringIO(), StringIO()
    call_command("archive_media", stdout=out, stderr=err)
    assert "moved 2 media file(s)" in out.getvalue()
    assert "files" in err.getvalue()


@pytest.mark.fault
def test_the_command_failing_alerts_operators_as_the_scheduled_run_does(media, settings):
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{closed_port()}"  # S3 down
    settings.AWS_CLIENT_TIMEOUT_S = 1

    with pytest.raises(Exception, match="connect"):
        call_command("archive_media", verbosity=0, stdout=StringIO())

    alert = OperatorAlert.objects.get(key="archival:media")
    assert "Archival of media failed" in alert.text and alert.acknowledged_at is None
    assert Message.objects.get(pk=media["old"].pk).media_key == media["old"].media_key  # not moved
