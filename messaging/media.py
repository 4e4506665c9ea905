"""Media of inbound messages: fetched through the Graph API, checked, kept in S3, served presigned.

A fetch asks Meta for the media's URL (`GET /{media-id}`), downloads it with the bearer token into
a temporary file (in memory up to SPOOL_MEMORY_BYTES, on disk beyond; never whole in memory),
hashing the bytes as they arrive, compares them with Meta's sha256 and size, streams the file to S3
at a key made only of the sender
number's id and Meta's media id, so a retry or a second delivery of the task writes the same
object again; only then is the message marked stored (a crash before that leaves it pending, and
the next run overwrites the object). Retryable failures (5xx, timeouts, Meta's throttling codes,
a corrupted download) are retried with exponential backoff and jitter, each retry an SQS-delayed
message: never a Celery countdown, which a worker would hold unacked past the queue's visibility
timeout. A permanent error, or the last retry, marks the message "media unavailable" with Meta's
code and title; media ids expire after 7 days, so waiting longer would not help. Storage and
database errors are not Meta's answer: they fail the task, so SQS redelivers it and finally moves
it to `incoming-dlq`.

A fetch that was never enqueued (SQS down when the event was processed) or whose task was lost
leaves the message pending; a beat sweeper enqueues again every message pending and untouched for
SWEEP_STALE_AFTER (each retry touches `updated_at`, so messages in a retry cycle are left to it),
and gives up on those whose media id has expired.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import mimetypes
import re
import tempfile
import uuid
from datetime import timedelta
from functools import partial
from typing import IO

from celery import shared_task
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from contacts.access import CONTACT_DATA_HIDDEN, contact_data_visible
from core.backoff import Backoff
from core.params import int_param
from core.queues import task_publish
from core.storage import cold_object_note, media_storage, media_stream_save, presigned_url
from messaging.graph import GraphError, GraphRetryableError, media_download, media_info
from messaging.models import Message
from messaging.outbound.content import media_max_bytes

logger = logging.getLogger(__name__)

# SQS delays a message by at most 900 s.
BACKOFF_MAX_S = 600
# Pending media untouched this long has no task on its way; Meta's media ids last 7 days.
SWEEP_STALE_AFTER = timedelta(minutes=30)
SWEEP_BATCH = 500
MEDIA_ID_TTL = timedelta(days=7)
# A download stays in memory up to this size, then goes to a temporary file.
SPOOL_MEMORY_BYTES = 1024 * 1024

# Extensions for the types WhatsApp carries; other types take Python's built-in table, never the
# machine's, so that every worker makes the same key.
_EXTENSIONS = {
    "audio/aac": ".aac",
    "audio/amr": ".amr",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/ogg": ".ogg",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "video/3gpp": ".3gp",
    "video/mp4": ".mp4",
    "text/plain": ".txt",
    "application/pdf": ".pdf",
    "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}
_BUILT_IN_TYPES = mimetypes.MimeTypes()  # built from Python's defaults only: no files are read


class _HashingWriter:
    """Writes to a file, keeping the sha256 and size of what went through."""

    def __init__(self, file: IO[bytes]):
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self.sha256.update(chunk)
        self.size += len(chunk)
        return self.file.write(chunk)


class MediaIntegrityError(Exception):
    """The bytes downloaded are not the file Meta described (sha256 or size differ)."""

    retryable = True

    @property
    def reason(self) -> str:
        return str(self)


def media_fetch(*, message_id: int) -> None:
    """Fetch a pending message's media into S3 and record it; a message not pending is left alone.

    Raises GraphError or MediaIntegrityError for the task to retry or give up on.
    """
    message = Message.objects.select_related("phone_number").filter(id=message_id).first()
    if message is None or message.media_state != Message.MediaState.PENDING or not message.media_id:
        logger.info("media of message %s: nothing to fetch", message_id)
        return
    info = media_info(message.media_id)
    mime_type = mime_base(str(info.get("mime_type") or message.media_mime_type)) or "application/octet-stream"
    phone_number_id = message.phone_number.phone_number_id if message.phone_number else ""
    key = media_key(phone_number_id=phone_number_id, media_id=message.media_id, mime_type=mime_type)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        download = _HashingWriter(spool)
        media_download(info["url"], out=download)
        digest, size = download.sha256.digest(), download.size
        _media_verify(size=size, digest=digest, info=info)
        spool.seek(0)
        media_stream_save(key, spool, content_type=mime_type)
    message.media_key = key
    message.media_mime_type = mime_type
    message.media_size = size
    message.media_sha256 = digest.hex()
    message.media_state = Message.MediaState.STORED
    message.media_error = ""
    message.save(
        update_fields=[
            "media_key",
            "media_mime_type",
            "media_size",
            "media_sha256",
            "media_state",
            "media_error",
            "updated_at",
        ]
    )
    logger.info("media of message %s stored at %s (%d bytes)", message_id, key, size)


def media_mark_unavailable(*, message_id: int, reason: str) -> bool:
    """Give up on a pending message's media, saying why; False when it was not pending any more."""
    updated = Message.objects.filter(id=message_id, media_state=Message.MediaState.PENDING).update(
        media_state=Message.MediaState.UNAVAILABLE,
        media_error=f"media unavailable: {reason}",
        updated_at=timezone.now(),
    )
    logger.warning("media of message %s unavailable: %s", message_id, reason)
    return bool(updated)


