"""Writes the console and the messages API make: deleting messages, managing sender numbers.

A deleted message's media object leaves S3 only after the row's deletion commits: a rolled-back
delete must not leave a message pointing at nothing. If S3 refuses then, the object stays
behind and the error is logged with its key (the message itself is gone either way).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from core.audit import Actor, audit_log_record
from core.aws import objects_delete
from core.storage import media_storage
from messaging.models import Conversation, Message, PhoneNumber
from messaging.ratelimit import sender_paces_delete

logger = logging.getLogger(__name__)

PHONE_NUMBER_FIELDS = (
    "phone_number_id",
    "display_phone_number",
    "verified_name",
    "waba_id",
    "rate_limit_per_s",
    "read_receipts",
    "auto_assign",
)
RATE_LIMIT_MAX_PER_S = 1000  # Meta's highest throughput tier
PHONE_NUMBER_ID_TAKEN = "A sender number with this phone number id already exists."

# -- messages -------------------------------------------------------------------------------------


def _media_object_delete(key: str) -> None:
    try:
        media_storage().delete(key)
    except Exception:
        logger.exception("Could not delete media object %s from S3", key)


@transaction.atomic
def message_delete(*, message: Message, actor: Actor, source: str) -> None:
    """Deletes the message and, once that commits, its stored media."""
    audit_log_record(
        actor=actor,
        source=source,
        action="message.delete",
        target=message,
        changes={
            "wamid": message.wamid,
            "contact_id": message.contact_id,
            "direction": message.direction,
            "type": message.type,
            "media_key": message.media_key,
        },
    )
    key = message.media_key
    message.delete()
    if key:
        transaction.on_commit(lambda: _media_object_delete(key))


@transaction.atomic
def messages_delete(*, queryset: models.QuerySet[Message], actor: Actor, source: str) -> int:
    """Deletes many messages with one audit row naming them, then their stored media."""
    rows = list(queryset.order_by().select_for_update().values_list("id", "media_key"))
    if not rows:
        return 0
    ids = sorted(id_ for id_, _ in rows)
    keys = sorted({key for _, key in rows if key})
    Message.objects.filter(id__in=ids).delete()
    audit_log_record(
        actor=actor,
        source=source,
        action="messages.delete",
        target_repr=f"{len(ids)} message{'s' if len(ids) != 1 else ''}",
        changes={"ids": ids, "media_keys": keys},
    )
    if keys:
        transaction.on_commit(lambda: objects_delete(keys))  # failures are logged with their keys
    return len(ids)


# -- sender numbers -------------------------------------------------------------------------------


def phone_number_fields_clean(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(PHONE_NUMBER_FIELDS)
    if unknown:
        raise TypeError(f"got phone number fields it cannot set: {', '.join(sorted(unknown))}")
    cleaned = {name: value.strip() if isinstance(value, str) else value for name, value in fields.items()}
    errors = {}
    if "phone_number_id" in cleaned and not cleaned["phone_number_id"]:
        errors["phone_number_id"] = "This field is required."
    rate = cleaned.get("rate_limit_per_s")
    if rate is not None and not (1 <= rate <= RATE_LIMIT_MAX_PER_S):
        errors["rate_limit_per_s"] = f"Between 1 and {RATE_LIMIT_MAX_PER_S} messages per second."
    if errors:
        raise ValidationError(errors)
    return cleaned


def _phone_number_save(phone_number: PhoneNumber, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            phone_number.save(**kwargs)
    except IntegrityError as error:
        if "phone_number_id" in str(error):
            raise ValidationError({"phone_number_id": PHONE_NUMBER_ID_TAKEN}) from error
        raise


@transaction.atomic
def phone_number_create(*, phone_number_id: str, actor: Actor, source: str, **fields: Any) -> PhoneNumber:
    values = phone_number_fields_clean({"phone_number_id": phone_number_id, **fields})
    phone_number = PhoneNumber(**values)
    _phone_number_save(phone_number)
    audit_log_record(
        actor=actor,
        source=source,
        action="phone_number.create",
        target=phone_number,
        changes={name: [None, value] for name, value in values.items() if value not in ("", None)},
    )
    return phone_number


@transaction.atomic
def phone_number_update(
    *, phone_number: PhoneNumber, actor: Actor, source: str, **fields: Any
) -> PhoneNumber:
    """Changes only the fields given; a call that changes nothing writes nothing."""
    values = phone_number_fields_clean(fields)
    changes = {
        name: [getattr(phone_number, name), value]
        for name, value in values.items()
        if getattr(phone_number, name) != value
    }
    if not changes:
        return phone_number
    for name, (_, new) in changes.items():
        setattr(phone_number, name, new)
    try:
        _phone_number_save(phone_number, update_fields=[*changes, "updated_at"])
    except (ValidationError, IntegrityError):
        for name, (old, _) in changes.items():
            setattr(phone_number, name, old)
        raise
    audit_log_record(
        actor=actor, source=source, action="phone_number.update", target=phone_number, changes=changes
    )
    return phone_number


@transaction.atomic
def phone_number_groups_set(
    *, phone_number: PhoneNumber, groups: Iterable[Group], actor: Actor, source: str
) -> PhoneNumber:
    """Which groups' members see the number's conversations (none: every operator); audited when
    it changes."""
    before = sorted(phone_number.groups.values_list("name", flat=True))
    groups = list(groups)
    after = sorted(group.name for group in groups)
    if before != after:
        phone_number.groups.set(groups)
        audit_log_record(
            actor=actor,
            source=source,
            action="phone_number.groups",
            target=phone_number,
            changes={"groups": [before, after]},
        )
    return phone_number


@transaction.atomic
def phone_numbers_delete(*, phone_numbers: Iterable[PhoneNumber], actor: Actor, source: str) -> int:
    """Their messages and conversations stay, without a sender number; a contact's conversation
    with a deleted number joins the one it already had without a number (one per contact and number,
    the missing number included)."""
    count = 0
    for phone_number in phone_numbers:
        with transaction.atomic():
            audit_log_record(actor=actor, source=source, action="phone_number.delete", target=phone_number)
            sender_paces_delete(phone_number_ids=[phone_number.pk])
            _conversations_numberless_merge(phone_number=phone_number)
            phone_number.delete()
        count += 1
    return count


def _latest(*conversations: Conversation, field: str):
    return max((t for c in conversations if (t := getattr(c, field)) is not None), default=None)


def _conversations_numberless_merge(*, phone_number: PhoneNumber) -> None:
    """Fold each conversation of `phone_number` whose contact also has a conversation without a
    number into that one: everything pointing at it (messages, notes, ...) moves, unread counts
    add up, the latest times and the longest wait are kept, and it is open when either was."""
    numberless = Conversation.objects.filter(contact=OuterRef("contact"), phone_number__isnull=True)
    pairs = (
        Conversation.objects.select_for_update()
        .filter(phone_number=phone_number)
        .annotate(into=Subquery(numberless.values("pk")[:1]))
        .filter(into__isnull=False)
    )
    for doomed in pairs:
        kept = Conversation.objects.select_for_update().get(pk=doomed.into)
        for relation in Conversation._meta.related_objects:
            if relation.one_to_many:
                relation.related_model._base_manager.filter(**{relation.field.name: doomed}).update(
                    **{relation.field.name: kept}
                )
        newer = doomed.last_message_at is not None and doomed.last_message_at == _latest(
            kept, doomed, field="last_message_at"
        )
        waits = [t for t in (kept.waiting_since, doomed.waiting_since) if t is not None]
        either_open = Conversation.Status.OPEN in (kept.status, doomed.status)
        Conversation.objects.filter(pk=kept.pk).update(
            unread_count=F("unread_count") + doomed.unread_count,
            last_inbound_at=_latest(kept, doomed, field="last_inbound_at"),
            last_outbound_at=_latest(kept, doomed, field="last_outbound_at"),
            last_message_at=_latest(kept, doomed, field="last_message_at"),
            last_message_preview=doomed.last_message_preview if newer else kept.last_message_preview,
            waiting_since=min(waits, default=None),
            status=Conversation.Status.OPEN if either_open else kept.status,
            snoozed_until=None if either_open else kept.snoozed_until,
            updated_at=timezone.now(),
        )
        doomed.delete()


def phone_number_pause(*, phone_number: PhoneNumber, reason: str) -> bool:
    """Stop sending from a number (Meta refused its token); True if this call paused it."""
    return bool(
        PhoneNumber.objects.filter(pk=phone_number.pk, paused_at__isnull=True).update(
            paused_at=timezone.now(), paused_reason=reason[:255], updated_at=timezone.now()
        )
    )
