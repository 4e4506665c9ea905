"""Statuses of outbound messages, applied forward only, whichever of a status and the message's
own record arrives first (see messaging/inbound/apply.py's header for the protocol and its lock).

Inbound webhooks apply statuses here; the outbound drain applies the statuses that waited for a
wamid when it records Meta's answer, and settles in-doubt sends that Meta's statuses show sent.
"""

from __future__ import annotations

import logging
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
