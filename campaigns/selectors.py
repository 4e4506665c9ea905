"""Reads of campaigns: live progress from the recipients joined to their messages' statuses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models.functions import Coalesce

from campaigns.models import Campaign, Recipient
from contacts.models import Contact
from messaging.models import Message

_CAMPAIGN = Campaign._meta.db_table
_CONTACT = Contact._meta.db_table
_RECIPIENT = Recipient._meta.db_table
_MESSAGE = Message._meta.db_table
RATE_WINDOW_S = 10

# A recipient's state: its message's status (WhatsApp), else its own (email, SMS, and those that
# never got a message: pending, cancelled, skipped, failed before sending).
STATE_SQL = "COALESCE(m.status, r.status)"
# The same, for the ORM (the recipients' list annotates it as `state`).
RECIPIENT_STATE = Coalesce("message__status", "status")

_PROGRESS_SQL = f"""
    SELECT
        count(*),
        count(*) FILTER (WHERE r.status = 'pending'),
        count(*) FILTER (WHERE {STATE_SQL} IN ('queued', 'sending')),
        count(*) FILTER (WHERE {STATE_SQL} IN ('sent', 'delivered', 'read', 'played', 'deleted')),
        count(*) FILTER (WHERE {STATE_SQL} IN ('delivered', 'read', 'played')),
        count(*) FILTER (WHERE {STATE_SQL} IN ('read', 'played')),
        count(*) FILTER (WHERE {STATE_SQL} = 'failed'),
        count(*) FILTER (WHERE r.status = 'cancelled'),
        count(*) FILTER (WHERE r.status = 'skipped'),
        count(*) FILTER (WHERE {STATE_SQL} = 'in_doubt'),
        count(*) FILTER (WHERE {STATE_SQL} = 'abandoned'),
        count(*) FILTER (WHERE COALESCE(m.sent_at, r.sent_at) >= now() - %s * interval '1 second')
    FROM {_RECIPIENT} r LEFT JOIN {_MESSAGE} m ON m.id = r.message_id
    WHERE r.campaign_id = %s
"""
PROGRESS_KEYS = (
    "total",
    "pending",
    "queued",
    "sent",
    "delivered",
    "read",
    "failed",
    "cancelled",
    "skipped",
    "in_doubt",
    "abandoned",
)


def campaign_progress(*, campaign: Campaign) -> dict[str, Any]:
    """Counts by state (sent counts delivered and read ones too, delivered counts read ones; in
    doubt: a request may have reached Meta and no answer came, waiting for an operator; abandoned:
    an operator chose not to resend one), the share done, and the sending rate over the last
    RATE_WINDOW_S seconds."""
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS_SQL, [RATE_WINDOW_S, campaign.pk])
        row = cursor.fetchone()
    progress: dict[str, Any] = dict(zip(PROGRESS_KEYS, row[:-1], strict=True))
    settled = progress["sent"] + progress["failed"] + progress["cancelled"] + progress["skipped"]
    settled += progress["in_doubt"] + progress["abandoned"]
    progress["done_pct"] = round(100 * settled / progress["total"], 1) if progress["total"] else 0.0
    progress["rate_per_s"] = round(row[-1] / RATE_WINDOW_S, 1)
    return progress


def campaign_status_text(*, campaign: Campaign, in_doubt: int) -> str:
    """The campaign's status as operators read it: one is complete only when none of its
    recipients is in doubt ("completed with 3 in doubt" otherwise), whatever its row says."""
    if in_doubt and campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        return f"{campaign.status} with {in_doubt:,} in doubt"
    return campaign.status


_FAILURES_SQL = f"""
    SELECT COALESCE(m.error_code::text, NULLIF(r.error_code, ''), '') AS code,
        COALESCE(NULLIF(m.error_title, ''), r.error_title, '') AS title, count(*)
    FROM {_RECIPIENT} r LEFT JOIN {_MESSAGE} m ON m.id = r.message_id
    WHERE r.campaign_id = %s AND {STATE_SQL} = 'failed'
    GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 50
"""


def campaign_failures(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Failed recipients grouped by error code (Meta's, or the channel's) with its title."""
    with connection.cursor() as cursor:
        cursor.execute(_FAILURES_SQL, [campaign.pk])
        return [{"code": code, "title": title, "count": count} for code, title, count in cursor.fetchall()]


