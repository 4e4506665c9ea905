"""Message archival against PostgreSQL and moto's S3 over HTTP: objects, verify-then-delete, crashes
at every step between commits, S3 down, and the restore's round trip."""

import os
from collections import Counter
from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict
from django.utils import timezone

from archival.messages import (
    LOCK_ID,
    SCHEMA_VERSION,
    ArchivalBusy,
    ArchivalError,
    archival_lock,
    archive_batches_restore,
    message_references,
    messages_archive,
    messages_restore,
)
from archival.models import ArchiveBatch, ArchivedConversation
from archival.tasks import messages_archive_task
from campaigns.models import Campaign, Recipient
from core.aws import multipart_uploads_pending, object_head
from core.models import OperatorAlert
from core.storage import archive_storage, file_save
from messaging.models import AnalyticsEvent, Message, SendAttempt
from tests.archival.conftest import archive_objects, closed_port, days_ago
from tests.factories import ContactFactory, MessageFactory
from tests.platform.conftest import database_url

pytestmark = pytest.mark.django_db


class Crash(Exception):
    pass


def crash_at(monkeypatch, point: str) -> None:
    def crash(name: str) -> None:
        if name == point:
            raise Crash(name)

    monkeypatch.setattr("archival.messages.archival_crash_point", crash)


def snapshot() -> dict:
    messages = {
        m.wamid: {**model_to_dict(m), "created_at": m.created_at, "updated_at": m.updated_at}
        for m in Message.objects.all()
    }
    attempts = {a.pk: model_to_dict(a) for a in SendAttempt.objects.all()}
    return {"messages": messages, "attempts": attempts}


def archived_wamids(prefix: str) -> Counter:
    return Counter(record["wamid"] for records in archive_objects(prefix).values() for record in records)


def test_old_days_become_one_verified_object_each_and_their_rows_go(old_messages, archive_prefix):
    old, recent = old_messages["old"], old_messages["recent"]
    outbound = old[-1]

    batches = messages_archive()

    assert sorted(batch.day for batch in batches) == sorted(
        {days_ago(days).date() for days in (95, 94, 93, 91)}
    )
    assert all(batch.state == ArchiveBatch.State.DELETED for batch in batches)
    assert sum(batch.record_count for batch in batches) == len(old)
    assert sum(batch.deleted_count for batch in batches) == len(old)
    assert set(Message.objects.values_list("wamid", flat=True)) == {m.wamid for m in recent}
    assert not SendAttempt.objects.exists()
    assert AnalyticsEvent.objects.get(wamid=outbound.wamid).message_id is None

    objects = archive_objects(archive_prefix)
    assert set(objects) == {batch.key for batch in batches}
    batch = next(b for b in batches if b.day == days_ago(94).date())
    assert batch.key == (
        f"{archive_prefix}messages/{batch.day:%Y/%m/%d}/messages-{batch.day:%Y%m%d}-{batch.pk}.jsonl.gz"
    )
    (record,) = objects[batch.key]
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["wamid"] == outbound.wamid
    assert record["context_wamid"] == old[0].wamid
    assert (record["error_code"], record["error_title"]) == (131026, "Message undeliverable")
    assert record["media_key"] == "whatsapp-media/x/y.jpg"
    assert [attempt["outcome"] for attempt in record["send_attempts"]] == ["retry", "failed"]
    analytics = AnalyticsEvent.objects.get(wamid=outbound.wamid)
    assert record["references"]["messaging_analyticsevent.message_id"] == [analytics.pk]
    head = object_head(batch.key)
    assert head["ContentLength"] == batch.bytes and batch.sha256 and batch.etag
    assert batch.uploaded_at and batch.verified_at and batch.deleted_at
    contact = old_messages["contacts"][0]
    assert sum(ArchivedConversation.objects.filter(contact=contact).values_list("messages", flat=True)) == 5

    assert messages_archive() == []  # nothing left: a second run changes nothing


@pytest.mark.parametrize("point", ["uploaded", "verified", "deleting"])
def test_a_crash_between_any_two_commits_converges_on_rerun(old_messages, archive_prefix, monkeypatch, point):
    wamids = {m.wamid for m in old_messages["old"]}
    crash_at(monkeypatch, point)

    with pytest.raises(Crash):
        messages_archive()

    assert wamids <= set(Message.objects.values_list("wamid", flat=True)), "nothing deleted before the crash"
    (crashed,) = ArchiveBatch.objects.exclude(state=ArchiveBatch.State.DELETED)
    assert "Crash" in crashed.error

    monkeypatch.setattr("archival.messages.archival_crash_point", lambda name: None)
    messages_archive()

    assert not Message.objects.filter(wamid__in=wamids).exists()
    archived = archived_wamids(archive_prefix)
    assert set(archived) == wamids and set(archived.values()) == {1}, "each message in exactly one object"
    assert ArchiveBatch.objects.exclude(state=ArchiveBatch.State.DELETED).count() == 0


