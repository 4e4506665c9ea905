"""Statuses of outbound messages, applied forward only, whichever of a status and the message's
own record arrives first (see messaging/inbound/apply.py's header for the protocol and its lock).

Inbound webhooks apply statuses here; the outbound drain applies the statuses that waited for a
wamid when it records Meta's answer, and settles in-doubt sends that Meta's statuses show sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging.inbound.payloads import meta_dict, meta_error, meta_id, meta_str
from messaging.models import AnalyticsEvent, Message, PendingStatus

logger = logging.getLogger(__name__)

STATUS_TIMES = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "read": "read_at",
    "played": "played_at",
    "failed": "failed_at",
    "deleted": None,
}
_S = Message.Status
_PROGRESS = [_S.QUEUED, _S.SENT, _S.DELIVERED, _S.READ, _S.PLAYED]
# The states a message may leave for each status: forward only; failed is final, deleted is
# final but for failed.
STATUS_FROM: dict[str, list[str]] = {
    "sent": _PROGRESS[:1],
    "delivered": _PROGRESS[:2],
    "read": _PROGRESS[:3],
    "played": _PROGRESS[:4],
    "deleted": [*_PROGRESS],
    "failed": [*_PROGRESS, _S.DELETED],
}
# pg_advisory_xact_lock(key1, key2): key1 names this lock's purpose, key2 is hashtext(wamid).
WAMID_LOCK = 0x57A1D


# A message's wamid until Meta names it.
PLACEHOLDER_PREFIX = "wharf-"
NO_ERROR = {"error_code": None, "error_title": "", "error_details": ""}  # a retry's error, settled


# -- statuses -------------------------------------------------------------------------------------


def wamid_lock(wamid: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [WAMID_LOCK, wamid])


def status_record(*, wamid: str, status: str, at: datetime, payload: dict) -> str:
    """Applies one status by wamid: "applied", "unchanged", "pending" or "inbound".

    Every status Meta reports for a known outbound message writes its analytics row (once per wamid
    and status), whether or not it moved the message: a "delivered" that arrives after "read" still
    says the message was delivered.
    """
    columns = ("id", "direction", "contact_id", "phone_number_id")
    found = Message.objects.filter(wamid=wamid).values(*columns).first()
    if found is None:
        wamid_lock(wamid)
        found = Message.objects.filter(wamid=wamid).values(*columns).first()
    if found is None:
        PendingStatus.objects.bulk_create(
            [PendingStatus(wamid=wamid, status=status, timestamp=at, payload=payload)], ignore_conflicts=True
        )
        callback = meta_id(payload.get("biz_opaque_callback_data"))
        if callback is not None:
            outgoing_doubts_resolve(message_ids=[callback])
        return "pending"
    if found["direction"] != Message.Direction.OUTBOUND:
        return "inbound"
    outcome = _status_update(message_id=found["id"], status=status, at=at, payload=payload)
    AnalyticsEvent.objects.bulk_create(
        [
            AnalyticsEvent(
                kind=AnalyticsEvent.Kind.STATUS_CHANGED,
                wamid=wamid,
                status=status,
                message_id=found["id"],
                contact_id=found["contact_id"],
                phone_number_id=found["phone_number_id"],
                occurred_at=at,
                data=_status_data(payload),
            )
        ],
        ignore_conflicts=True,
    )
    return outcome


@dataclass(frozen=True)
class StatusReport:
    """One status of a webhook body, read: what `status_record` takes."""

    wamid: str
    status: str
    at: datetime
    payload: dict

    @property
    def callback(self) -> int | None:
        return meta_id(self.payload.get("biz_opaque_callback_data"))


_MESSAGE = Message._meta.db_table
_TIMES = sorted({column for column in STATUS_TIMES.values() if column})
_LOOKUP = ("id", "direction", "contact_id", "phone_number_id")
_LOCK_MANY_SQL = (
    "SELECT pg_advisory_xact_lock(%s, hashtext(wamid)) FROM (SELECT DISTINCT unnest(%s::text[]) AS wamid"
    " ORDER BY 1) AS wanted"
)
_ROWS_LOCK_SQL = (
    f"SELECT id, status, {', '.join(_TIMES)} FROM {_MESSAGE} WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
)
_ROWS_UPDATE_SQL = f"""
    UPDATE {_MESSAGE} AS m SET status = b.status, {", ".join(f"{column} = b.{column}" for column in _TIMES)},
        error_code = CASE WHEN b.errored THEN b.error_code ELSE m.error_code END,
        error_title = CASE WHEN b.errored THEN b.error_title ELSE m.error_title END,
        error_details = CASE WHEN b.errored THEN b.error_details ELSE m.error_details END,
        updated_at = %s
    FROM unnest(%s::bigint[], %s::text[], {", ".join("%s::timestamptz[]" for _ in _TIMES)}, %s::boolean[],
        %s::integer[], %s::text[], %s::text[])
        AS b(id, status, {", ".join(_TIMES)}, errored, error_code, error_title, error_details)
    WHERE m.id = b.id
