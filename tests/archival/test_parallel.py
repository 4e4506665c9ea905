"""Days archived and restored by several workers at once, each on a connection of its own (rows
committed, as in production)."""

import pytest

from archival.messages import archive_batches_restore, messages_archive
from archival.models import ArchiveBatch
from messaging.models import Message, SendAttempt
from tests.archival.conftest import archived_wamids_of


def rows() -> dict:
    return {
        "messages": sorted(
            Message.objects.values_list("wamid", "status", "text", "payload", "timestamp", "updated_at")
        ),
        "attempts": sorted(SendAttempt.objects.values_list("id", "message_id", "outcome", "started_at")),
    }


def test_three_workers_archive_and_restore_every_day_once(
    transactional_db, old_messages, archive_prefix, settings, monkeypatch
):
    settings.ARCHIVE_WORKERS = 3
    before = rows()

    batches = messages_archive()

    assert len(batches) == 4 and {batch.state for batch in batches} == {ArchiveBatch.State.DELETED}
    assert Message.objects.count() == 2
    archived = archived_wamids_of(archive_prefix)
    assert set(archived) == {m.wamid for m in old_messages["old"]} and set(archived.values()) == {1}

    results = archive_batches_restore(batch_ids=[batch.pk for batch in batches])
    assert sum(result.inserted for result in results) == len(old_messages["old"])
    assert rows() == before


def test_a_failing_day_stops_new_ones_and_the_rerun_finishes(
    transactional_db, old_messages, archive_prefix, settings, monkeypatch
):
    settings.ARCHIVE_WORKERS = 2
    calls = []

    def crash_once(name: str) -> None:
        if name == "verified" and not calls:
            calls.append(name)
            raise RuntimeError("crash")

    monkeypatch.setattr("archival.messages.archival_crash_point", crash_once)
    with pytest.raises(RuntimeError):
        messages_archive()
    assert Message.objects.count() > 2

    messages_archive()
    assert Message.objects.count() == 2
    archived = archived_wamids_of(archive_prefix)
    assert set(archived) == {m.wamid for m in old_messages["old"]} and set(archived.values()) == {1}