def test_a_crash_in_the_middle_of_the_delete_leaves_every_row(old_messages, archive_prefix, monkeypatch):
    crash_at(monkeypatch, "deleting")
    before = snapshot()

    with pytest.raises(Crash):
        messages_archive()

    assert snapshot() == before  # the send attempts, deleted before the crash, are back too
    assert not ArchivedConversation.objects.exists()


def test_an_object_s3_does_not_hold_as_written_is_written_again(old_messages, archive_prefix, monkeypatch):
    crash_at(monkeypatch, "uploaded")
    with pytest.raises(Crash):
        messages_archive()
    (batch,) = ArchiveBatch.objects.all()
    file_save(archive_storage(), batch.key, b"truncated", content_type="application/gzip")
    monkeypatch.setattr("archival.messages.archival_crash_point", lambda name: None)

    with pytest.raises(ArchivalError, match="written again"):
        messages_archive()
    assert Message.objects.count() == len(old_messages["old"]) + 2
    messages_archive()

    assert Message.objects.count() == 2
    assert set(archived_wamids(archive_prefix)) == {m.wamid for m in old_messages["old"]}


def test_with_s3_down_nothing_is_deleted_and_a_later_run_archives(old_messages, archive_prefix, settings):
    endpoint = settings.AWS_ENDPOINT_URL
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{closed_port()}"
    settings.AWS_CLIENT_TIMEOUT_S = 1
    before = snapshot()

    with pytest.raises(Exception, match="connect"):
        messages_archive()

    assert snapshot() == before
    settings.AWS_ENDPOINT_URL = endpoint
    messages_archive()
    assert Message.objects.count() == 2


def test_a_failed_run_alerts_operators_and_fails_its_task(
    old_messages, archive_prefix, settings, mailoutbox, django_capture_on_commit_callbacks, caplog
):
    settings.ADMINS = [("Operators", "ops@example.com")]
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{closed_port()}"
    settings.AWS_CLIENT_TIMEOUT_S = 1

    with django_capture_on_commit_callbacks(execute=True):
        result = messages_archive_task.apply()

    assert result.failed()  # the worker rejects it: SQS redelivers, then moves it to archival-dlq
    alert = OperatorAlert.objects.get(key="archival:messages")
    assert "Archival of messages failed" in alert.text and alert.acknowledged_at is None
    assert [message.to for message in mailoutbox] == [["ops@example.com"]]
    assert any(r.levelname == "ERROR" and "archival of messages failed" in r.message for r in caplog.records)
    assert Message.objects.count() == len(old_messages["old"]) + 2


@pytest.mark.fault
def test_the_command_failing_alerts_operators_as_the_scheduled_run_does(
    old_messages, archive_prefix, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.ADMINS = [("Operators", "ops@example.com")]
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{closed_port()}"  # S3 down
    settings.AWS_CLIENT_TIMEOUT_S = 1

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Exception, match="connect"):
        call_command("archive_messages", verbosity=0, stdout=StringIO())

    alert = OperatorAlert.objects.get(key="archival:messages")
    assert "Archival of messages failed" in alert.text and alert.acknowledged_at is None
    assert [message.to for message in mailoutbox] == [["ops@example.com"]]
    assert Message.objects.count() == len(old_messages["old"]) + 2


def test_rows_changed_after_the_snapshot_stay_for_the_next_run(old_messages, archive_prefix, monkeypatch):
    changed = old_messages["old"][0]

    def touch(name: str) -> None:
        if name == "verified":
            Message.objects.filter(pk=changed.pk).update(
                status=Message.Status.DELETED, updated_at=timezone.now()
            )

    monkeypatch.setattr("archival.messages.archival_crash_point", touch)
    messages_archive()

    assert list(Message.objects.filter(timestamp__lt=days_ago(90))) == [changed]
    monkeypatch.setattr("archival.messages.archival_crash_point", lambda name: None)
    (batch,) = messages_archive()
    assert batch.day == changed.timestamp.date() and batch.deleted_count == 1
    restored = archive_batches_restore(batch_ids=[batch.pk])
    assert Message.objects.get(wamid=changed.wamid).status == Message.Status.DELETED
    assert restored[0].inserted == 1


def test_restore_puts_back_every_field_and_is_idempotent(old_messages, archive_prefix):
    before = snapshot()
    messages_archive()
    assert Message.objects.count() == 2

    first, last = days_ago(96).date(), days_ago(90).date()
    results = messages_restore(day_from=first, day_to=last)

    assert sum(result.inserted for result in results) == len(old_messages["old"])
    after = snapshot()
    assert after["messages"].keys() == before["messages"].keys()
    for wamid, fields in before["messages"].items():
        assert after["messages"][wamid] == fields, wamid
    assert after["attempts"] == before["attempts"]
    outbound = Message.objects.get(wamid=old_messages["old"][-1].wamid)
    assert AnalyticsEvent.objects.get(wamid=outbound.wamid).message_id == outbound.pk, "linked again"

    again = messages_restore(day_from=first, day_to=last)
    assert sum(result.inserted for result in again) == 0
    assert snapshot() == after


