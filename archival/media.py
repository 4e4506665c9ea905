"""Media archival: stored media older than ARCHIVE_MEDIA_AFTER_DAYS move under `<ARCHIVE_PREFIX>media/`.

Each file is copied to `<ARCHIVE_PREFIX>media/<its key>` in STANDARD_IA (the bucket's lifecycle
takes it to Glacier later), the copy is checked against the original (size, and the ETag when the
original's is a plain MD5), then one transaction points every message that used the original at
the copy and records the move (ArchivedMedia); only then is the original deleted and the move
marked done. A crash before the commit leaves the messages on the original and the rerun copies
again to the same key; a crash after it leaves a recorded move whose original still exists, and
every run starts by deleting those. A message's media is thus always at the key it points to.

Media in a cold class (Glacier, Deep Archive) cannot be read until restored: asking for its link
requests a restore and answers "archived, restore requested" instead of a link that would fail
(messaging.media.media_access); once S3 has restored it, links work again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from archival.messages import ArchivalError, Progress, archival_crash_point, archival_lock
from archival.models import ArchiveBatch, ArchivedMedia
from core.aws import object_copy, object_head
from core.storage import media_storage
from messaging.media import media_archive_prefix
from messaging.models import Message

logger = logging.getLogger(__name__)

STORAGE_CLASS = "STANDARD_IA"
CHUNK = 500


def media_archive_key(*, source_key: str) -> str:
    return f"{media_archive_prefix()}{source_key}"


def media_archivable(*, older_than_days: int) -> models.QuerySet[Message]:
    today = timezone.now().astimezone(UTC).date()
    cutoff = datetime.combine(today - timedelta(days=older_than_days), dt_time.min, tzinfo=UTC)
    return (
        Message.objects.filter(media_state=Message.MediaState.STORED, timestamp__lt=cutoff)
        .exclude(media_key="")
        .exclude(media_key__startswith=media_archive_prefix())
    )


def media_archive(*, older_than_days: int | None = None, progress: Progress | None = None) -> ArchiveBatch:
    """Move every stored medium older than `older_than_days` (ARCHIVE_MEDIA_AFTER_DAYS); returns the
    run's batch (files moved, bytes)."""
    days = settings.ARCHIVE_MEDIA_AFTER_DAYS if older_than_days is None else older_than_days
    with archival_lock():
        _originals_delete()
        batch = ArchiveBatch.objects.create(
            kind=ArchiveBatch.Kind.MEDIA,
            day=timezone.now().astimezone(UTC).date(),
            key=media_archive_prefix(),
            snapshot_at=timezone.now(),
        )
        try:
            last_id = 0
            while chunk := list(
                media_archivable(older_than_days=days)
                .filter(id__gt=last_id)
                .order_by("id")
                .values_list("id", "media_key")[:CHUNK]
            ):
                for _message_id, source_key in chunk:
                    size = _media_move(batch=batch, source_key=source_key)
                    if size is not None:
                        batch.record_count += 1
                        batch.bytes += size
                    if progress is not None:
                        progress(1)
                last_id = chunk[-1][0]
        except Exception as error:
            batch.error = f"{type(error).__name__}: {error}"[:2000]
            batch.save(update_fields=["record_count", "bytes", "error"])
            raise
        batch.state = ArchiveBatch.State.DELETED if batch.record_count else ArchiveBatch.State.EMPTY
        batch.deleted_count = batch.record_count
        batch.uploaded_at = batch.verified_at = batch.deleted_at = timezone.now()
        batch.save()
    logger.info("media archival: %d file(s), %d byte(s) moved", batch.record_count, batch.bytes)
    return batch


def _media_move(*, batch: ArchiveBatch, source_key: str) -> int | None:
    """Copy, check, repoint, delete one original; None when it was not there any more."""
    key = media_archive_key(source_key=source_key)
    source = object_head(source_key)
    if source is None:
        logger.warning("media archival: %s is not in the bucket; its message(s) left as they are", source_key)
        return None
    object_copy(source_key=source_key, key=key, storage_class=STORAGE_CLASS)
    archival_crash_point("media_copied")
    copy = object_head(key) or {"ContentLength": None}
    source_etag = source.get("ETag", "")
    if copy["ContentLength"] != source["ContentLength"] or (
        "-" not in source_etag and copy.get("ETag") != source_etag
    ):
        raise ArchivalError(f"the copy of {source_key} at {key} differs from it; the original is kept")
    with transaction.atomic():
        moved = Message.objects.filter(media_key=source_key).update(media_key=key)
        if not moved:
            return None
        ArchivedMedia.objects.get_or_create(
            source_key=source_key,
            defaults={
                "batch": batch,
                "message_id": Message.objects.filter(media_key=key).values_list("id", flat=True).first() or 0,
                "key": key,
                "size": source["ContentLength"],
            },
        )
    archival_crash_point("media_repointed")
    _original_delete(source_key=source_key)
    return source["ContentLength"]


def _original_delete(*, source_key: str) -> None:
    media_storage().delete(source_key)
    ArchivedMedia.objects.filter(source_key=source_key).update(source_deleted_at=timezone.now())


def _originals_delete() -> None:
    """Finish the moves an interrupted run recorded but did not clean up after."""
    for source_key in ArchivedMedia.objects.filter(source_deleted_at__isnull=True).values_list(
        "source_key", flat=True
    ):
        _original_delete(source_key=source_key)
