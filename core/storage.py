"""The bucket's files through django-storages (`STORAGES` in config/settings.py).

- `media`: media received and media to send, under MEDIA_INCOMING_PREFIX and MEDIA_OUTGOING_PREFIX,
  and their archived copies under ARCHIVE_PREFIX; names are the objects' keys, as messages record them.
- `reports`: campaign reports, under REPORTS_PREFIX; names are relative to it.
- `archive`: the message archives under ARCHIVE_PREFIX; names are keys, as their batches record them.

The bucket is never public: files are handed out only as presigned GET URLs, made by `presigned_url`
alone, short-lived (PRESIGNED_URL_EXPIRY_S unless the caller needs longer) and never shown inline by a
browser unless their type is one a browser can only display (INLINE_TYPES); anything else downloads
as application/octet-stream.
"""

from __future__ import annotations

import logging
from typing import IO
from urllib.parse import quote

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from storages.backends import s3

from core.aws import ObjectUpload, object_head, object_restore

logger = logging.getLogger(__name__)

# Types a browser displays without running anything: images (not SVG), audio, video, and PDF (shown
# by the browser's own viewer, sandboxed away from the page's origin).
INLINE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "audio/aac",
        "audio/amr",
        "audio/mpeg",
        "audio/mp4",
        "audio/ogg",
        "video/mp4",
        "video/3gpp",
        "application/pdf",
    }
)
# What every other type is served as, with `attachment`: bytes to save, never a page to render.
DOWNLOAD_TYPE = "application/octet-stream"


class S3Storage(s3.S3Storage):
    """django-storages' S3Storage, except that no Content-Encoding is guessed from a file's name:
    a medium called `x.tar.gz` is a gzip file to download, not a response for the browser to
    unpack. (Its Content-Type is the one its file carries: see `file_save`.)"""

    def _get_write_parameters(self, name, content=None):
        params = super()._get_write_parameters(name, content)
        if "ContentEncoding" not in self.get_object_parameters(name):
            params.pop("ContentEncoding", None)
        return params


class FileMissing(FileNotFoundError):
    """No object under that name."""


def media_storage() -> Storage:
    return storages["media"]


def reports_storage() -> Storage:
    return storages["reports"]


def archive_storage() -> Storage:
    return storages["archive"]


def _ascii_filename(filename: str) -> str:
    """RFC 6266's fallback `filename` for clients that ignore `filename*`: ASCII only, no quotes,
    backslashes or control characters."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)


def content_disposition(*, content_type: str | None, filename: str | None = None) -> str:
    """`inline` for the types in INLINE_TYPES, `attachment` for any other (or none), with the file
    name both as an ASCII fallback and in RFC 5987's UTF-8 form when there is one."""
    disposition = "inline" if _inline(content_type) else "attachment"
    if filename:
        fallback, encoded = _ascii_filename(filename), quote(filename, safe="")
        disposition += f"; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    return disposition


def _inline(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() in INLINE_TYPES


def presigned_url(
    storage: Storage,
    name: str,
    *,
    expire: int | None = None,
    filename: str | None = None,
    content_type: str | None = None,
    exact_type: bool = False,
) -> str:
    """A GET URL for one file that lasts `expire` seconds (PRESIGNED_URL_EXPIRY_S by default, read
    at each call). The response always carries a disposition (see `content_disposition`) and a
    type: `content_type` when it is in INLINE_TYPES, else application/octet-stream, whatever type
    the object was stored with, so that a browser never renders a sender's HTML or SVG from the
    bucket's origin. `exact_type` keeps `content_type` where it is not a sender's word: a file Wharf
    wrote itself (a report, an archive), or a reader that needs it and is no browser (Meta fetching
    a medium to send); such a file still downloads as an attachment."""
    inline = _inline(content_type)
    parameters = {
        "ResponseContentDisposition": content_disposition(content_type=content_type, filename=filename),
        "ResponseContentType": content_type if content_type and (inline or exact_type) else DOWNLOAD_TYPE,
    }
    if expire is None:
        expire = settings.PRESIGNED_URL_EXPIRY_S
    return storage.url(name, parameters=parameters, expire=expire)


def file_save(storage: Storage, name: str, content: bytes | IO[bytes], *, content_type: str) -> str:
    """Store `content` under exactly `name`, replacing any file there, typed `content_type`;
    returns the name."""
    file = ContentFile(content) if isinstance(content, bytes) else File(content)
    file.content_type = content_type  # what S3Storage sends as the object's Content-Type
    return storage.save(name, file)


# S3's smallest part: a streamed file holds about two of them in memory, whatever its size.
STREAM_PART_BYTES = 5 * 1024 * 1024
STREAM_READ_BYTES = 256 * 1024


def media_stream_save(key: str, file: IO[bytes], *, content_type: str) -> int:
    """Stream `file`, from where it stands, to the bucket under exactly `key` (a media storage
    name), typed `content_type`, in parts checked by S3 (core.aws.ObjectUpload): memory holds about
    two parts however large the file is, and nothing appears under `key` unless all of it was
    stored. Returns its size."""
    upload = ObjectUpload(key, content_type=content_type, part_size=STREAM_PART_BYTES)
    try:
        while chunk := file.read(STREAM_READ_BYTES):
            upload.write(chunk)
        upload.close()
    except BaseException:
        upload.abort()
        raise
    return upload.size


def media_head(key: str) -> tuple[str, int]:
    """(content type, size in bytes) of a stored medium, asked of S3 without downloading it.

    Raises FileMissing when there is none under `key`."""
    try:
        file = media_storage().open(key)  # a HEAD: the bytes are read only when asked for
    except FileNotFoundError:
        raise FileMissing(f"No object {key} in the bucket.") from None
    with file:
        return file.obj.content_type or "", file.size


COLD_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}
RESTORE_DAYS = 7
ARCHIVED_RESTORE_REQUESTED = "archived, restore requested"
ARCHIVED_RESTORING = "archived, restore in progress"


def cold_object_note(key: str) -> str:
    """Empty when the object can be read; for one in a cold class (Glacier, Deep Archive), what to
    tell the reader instead of a link that would fail, after asking S3 to restore it for
    RESTORE_DAYS when nobody has yet."""
    head = object_head(key)
    if head is None:
        raise FileMissing(f"No object {key} in the bucket.")
    if head.get("StorageClass", "STANDARD") not in COLD_CLASSES:
        return ""
    restore = head.get("Restore") or ""
    if 'ongoing-request="false"' in restore:
        return ""
    if 'ongoing-request="true"' in restore or not object_restore(key=key, days=RESTORE_DAYS):
        return ARCHIVED_RESTORING
    logger.info("restore of archived media %s requested", key)
    return ARCHIVED_RESTORE_REQUESTED
