"""Sender numbers' standing at Meta: quality rating, messaging limit, throughput and display name
status, read from `GET /{phone-number-id}` and `GET /{waba_id}/phone_numbers` (hourly by beat, and
when an operator asks) and kept current between reads by the `phone_number_quality_update` webhook.

Reports arrive out of order: Meta retries a webhook for days, and a read's answer can cross a
webhook. Each report carries the time it speaks for (a read: the moment before it asked; a
webhook: its entry's `time`, else when Wharf received it), in whole seconds as Meta gives a
webhook's, and a number keeps the newest time it applied in `standing_at`. Under the number's row
lock a report older than that changes nothing, and one of the same second or newer sets what it
names (within one second the later to arrive wins: a read just before a webhook must not hide it,
nor the webhook the read that follows it), so a replay changes nothing and is not audited again.
The webhook names no rating (FLAGGED is taken as RED, UNFLAGGED as GREEN), so the number is read
again after the webhook's commit for the rating Meta holds.

A rating turning RED and a messaging limit going down each raise an operator alert, on the change
only: a replay, or the next read finding the number still RED, raises nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from core.alerts import operator_alert_raise
from core.audit import Actor, audit_log_record
from core.models import AuditLog
from core.queues import task_publish
from messaging.graph import GraphAuthError, GraphRetryableError, graph_client
from messaging.inbound.payloads import meta_dict, meta_str
from messaging.models import PhoneNumber

logger = logging.getLogger(__name__)

FIELDS = ",".join(
    (
        "id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "messaging_limit_tier",
        "whatsapp_business_manager_messaging_limit",
        "throughput",
        "name_status",
    )
)
PAGE_SIZE = 100
MAX_PAGES = 100
RED = "RED"
QUALITY_LABELS = {
    "GREEN": "High",
    "YELLOW": "Medium",
    "RED": "Low",
    "NA": "Not rated yet",
    "UNKNOWN": "Unknown",
}
# Meta's messaging limits (business-initiated conversations with distinct customers in 24 hours),
# from the lowest; TIER_2K is the portfolio-wide tier that replaced TIER_1K.
LIMIT_CUSTOMERS = {
    "TIER_NOT_SET": 0,
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
LIMIT_ORDER = tuple(LIMIT_CUSTOMERS)
# A webhook's event and the rating it implies (Meta sends no rating in this webhook).
_EVENT_QUALITY = {"FLAGGED": RED, "UNFLAGGED": "GREEN"}


def quality_label(rating: str) -> str:
    """`GREEN` → "High"; what Meta calls the rating in WhatsApp Manager."""
    return QUALITY_LABELS.get(rating, rating.title())


def messaging_limit_text(tier: str) -> str:
    """`TIER_1K` → "1,000 customers / 24 h", `TIER_UNLIMITED` → "Unlimited"."""
    if tier not in LIMIT_CUSTOMERS:
        return tier
    customers = LIMIT_CUSTOMERS[tier]
    if customers is None:
        return "Unlimited"
    if customers == 0:
        return "Not set (nothing sent yet)"
    return f"{customers:,} customers / 24 h"


@dataclass(frozen=True)
class Standing:
    """What one report says of a number; None: it does not say."""

    quality_rating: str | None = None
    messaging_limit: str | None = None
    throughput_level: str | None = None
    name_status: str | None = None
    display_phone_number: str | None = None
    verified_name: str | None = None

    def values(self) -> dict[str, str]:
        return {
            field.name: value for field in fields(self) if (value := getattr(self, field.name)) is not None
        }


def _limit_lowered(old: str, new: str) -> bool:
    if old not in LIMIT_CUSTOMERS or new not in LIMIT_CUSTOMERS:
        return False
    return LIMIT_ORDER.index(new) < LIMIT_ORDER.index(old)


@transaction.atomic
def phone_number_standing_apply(
    *,
    phone_number: PhoneNumber,
    standing: Standing,
    as_of: datetime,
    actor: Actor,
    source: str,
    synced: bool = False,
    event: str = "",
) -> PhoneNumber:
    """Applies one report of Meta's about a number unless the number already holds a newer one;
    audits what changed and raises the alerts the change calls for."""
    as_of = as_of.replace(microsecond=0)
    number = PhoneNumber.objects.select_for_update().get(pk=phone_number.pk)
    saved = ["synced_at"] if synced else []
    number.synced_at = timezone.now() if synced else number.synced_at
    changes: dict[str, Any] = {}
    if number.standing_at is None or as_of >= number.standing_at:
        for name, value in standing.values().items():
            value = value[: PhoneNumber._meta.get_field(name).max_length]
            if getattr(number, name) != value:
                changes[name] = [getattr(number, name), value]
                setattr(number, name, value)
        if number.standing_at != as_of:
            number.standing_at = as_of
            saved.append("standing_at")
    if changes or saved:
        number.save(update_fields=[*changes, *saved, "updated_at"])
    if changes:
        audit_log_record(
            actor=actor,
            source=source,
            action="phone_number.standing",
            target=number,
            changes=changes | ({"event": event} if event else {}),
        )
        _alerts_raise(number=number, changes=changes)
    return number


def _alerts_raise(*, number: PhoneNumber, changes: dict[str, Any]) -> None:
    if "quality_rating" in changes and changes["quality_rating"][1] == RED:
        operator_alert_raise(
            key=f"sender-quality:{number.phone_number_id}",
            text=f"Sender number {number} has a low (RED) quality rating at Meta: customers are blocking "
            "or reporting its messages. Meta may lower its messaging limit if it does not improve.",
        )
    if "messaging_limit" in changes and _limit_lowered(*changes["messaging_limit"]):
        old, new = changes["messaging_limit"]
        operator_alert_raise(
            key=f"sender-limit:{number.phone_number_id}",
            text=f"Meta lowered the messaging limit of sender number {number} from "
            f"{messaging_limit_text(old)} to {messaging_limit_text(new)}.",
            level="warning",
        )


# -- reads from Meta ------------------------------------------------------------------------------


def _standing_read(item: dict) -> Standing:
    """A phone number object of the Graph API; the portfolio's limit when Meta gives it."""
    limit = meta_str(item.get("whatsapp_business_manager_messaging_limit")) or meta_str(
        item.get("messaging_limit_tier")
    )
    return Standing(
        quality_rating=meta_str(item.get("quality_rating")).upper() or None,
        messaging_limit=limit.upper() or None,
        throughput_level=meta_str(meta_dict(item.get("throughput")).get("level")).upper() or None,
        name_status=meta_str(item.get("name_status")).upper() or None,
        display_phone_number=meta_str(item.get("display_phone_number")) or None,
        verified_name=meta_str(item.get("verified_name")) or None,
    )


