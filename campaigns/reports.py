"""A campaign's report: one JSON document in the reports storage (REPORTS_PREFIX), streamed; and
the same rows as a CSV streamed to whoever downloads it.

Rows come from a server-side cursor and are written to the storage's file, which sends them as the
parts of a multipart upload (AWS_S3_FILE_BUFFER_SIZE each, 5 MiB by default), so memory stays flat
at any size. The object appears only when the file is closed, complete; a failure aborts the
upload and leaves the previous report. Writing again replaces the object (same name), so a report
task that runs twice is harmless.

A report states the moment it describes (`asOf`, kept as the campaign's `report_written_at`), taken
before its rows are read. Meta's statuses keep coming after a campaign finishes (delivered, read,
failed), and operators settle sends in doubt: beat's `campaign_reports_refresh` writes again the
report of a campaign that finished within REPORT_REFRESH_WITHIN_S whose recipients or messages
changed after that moment, at most once per REPORT_REFRESH_EVERY_S. A change that lands while a
report is being written is after its moment, so the next round takes it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from campaigns.models import Campaign, Recipient
from campaigns.selectors import (
    REPORT_CSV_CONTACT,
    REPORT_CSV_SQL,
    REPORT_ROWS_SQL,
    campaign_progress,
    campaigns_report_stale,
)
from core.aws import multipart_uploads_abort
from core.queues import task_publish
from core.spreadsheets import cell_escape
from core.storage import presigned_url, reports_storage
from messaging.models import Message

logger = logging.getLogger(__name__)

ROWS_PER_FETCH = 2000
REPORT_REFRESH_EVERY_S = 300  # a report is written again at most this often ...
REPORT_REFRESH_WITHIN_S = 7 * 24 * 3600  # ... while its campaign finished less than this ago


def report_name(campaign: Campaign) -> str:
    """The report's name in the reports storage (its key in the bucket is under REPORTS_PREFIX)."""
    slug = slugify(campaign.name)[:60] or "campaign"
    return f"campaign-{campaign.pk}-{slug}.json"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _document(campaign: Campaign, as_of: datetime) -> Iterator[str]:
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
        "asOf": _iso(as_of),
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
    """Write the report and record its key and the moment it describes; returns the key."""
    as_of = timezone.now()  # before the first row is read: what changes later is after it
    file = reports_storage().open(report_name(campaign), "wb")
    key = file.obj.key
    try:
        for text in _document(campaign, as_of):
            file.write(text.encode())
    except BaseException:
        multipart_uploads_abort(key)  # closing would complete the object with what was written
        raise
    file.close()
    Campaign.objects.filter(pk=campaign.pk).update(
        report_key=key, report_written_at=as_of, updated_at=timezone.now()
    )
    campaign.report_key, campaign.report_written_at = key, as_of
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


@shared_task(name="campaigns.campaign_reports_refresh")
def campaign_reports_refresh_task() -> list[int]:
    return campaign_reports_refresh()


def campaign_reports_refresh() -> list[int]:
    """Beat's round: the report task for each campaign whose report no longer describes it (see
    the module's header); returns their ids. The task writes the whole report again, so a round
    that enqueues one twice (a slow queue) costs a write, nothing else."""
    stale = campaigns_report_stale(
        written_before_s=REPORT_REFRESH_EVERY_S, finished_within_s=REPORT_REFRESH_WITHIN_S
    )
    for campaign_id in stale:
        task_publish(
            campaign_report_task,
            args=(campaign_id,),
            what=f"the report of campaign {campaign_id}",
            fallback="the next round",
        )
    return stale


# -- CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "recipient_id",
    "contact_id",
    "status",
    "message_status",
    "error_code",
    "error_title",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
)
CSV_CONTACT_COLUMNS = ("name", "phone", "email", "address")
CSV_ROWS_PER_PIECE = 1000


def csv_report_name(campaign: Campaign, *, as_of: datetime) -> str:
    return f"{report_name(campaign).removesuffix('.json')}-{as_of:%Y%m%d-%H%M%S}.csv"


_NUMBER = re.compile(r"\+?[0-9]+")


def _number_or_escaped(value: str) -> str:
    """A phone number (+ and digits) as it is, which no spreadsheet runs; any other text escaped."""
    return value if _NUMBER.fullmatch(value) else cell_escape(value)


def campaign_report_csv(*, campaign: Campaign, contact_data: bool) -> Iterator[str]:
    """The report's rows as CSV text, in pieces, read now from a server-side cursor (memory stays
    flat): one row per recipient with its message's status, error and times; the contact's name,
    phone, email and address only with `contact_data` (contacts.access decides)."""
    contact, join = REPORT_CSV_CONTACT if contact_data else ("", "")
    columns = (*CSV_COLUMNS[:2], *CSV_CONTACT_COLUMNS, *CSV_COLUMNS[2:]) if contact_data else CSV_COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    with connection.chunked_cursor() as cursor:
        cursor.cursor.itersize = ROWS_PER_FETCH
        cursor.execute(REPORT_CSV_SQL.format(contact=contact, join=join), [campaign.pk])
        for count, row in enumerate(cursor, 1):
            texts = [_number_or_escaped(value or "") for value in row[2:-4]]
            writer.writerow([row[0], row[1], *texts, *(_iso(value) or "" for value in row[-4:])])
            if count % CSV_ROWS_PER_PIECE == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()
