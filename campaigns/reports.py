"""A campaign's report: one JSON document in the reports storage (REPORTS_PREFIX), streamed.

Rows come from a server-side cursor and are written to the storage's file, which sends them as the
parts of a multipart upload (AWS_S3_FILE_BUFFER_SIZE each, 5 MiB by default), so memory stays flat
at any size. The object appears only when the file is closed, complete; a failure aborts the
upload and leaves the previous report. Writing again replaces the object (same name), so a report
task that runs twice is harmless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from campaigns.models import Campaign, Recipient
from campaigns.selectors import REPORT_ROWS_SQL, campaign_progress
from core.aws import multipart_uploads_abort
from core.storage import presigned_url, reports_storage
from messaging.models import Message

logger = logging.getLogger(__name__)

ROWS_PER_FETCH = 2000


def report_name(campaign: Campaign) -> str:
    """The report's name in the reports storage (its key in the bucket is under REPORTS_PREFIX)."""
    slug = slugify(campaign.name)[:60] or "campaign"
    return f"campaign-{campaign.pk}-{slug}.json"


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
        "abandonedCount": progress["abandoned"],
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


def campaign_report_write(*, campaign: Campaign) -> str:
    """Write the report and record its key; returns the key."""
    file = reports_storage().open(report_name(campaign), "wb")
    key = file.obj.key
    try:
        for text in _document(campaign):
            file.write(text.encode())
    except BaseException:
        multipart_uploads_abort(key)  # closing would complete the object with what was written
        raise
    file.close()
    now = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(report_key=key, report_written_at=now, updated_at=now)
    campaign.report_key, campaign.report_written_at = key, now
    logger.info("campaign %s: report written to %s", campaign.pk, key, extra={"campaign_id": campaign.pk})
    return key


def campaign_report_url(*, campaign: Campaign) -> str | None:
    """A short-lived link to the report, None until it is written."""
    if not campaign.report_key:
        return None
    storage = reports_storage()
    name = campaign.report_key.removeprefix(f"{storage.location.rstrip('/')}/")
    return presigned_url(
        storage, name, filename=name.rsplit("/", 1)[-1], content_type="application/json", exact_type=True
    )


REPORT_WAIT_S = 2.0  # a report waits for sends in flight, retrying this often
REPORT_WAIT_TRIES = 60


@shared_task(bind=True, name="campaigns.campaign_report", max_retries=REPORT_WAIT_TRIES)
def campaign_report_task(self, campaign_id: int) -> str:
    """Write the report once the sends in flight have finished (or after waiting about two minutes:
    what is still in flight is reported as such)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return "gone"
    in_flight = Recipient.objects.filter(
        Q(status=Recipient.Status.SENDING) | Q(message__status=Message.Status.SENDING), campaign=campaign
    ).exists()
    if in_flight and self.request.retries < REPORT_WAIT_TRIES:
        raise self.retry(countdown=REPORT_WAIT_S)
    return campaign_report_write(campaign=campaign)