def test_a_campaign_recipient_loses_its_link_while_archived_and_gets_it_back(old_messages, archive_prefix):
    message = old_messages["old"][-1]
    campaign = Campaign.objects.create(name="spring")
    recipient = Recipient.objects.create(
        campaign=campaign,
        contact=message.contact,
        address="x",
        status=Recipient.Status.QUEUED,
        message=message,
    )

    messages_archive()
    recipient.refresh_from_db()
    assert recipient.message_id is None and recipient.status == Recipient.Status.QUEUED

    messages_restore(day_from=days_ago(96).date(), day_to=days_ago(90).date())
    recipient.refresh_from_db()
    assert recipient.message_id == message.pk


def test_restore_skips_messages_of_deleted_contacts(old_messages, archive_prefix):
    messages_archive()
    gone = old_messages["contacts"][1]
    gone.delete()

    results = messages_restore(day_from=days_ago(96).date(), day_to=days_ago(90).date())

    assert sum(result.skipped_contact_gone for result in results) == 4
    assert not Message.objects.filter(contact_id=gone.pk).exists()
    assert Message.objects.count() == 2 + len(old_messages["old"]) - 4


def test_restore_refuses_an_object_that_changed(old_messages, archive_prefix):
    (batch, *_) = messages_archive()
    file_save(archive_storage(), batch.key, b"", content_type="application/gzip")
    with pytest.raises(ArchivalError, match="sha256"):
        archive_batches_restore(batch_ids=[batch.pk])


def test_references_to_messages_are_cleared_or_archived():
    references = {(r.table, r.column): r.action for r in message_references()}
    assert references[("messaging_sendattempt", "message_id")] == "delete"
    assert references[("messaging_analyticsevent", "message_id")] == "set_null"
    assert set(references.values()) <= {"delete", "set_null"}


def test_one_run_at_a_time(old_messages, archive_prefix):
    """Another session (a second worker) holding the lock keeps this run from starting."""
    with psycopg.connect(database_url(settings.DATABASES["default"]), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [LOCK_ID])
        with pytest.raises(ArchivalBusy):
            messages_archive()
        other.execute("SELECT pg_advisory_unlock(%s)", [LOCK_ID])
    with archival_lock():  # free again; and a session may take it twice
        assert messages_archive()


def test_commands_archive_with_a_progress_bar_and_restore(old_messages, archive_prefix):
    out, err = StringIO(), StringIO()
    call_command("archive_messages", stdout=out, stderr=err)
    assert "archived 9 message(s) in 4 batch(es)" in out.getvalue()
    assert "rows" in err.getvalue()  # tqdm's bar
    assert Message.objects.count() == 2

    out = StringIO()
    first, last = days_ago(96).date(), days_ago(90).date()
    call_command("archive_restore", "--from", first.isoformat(), "--to", last.isoformat(), stdout=out)
    assert "restored 9 message(s) from 4 batch(es)" in out.getvalue()
    assert Message.objects.count() == 11

    with pytest.raises(CommandError, match="--from"):
        call_command("archive_restore", "--from", "yesterday", "--to", last.isoformat())
    with pytest.raises(CommandError, match="after"):
        call_command(
            "archive_restore", "--from", last.isoformat(), "--to", (last - timedelta(days=1)).isoformat()
        )


def test_the_age_is_configurable(old_messages, archive_prefix, settings):
    settings.ARCHIVE_MESSAGES_AFTER_DAYS = 94
    batches = messages_archive()
    assert {batch.day for batch in batches} == {days_ago(95).date()}
    assert messages_archive(older_than_days=0)
    assert Message.objects.count() == 0


@pytest.fixture
def big_day(db, monkeypatch):
    """A day whose object takes two parts of a smaller PART_SIZE (S3's least, 5 MiB)."""
    monkeypatch.setattr("archival.messages.PART_SIZE", 5 * 1024 * 1024)
    contact = ContactFactory()
    return [
        MessageFactory(contact=contact, timestamp=days_ago(100, hour=hour), text=os.urandom(2_500_000).hex())
        for hour in range(3)
    ]


def test_a_big_day_goes_up_in_parts_and_comes_back(big_day, archive_prefix):
    before = snapshot()

    (batch,) = messages_archive()

    assert batch.etag.endswith("-2") and batch.bytes > 5 * 1024 * 1024
    assert Message.objects.count() == 0
    archive_batches_restore(batch_ids=[batch.pk])
    assert snapshot() == before


def test_a_failure_during_the_parts_leaves_no_upload_and_every_row(big_day, archive_prefix, monkeypatch):
    def fail(self, number, body):
        raise ConnectionError("S3 went away")

    monkeypatch.setattr("core.aws.ObjectUpload._upload_part", fail)
    with pytest.raises(ConnectionError):
        messages_archive()

    assert Message.objects.count() == 3
    (batch,) = ArchiveBatch.objects.all()
    assert multipart_uploads_pending(batch.key) == []
    monkeypatch.undo()
    monkeypatch.setattr("archival.messages.PART_SIZE", 5 * 1024 * 1024)
    messages_archive()
    assert Message.objects.count() == 0