"""


def statuses_lookup(*, wamids: set[str]) -> dict[str, dict[str, Any]]:
    """The messages these wamids name, as `status_record` finds them: a wamid not found is looked
    for again under its advisory lock (taken in wamid order), which then lasts until the commit."""
    found = {row["wamid"]: row for row in Message.objects.filter(wamid__in=wamids).values("wamid", *_LOOKUP)}
    missing = sorted(wamids - found.keys())
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_MANY_SQL, [WAMID_LOCK, missing])
        found |= {
            row["wamid"]: row for row in Message.objects.filter(wamid__in=missing).values("wamid", *_LOOKUP)
        }
    return found


def statuses_record(*, reports: list[StatusReport], found: dict[str, dict[str, Any]]) -> None:
    """`status_record` for many statuses at once, with the same rows as one call per status in
    this order: a few statements in all, whatever their number.

    `found` is `statuses_lookup`'s answer for these wamids, and the caller keeps to `status_record`
    the statuses it cannot take: those of inbound messages, and unknown wamids with a callback. The
    messages are locked in id order, then each one's statuses are played over its locked row by
    STATUS_FROM, so the rule is this module's one dict and concurrent batches wait instead of
    deadlocking.
    """
    known = [report for report in reports if report.wamid in found]
    pending = [report for report in reports if report.wamid not in found]
    if any(found[report.wamid]["direction"] != Message.Direction.OUTBOUND for report in known) or any(
        report.callback is not None for report in pending
    ):
        raise ValueError(
            "statuses_record takes outbound messages' statuses and pending ones without a callback"
        )
    if pending:
        PendingStatus.objects.bulk_create(
            [
                PendingStatus(
                    wamid=report.wamid, status=report.status, timestamp=report.at, payload=report.payload
                )
                for report in pending
            ],
            ignore_conflicts=True,
        )
    if not known:
        return
    _rows_update(known, found=found)
    firsts: dict[tuple[str, str], StatusReport] = {}
    for report in known:
        firsts.setdefault((report.wamid, report.status), report)
    AnalyticsEvent.objects.bulk_create(
        [
            AnalyticsEvent(
                kind=AnalyticsEvent.Kind.STATUS_CHANGED,
                wamid=report.wamid,
                status=report.status,
                message_id=found[report.wamid]["id"],
                contact_id=found[report.wamid]["contact_id"],
                phone_number_id=found[report.wamid]["phone_number_id"],
                occurred_at=report.at,
                data=_status_data(report.payload),
            )
            for report in firsts.values()
        ],
        ignore_conflicts=True,
    )


def _rows_update(reports: list[StatusReport], *, found: dict[str, dict[str, Any]]) -> None:
    """One UPDATE for the messages these statuses change, computed from their locked rows exactly
    as `_status_update` does one status at a time."""
    ids = sorted({found[report.wamid]["id"] for report in reports})
    with connection.cursor() as cursor:
        cursor.execute(_ROWS_LOCK_SQL, [ids])
        rows = {
            row[0]: {"status": row[1], **dict(zip(_TIMES, row[2:], strict=True))} for row in cursor.fetchall()
        }
    changed: dict[int, dict[str, Any]] = {}
    for report in reports:
        message_id = found[report.wamid]["id"]
        row = rows[message_id]
        time_field = STATUS_TIMES[report.status]
        if row["status"] in STATUS_FROM[report.status]:
            row["status"] = report.status
            if report.status == _S.FAILED and (error := meta_error(report.payload.get("errors"))):
                row["error"] = error
            changed[message_id] = row
        if time_field and row[time_field] is None:
            row[time_field] = report.at
            changed[message_id] = row
    if not changed:
        return
    columns: list[list[Any]] = [list(changed), [row["status"] for row in changed.values()]]
    columns += [[row[column] for row in changed.values()] for column in _TIMES]
    errors = [row.get("error") for row in changed.values()]
    columns.append([error is not None for error in errors])
    columns += [
        [(error or {}).get(key) for error in errors] for key in ("error_code", "error_title", "error_details")
    ]
    with connection.cursor() as cursor:
        cursor.execute(_ROWS_UPDATE_SQL, [timezone.now(), *columns])


def send_refusal_record(*, message: Message, at: datetime, error_code: int | None) -> None:
    """A send Meta refused in its answer (no wamid, so no status webhook will follow) counts as a
    failed status in the analytics, under the message's own placeholder wamid: the dashboard's
    failures include the refusals (a template paused, a number outside the window)."""
    data = {"error_code": error_code, "refused_when_sent": True} if error_code is not None else {}
    AnalyticsEvent.objects.bulk_create(
        [
            AnalyticsEvent(
                kind=AnalyticsEvent.Kind.STATUS_CHANGED,
                wamid=message.wamid,
                status=Message.Status.FAILED,
                message_id=message.pk,
                contact_id=message.contact_id,
                phone_number_id=message.phone_number_id,
                occurred_at=at,
                data=data,
            )
        ],
        ignore_conflicts=True,
    )


def _status_data(payload: dict) -> dict[str, Any]:
    pricing, conversation = meta_dict(payload.get("pricing")), meta_dict(payload.get("conversation"))
    data = {
        "pricing_model": meta_str(pricing.get("pricing_model")),
        "pricing_category": meta_str(pricing.get("category")),
        "pricing_type": meta_str(pricing.get("type")),
        "billable": pricing.get("billable") if isinstance(pricing.get("billable"), bool) else None,
        "conversation_id": meta_str(conversation.get("id")),
        "conversation_origin": meta_str(meta_dict(conversation.get("origin")).get("type")),
        "error_code": meta_error(payload.get("errors")).get("error_code"),
    }
    return {key: item for key, item in data.items() if item not in ("", None)}


def _status_update(*, message_id: int, status: str, at: datetime, payload: dict) -> str:
    """Moves the message forward if its state allows, and fills the status's time if still empty."""
    time_field = STATUS_TIMES[status]
    now = timezone.now()
    changes: dict[str, Any] = {"status": status, "updated_at": now}
    if time_field:
        changes[time_field] = Coalesce(F(time_field), Value(at))
    if status == "failed":
        changes.update(meta_error(payload.get("errors")))
    moved = Message.objects.filter(pk=message_id, status__in=STATUS_FROM[status]).update(**changes)
    if moved:
        return "applied"
    if time_field:
        Message.objects.filter(pk=message_id, **{f"{time_field}__isnull": True}).update(
            **{time_field: at, "updated_at": now}
        )
    return "unchanged"


