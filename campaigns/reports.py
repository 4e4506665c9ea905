"""A campaign's report: one JSON document in S3 under REPORTS_PREFIX, streamed.

Rows come from a server-side cursor and leave in multipart-upload parts of PART_BYTES, so memory
stays flat at any size; a report smaller than one part is a single PUT. Writing again replaces
the object (same key), so a report task that runs twice is harmless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.text import slugify

from campaigns.models import Campaign
from campaigns.selectors import REPORT_ROWS_SQL, campaign_progress
from core.aws import s3_client

logger = logging.getLogger(__name__)

PART_BYTES = 8 * 1024 * 1024  # S3 wants at least 5 MiB per part but the last
ROWS_PER_FETCH = 2000


def report_key(campaign: Campaign) -> str:
    slug = slugify(campaign.name)[:60] or "campaign"
    return f"{settings.REPORTS_PREFIX}campaign-{campaign.pk}-{slug}.json"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _document(campaign: Campaign) -> Iterator[str]:
    progress = campaign_progress(campaign=campaign)
    head: dict[str, Any] = {
        "jobId": campaign.pk,
        "name": campaign.name,
        "channel": campaign.channel,
        "status": campaign.status,
        "statusReason": campaign.status_reason,
        "totalRecipients": progress["total"],
        "sentCount": progress["sent"],
        "deliveredCount": progress["delivered"],
        "readCount": progress["read"],
        "failedCount": progress["failed"],
        "cancelledCount": progress["cancelled"],
        "skippedCount": progress["skipped"],
        "inDoubtCount": progress["in_doubt"],
        "createdAt": _iso(campaign.created_at),
        "startedAt": _iso(campaign.started_at),
        "finishedAt": _iso(campaign.finished_at),
        "generatedAt": _iso(timezone.now()),
    }
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "recipients": ['
    first = True
    with connection.chunked_cursor() as cursor:
        cursor.cursor.itersize = ROWS_PER_FETCH
        cursor.execute(REPORT_ROWS_SQL, [campaign.pk])
        for contact, address, status, message_id, code, title, sent, delivered, read, failed in cursor:
            row = {
                "contact": contact,
                "address": address,
                "status": status,
                "messageId": message_id or None,
                "error": {"code": code, "title": title} if (code or title) else None,
                "sentAt": _iso(sent),
                "deliveredAt": _iso(delivered),
                "readAt": _iso(read),
                "failedAt": _iso(failed),
            }
            yield ("" if first else ",") + "\n" + json.dumps(row, ensure_ascii=False)
            first = False
    yield "\n]}\n"


class _S3Writer:
    """Bytes to one S3 object: a PUT if they fit one part, else a multipart upload."""

    def __init__(self, key: str):
        self.client, self.bucket, self.key = s3_client(), settings.AWS_STORAGE_BUCKET_NAME, key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= PART_BYTES:
            self._part()

    def _part(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/json"
            )["UploadId"]
        number = len(self.parts) + 1
        answer = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=bytes(self.buffer),
        )
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})
        self.buffer.clear()

    def close(self) -> None:
        if self.upload_id is None:
            self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), ContentType="application/json"
            )
            return
        if self.buffer:
            self._part()
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


def campaign_report_write(*, campaign: Campaign) -> str:
    """Write the report and record its key; returns the key."""
    key = report_key(campaign)
    writer = _S3Writer(key)
    try:
        for text in _document(campaign):
            writer.write(text.encode())
        writer.close()
    except BaseException:
        writer.abort()
        raise
    now = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(report_key=key, report_written_at=now, updated_at=now)
    campaign.report_key, campaign.report_written_at = key, now
    logger.info("campaign %s: report written to %s", campaign.pk, key)
    return key


def campaign_report_url(*, campaign: Campaign) -> str | None:
    """A short-lived link to the report, None until it is written."""
    if not campaign.report_key:
        return None
    filename = campaign.report_key.rsplit("/", 1)[-1]
    return s3_client().generate_presigned_url(
        "get_object",
        Params={
            "Bucket": settings.AWS_STORAGE_BUCKET_NAME,
            "Key": campaign.report_key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        },
        ExpiresIn=settings.PRESIGNED_URL_EXPIRY_S,
    )