REPORT_ROWS_SQL = f"""
    SELECT r.contact_id, r.address, {STATE_SQL},
        CASE WHEN m.wamid LIKE 'wharf-%%' THEN '' ELSE COALESCE(m.wamid, r.provider_message_id) END,
        COALESCE(m.error_code::text, NULLIF(r.error_code, '')),
        COALESCE(NULLIF(m.error_title, ''), NULLIF(r.error_title, '')),
        COALESCE(m.sent_at, r.sent_at), m.delivered_at, m.read_at, m.failed_at
    FROM {_RECIPIENT} r LEFT JOIN {_MESSAGE} m ON m.id = r.message_id
    WHERE r.campaign_id = %s ORDER BY r.id
"""


# The CSV's rows: the recipient's own status beside its message's, with the contact's name, phone
# and email only for those who may read contact data ({contact}: those columns or nothing).
REPORT_CSV_SQL = f"""
    SELECT r.id, r.contact_id, {{contact}} r.status, COALESCE(m.status, ''),
        COALESCE(m.error_code::text, NULLIF(r.error_code, ''), ''),
        COALESCE(NULLIF(m.error_title, ''), r.error_title, ''),
        COALESCE(m.sent_at, r.sent_at), m.delivered_at, m.read_at, m.failed_at
    FROM {_RECIPIENT} r LEFT JOIN {_MESSAGE} m ON m.id = r.message_id {{join}}
    WHERE r.campaign_id = %s ORDER BY r.id
"""
REPORT_CSV_CONTACT = ("c.name, c.phone, c.email, r.address,", f"JOIN {_CONTACT} c ON c.id = r.contact_id")

# What changed in a campaign after the moment its report describes: a status on one of its
# messages (Message.updated_at), an operator's decision on a recipient (Recipient.updated_at).
_CHANGED_SINCE = f"""
    FROM {_RECIPIENT} r LEFT JOIN {_MESSAGE} m ON m.id = r.message_id
    WHERE r.campaign_id = {{campaign}} AND (r.updated_at > {{since}} OR m.updated_at > {{since}})
"""
_CHANGES_SQL = "SELECT count(*) " + _CHANGED_SINCE.format(campaign="%s", since="%s")
_STALE_SQL = f"""
    SELECT c.id FROM {_CAMPAIGN} c
    WHERE c.report_written_at IS NOT NULL
        AND c.report_written_at < now() - %s * interval '1 second'
        AND c.finished_at >= now() - %s * interval '1 second'
        AND EXISTS (SELECT 1 {_CHANGED_SINCE.format(campaign="c.id", since="c.report_written_at")})
    ORDER BY c.finished_at
"""


def campaign_report_changes(*, campaign: Campaign) -> int:
    """How many of the campaign's recipients changed after the moment its report describes (0
    without a report): late statuses, in-doubt sends settled."""
    if campaign.report_written_at is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_CHANGES_SQL, [campaign.pk, campaign.report_written_at, campaign.report_written_at])
        return cursor.fetchone()[0]


def campaigns_report_stale(*, written_before_s: float, finished_within_s: float) -> list[int]:
    """Campaigns that finished within `finished_within_s` whose report, written more than
    `written_before_s` ago, no longer describes them; oldest finished first."""
    with connection.cursor() as cursor:
        cursor.execute(_STALE_SQL, [written_before_s, finished_within_s])
        return [pk for (pk,) in cursor.fetchall()]


def campaigns_of_messages(*, message_ids: list[int]) -> dict[int, Campaign]:
    """The campaign each of the messages was sent for, by message id (those sent for none are
    left out); one query."""
    if not message_ids:
        return {}
    recipients = Recipient.objects.filter(message_id__in=message_ids).select_related("campaign")
    return {recipient.message_id: recipient.campaign for recipient in recipients}


@dataclass
class ContactCampaign:
    """A campaign a contact was among the recipients of: its state for them, and when it went out."""

    campaign: Campaign
    state: str  # as STATE_SQL: the message's status (WhatsApp), else the recipient's
    at: datetime | None  # sent, else when the campaign started (None: not started)


def contact_campaigns_recent(*, contact_id: int, limit: int = 5) -> list[ContactCampaign]:
    """The latest campaigns that took the contact in, newest first (by recipient row)."""
    recipients = (
        Recipient.objects.filter(contact_id=contact_id)
        .select_related("campaign", "message")
        .order_by("-id")[:limit]
    )
    found = []
    for recipient in recipients:
        message = recipient.message
        sent_at = (message.sent_at if message else None) or recipient.sent_at
        found.append(
            ContactCampaign(
                campaign=recipient.campaign,
                state=message.status if message else recipient.status,
                at=sent_at or recipient.campaign.started_at,
            )
        )
    return found