def message_pending_statuses_apply(*, message: Message) -> int:
    """Applies, in time order, the statuses that arrived before this outbound message was stored;
    returns how many. Call it in the transaction that creates the message."""
    if message.direction != Message.Direction.OUTBOUND:
        return 0
    with transaction.atomic():
        wamid_lock(message.wamid)
        pending = list(PendingStatus.objects.filter(wamid=message.wamid).order_by("timestamp", "id"))
        for row in pending:
            status_record(wamid=message.wamid, status=row.status, at=row.timestamp, payload=row.payload)
        PendingStatus.objects.filter(pk__in=[row.pk for row in pending]).delete()
    return len(pending)


def outgoing_doubts_resolve(*, message_ids: list[int] | None = None) -> int:
    """Settle in-doubt messages that did reach Meta: the statuses Meta posts for a message carry
    our message id as `biz_opaque_callback_data`, and wait as PendingStatus rows for a wamid we
    never learnt. The message takes that wamid and is sent, and its statuses are applied."""
    doubtful = Message.objects.filter(status=_S.IN_DOUBT, wamid__startswith=PLACEHOLDER_PREFIX)
    if message_ids is not None:
        doubtful = doubtful.filter(pk__in=message_ids)
    ids = [str(pk) for pk in doubtful.values_list("pk", flat=True)[:1000]]
    if not ids:
        return 0
    found = dict(
        PendingStatus.objects.filter(payload__biz_opaque_callback_data__in=ids)
        .order_by("-timestamp")
        .values_list("payload__biz_opaque_callback_data", "wamid")
    )
    resolved = 0
    for message_id, wamid in found.items():
        with transaction.atomic():
            moved = Message.objects.filter(
                pk=int(message_id), status=_S.IN_DOUBT, wamid__startswith=PLACEHOLDER_PREFIX
            ).update(
                wamid=wamid,
                status=_S.SENT,
                claimed_at=None,
                claimed_by="",
                updated_at=timezone.now(),
                **NO_ERROR,
            )
            if moved:
                message = Message.objects.get(pk=int(message_id))
                message_pending_statuses_apply(message=message)
                resolved += 1
    if resolved:
        logger.info("in-doubt messages shown sent by Meta's statuses: %s", sorted(found))
    return resolved