def media_fetch_sweep(*, limit: int = SWEEP_BATCH) -> list[int]:
    """Enqueue the fetch again for media left pending; mark unavailable what Meta no longer has.

    The chosen rows are touched under SKIP LOCKED, so overlapping sweeps never pick the same ones,
    and their tasks are enqueued after commit. Returns the ids enqueued.
    """
    now = timezone.now()
    pending = Message.objects.filter(media_state=Message.MediaState.PENDING)
    expired = pending.filter(timestamp__lt=now - MEDIA_ID_TTL).update(
        media_state=Message.MediaState.UNAVAILABLE,
        media_error="media unavailable: Meta's media id expired (after 7 days) before it could be fetched",
        updated_at=now,
    )
    if expired:
        logger.warning("media of %d message(s) unavailable: their media ids expired", expired)
    with transaction.atomic():
        message_ids = list(
            pending.filter(updated_at__lt=now - SWEEP_STALE_AFTER)
            .order_by("id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        if message_ids:
            Message.objects.filter(id__in=message_ids).update(updated_at=now)
            transaction.on_commit(partial(media_fetch_enqueue, message_ids))
    if message_ids:
        logger.info("media fetch enqueued again for %d message(s)", len(message_ids))
    return message_ids


def media_fetch_enqueue(message_ids: list[int]) -> None:
    """One fetch task per message, after commit; one SQS cannot take waits for the media sweeper."""
    for message_id in message_ids:
        task_publish(
            media_fetch_task,
            args=(message_id,),
            what=f"the media fetch of message {message_id}",
            fallback="the media sweeper",
        )


def media_fetch_backoff_s(*, retries: int) -> int:
    """Whole seconds (a Celery countdown), capped below SQS's limit on a message's delay."""
    return max(
        1, round(Backoff(base_s=settings.MEDIA_FETCH_BACKOFF_S, cap_s=BACKOFF_MAX_S).seconds(retries + 1))
    )


@shared_task(name="messaging.media_fetch", bind=True, max_retries=None)
def media_fetch_task(self, message_id: int) -> None:
    max_retries = settings.MEDIA_FETCH_MAX_RETRIES
    try:
        media_fetch(message_id=message_id)
    except (GraphRetryableError, MediaIntegrityError) as error:
        tries = self.request.retries + 1
        if self.request.retries >= max_retries:
            media_mark_unavailable(message_id=message_id, reason=f"{error.reason} (after {tries} tries)")
            return
        delay_s = media_fetch_backoff_s(retries=self.request.retries)
        # touched, so that the sweeper leaves a message in a retry cycle to it
        Message.objects.filter(id=message_id, media_state=Message.MediaState.PENDING).update(
            updated_at=timezone.now()
        )
        logger.warning(
            "media of message %s: %s; try %d in %d s", message_id, error.reason, tries + 1, delay_s
        )
        # countdown=0: the delay is SQS's own (DelaySeconds), not an eta held by a worker.
        raise self.retry(exc=error, countdown=0, delay_seconds=delay_s, max_retries=max_retries) from error
    except GraphError as error:
        media_mark_unavailable(message_id=message_id, reason=error.reason)


@shared_task(name="messaging.media_fetch_sweep")
def media_fetch_sweep_task() -> int:
    return len(media_fetch_sweep())


def media_presigned_url(*, message: Message) -> str | None:
    """A short-lived GET URL for the message's stored media, for no reader in particular; None when
    nothing is stored or it is archived in a cold storage class. A door for a user asks
    `media_access`, which also checks that they may read contact data."""
    return media_link(message=message)[0]


def media_archive_prefix() -> str:
    """Where archival moves old media; only there may an object be in a cold storage class."""
    return f"{settings.ARCHIVE_PREFIX}media/"


def media_access(*, message: Message, user: AbstractBaseUser | AnonymousUser) -> tuple[str | None, str]:
    """(presigned URL or None, note) for `user`: the note says why there is no link, for a user who
    may not read contact data (what a contact sent is theirs: contacts.access) or for archived media
    in a cold class ("archived, restore requested"; asking requests the restore)."""
    if message.media_state == Message.MediaState.STORED and not contact_data_visible(user):
        return None, CONTACT_DATA_HIDDEN
    return media_link(message=message)


def media_link(*, message: Message) -> tuple[str | None, str]:
    """`media_access` for a door that has already checked its user may read contact data (an admin
    field shown only to them): (presigned URL or None, why none)."""
    if message.media_state != Message.MediaState.STORED or not message.media_key:
        return None, ""
    if message.media_key.startswith(media_archive_prefix()):
        note = cold_object_note(message.media_key)
        if note:
            return None, note
    url = presigned_url(
        media_storage(),
        message.media_key,
        filename=message.media_filename or None,
        content_type=message.media_mime_type or None,
    )
    return url, ""


def media_key(*, phone_number_id: str, media_id: str, mime_type: str) -> str:
    """`<MEDIA_INCOMING_PREFIX><phone_number_id or "unknown">/<media_id><ext>`: the same for every try."""
    folder = _key_part(phone_number_id) or "unknown"
    return f"{settings.MEDIA_INCOMING_PREFIX}{folder}/{_key_part(media_id)}{media_extension(mime_type)}"


def media_extension(mime_type: str) -> str:
    base = mime_base(mime_type)
    return _EXTENSIONS.get(base) or _BUILT_IN_TYPES.guess_extension(base) or ""


def mime_base(mime_type: str) -> str:
    """`audio/ogg; codecs=opus` → `audio/ogg`."""
    return mime_type.split(";", 1)[0].strip().lower()


def _key_part(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value).strip(".")


def _media_verify(*, size: int, digest: bytes, info: dict) -> None:
    expected = str(info.get("sha256") or "")
    if expected and _hash_bytes(expected) != digest:
        raise MediaIntegrityError(
            f"sha256 mismatch: Meta gave {expected}, the download has {digest.hex()} ({size} bytes)"
        )
    declared = int_param(str(info.get("file_size", "")))
    if declared is not None and declared != size:
        raise MediaIntegrityError(f"size mismatch: Meta gave {declared} bytes, the download has {size}")


def _hash_bytes(text: str) -> bytes | None:
    """Meta's sha256 as bytes: hex (as `GET /{media-id}` gives it) or base64 (as webhooks carry it)."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def media_outgoing_upload(*, file: IO[bytes], filename: str, content_type: str) -> str:
    """Store a file to send under MEDIA_OUTGOING_PREFIX; returns its key for `message_send`'s s3_key.

    The key is new for every upload (a random folder keeps the sender's file name readable); the
    file is streamed to S3 from where an upload spooled it. Raises ValidationError on `file` when it
    is larger than WhatsApp takes for its type (or MEDIA_UPLOAD_MAX_BYTES), before anything is stored."""
    content_type = content_type or "application/octet-stream"
    size = getattr(file, "size", None)
    limit = min(media_max_bytes(content_type), settings.MEDIA_UPLOAD_MAX_BYTES)
    if size is not None and size > limit:
        raise ValidationError(
            {"file": f"{size:,} bytes is more than the {limit:,} a {mime_base(content_type)} file may have."}
        )
    safe_name = _UNSAFE_FILENAME.sub("_", filename or "file").strip("._") or "file"
    key = f"{settings.MEDIA_OUTGOING_PREFIX}{uuid.uuid4().hex}/{safe_name[:200]}"
    file.seek(0)
    media_stream_save(key, file, content_type=content_type)
    return key


def media_outgoing_discard(*, key: str) -> None:
    """Remove an uploaded file that will not be sent after all."""
    media_storage().delete(key)