def phone_number_sync(
    *, phone_number: PhoneNumber, actor: Actor = None, source: str = AuditLog.Source.SYSTEM
) -> PhoneNumber:
    """Reads the number from Meta and keeps what it says (GraphError when Meta does not answer)."""
    as_of = timezone.now()
    data = graph_client().object_read(phone_number.phone_number_id, fields=FIELDS)
    return phone_number_standing_apply(
        phone_number=phone_number,
        standing=_standing_read(data),
        as_of=as_of,
        actor=actor,
        source=source,
        synced=True,
    )


def phone_numbers_sync(*, waba_id: str, actor: Actor = None, source: str = AuditLog.Source.SYSTEM) -> int:
    """Reads every number of the WABA from Meta and keeps what it says of those Wharf sends from
    (numbers Wharf does not know are not added: a sender number is an operator's choice).
    Returns how many were updated."""
    if not waba_id:
        raise ValueError("phone_numbers_sync needs a WABA id")
    as_of = timezone.now()
    known = {number.phone_number_id: number for number in PhoneNumber.objects.filter(waba_id=waba_id)}
    pages = graph_client().edge_pages(
        waba_id, "phone_numbers", params={"fields": FIELDS, "limit": PAGE_SIZE}, max_pages=MAX_PAGES
    )
    synced = 0
    for page in pages:
        for item in page:
            number = known.get(meta_str(item.get("id")))
            if number is not None:
                phone_number_standing_apply(
                    phone_number=number,
                    standing=_standing_read(item),
                    as_of=as_of,
                    actor=actor,
                    source=source,
                    synced=True,
                )
                synced += 1
    logger.info("Synced %d of %d sender number(s) of WABA %s from Meta", synced, len(known), waba_id)
    return synced


# -- webhooks -------------------------------------------------------------------------------------


def _digits(value: str) -> str:
    return "".join(character for character in value if character in "0123456789")


def phone_numbers_by_display(*, display_phone_number: str, waba_id: str) -> list[PhoneNumber]:
    """The numbers a webhook names by its display number (digits only, as Meta sends it), in its
    WABA or in none."""
    digits = _digits(display_phone_number)
    if not digits:
        return []
    candidates = PhoneNumber.objects.all()
    if waba_id:
        candidates = candidates.filter(waba_id__in=[waba_id, ""])
    return [number for number in candidates if _digits(number.display_phone_number) == digits]


def phone_number_quality_webhook_apply(*, value: dict, waba_id: str, at: datetime) -> list[PhoneNumber]:
    """A `phone_number_quality_update`: the limit it names (`current_limit`, or
    `max_daily_conversations_per_business` once Meta drops the former), the rating its event
    implies, HIGH throughput on THROUGHPUT_UPGRADE (whose limit is the throughput's, not the
    messaging limit). Each number it names is read again after commit."""
    event = meta_str(value.get("event"), 64).upper()
    limit = (
        meta_str(value.get("current_limit"), 32)
        or meta_str(value.get("max_daily_conversations_per_business"), 32)
    ).upper()
    if event == "THROUGHPUT_UPGRADE":
        standing = Standing(throughput_level="HIGH")
    else:
        standing = Standing(
            quality_rating=_EVENT_QUALITY.get(event),
            messaging_limit=limit if limit in LIMIT_CUSTOMERS else None,
        )
    numbers = phone_numbers_by_display(
        display_phone_number=meta_str(value.get("display_phone_number")), waba_id=waba_id
    )
    applied = [
        phone_number_standing_apply(
            phone_number=number,
            standing=standing,
            as_of=at,
            actor=None,
            source=AuditLog.Source.WEBHOOK,
            event=event,
        )
        for number in numbers
    ]
    for number in applied:
        if number.standing_at == at.replace(microsecond=0):
            transaction.on_commit(lambda pk=number.pk: _sync_enqueue(pk))
    return applied


def phone_number_name_webhook_apply(*, value: dict, waba_id: str) -> list[PhoneNumber]:
    """A `phone_number_name_update` (a display name approved or rejected): the numbers it names are
    read again after commit, for their verified name and name status."""
    numbers = phone_numbers_by_display(
        display_phone_number=meta_str(value.get("display_phone_number")), waba_id=waba_id
    )
    for number in numbers:
        transaction.on_commit(lambda pk=number.pk: _sync_enqueue(pk))
    return numbers


def _sync_enqueue(phone_number_pk: int) -> None:
    """After the webhook's commit; a broker that is down loses only this read (beat reads hourly)."""
    task_publish(
        phone_number_sync_task,
        args=(phone_number_pk,),
        what=f"a read of sender number {phone_number_pk} from Meta",
        fallback="the hourly sync",
    )


def phone_numbers_waba_ids() -> list[str]:
    """Every WABA a sender number belongs to."""
    return sorted(set(PhoneNumber.objects.exclude(waba_id="").values_list("waba_id", flat=True)))


# -- tasks ----------------------------------------------------------------------------------------


def _auth_alert(what: str, error: GraphAuthError) -> None:
    operator_alert_raise(
        key=f"phone-numbers-sync-auth:{what}",
        text=f"Sender numbers of {what} cannot be read from Meta: Meta refused the access token "
        f"({error.reason}).",
    )


@shared_task(
    name="messaging.phone_number_sync",
    autoretry_for=(GraphRetryableError,),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def phone_number_sync_task(phone_number_pk: int) -> bool:
    number = PhoneNumber.objects.filter(pk=phone_number_pk).first()
    if number is None:
        return False
    try:
        phone_number_sync(phone_number=number)
    except GraphAuthError as error:
        _auth_alert(f"number {number}", error)
        return False
    return True


@shared_task(
    name="messaging.phone_numbers_sync",
    autoretry_for=(GraphRetryableError,),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def phone_numbers_sync_task(waba_id: str | None = None) -> int:
    """Without a WABA id (beat): one task per WABA of the sender numbers, and one per number that
    names no WABA. A token Meta refuses raises an operator alert instead of retrying."""
    if not waba_id:
        waba_ids = phone_numbers_waba_ids()
        for each in waba_ids:
            phone_numbers_sync_task.delay(each)
        loose = list(PhoneNumber.objects.filter(waba_id="").values_list("pk", flat=True))
        for pk in loose:
            phone_number_sync_task.delay(pk)
        return len(waba_ids) + len(loose)
    try:
        return phone_numbers_sync(waba_id=waba_id)
    except GraphAuthError as error:
        _auth_alert(f"WABA {waba_id}", error)
        return 0
