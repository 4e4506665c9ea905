"""Writes to one contact (create, update, delete, opt out and in), each with its audit row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from contacts.models import OPT_OUT_FIELDS, Channel, Contact
from contacts.services.cleaning import (
    CONTACT_FIELDS,
    contact_fields_clean,
    contact_save,
    contact_uniques_check,
    jsonable,
)
from core.audit import Actor, audit_log_record


@transaction.atomic
def contact_create(
    *,
    phone: str,
    name: str = "",
    email: str = "",
    tags: Iterable[str] = (),
    language: str = "",
    attributes: dict[str, Any] | None = None,
    wa_id: str = "",
    actor: Actor = None,
    source: str,
) -> Contact:
    values = contact_fields_clean(
        phone=phone, wa_id=wa_id, name=name, email=email, tags=tags, language=language, attributes=attributes
    )
    contact_uniques_check(phone=values["phone"], wa_id=values["wa_id"])
    contact = Contact(**values)
    contact_save(contact)
    audit_log_record(
        actor=actor,
        source=source,
        action="contact.create",
        target=contact,
        changes={name: [None, value] for name, value in values.items() if value},
    )
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, actor: Actor, source: str, **fields: Any) -> Contact:
    """Changes only the fields given; a call that changes nothing writes nothing."""
    unknown = set(fields) - set(CONTACT_FIELDS)
    if unknown:
        raise TypeError(f"contact_update() got fields it cannot change: {', '.join(sorted(unknown))}")
    values = contact_fields_clean(**fields)
    changes = {
        name: [getattr(contact, name), value]
        for name, value in values.items()
        if getattr(contact, name) != value
    }
    if not changes:
        return contact
    contact_uniques_check(
        phone=values.get("phone") if "phone" in changes else None,
        wa_id=values.get("wa_id") if "wa_id" in changes else None,
        exclude_id=contact.pk,
    )
    for name, (_, new) in changes.items():
        setattr(contact, name, new)
    try:
        contact_save(contact, update_fields=[*changes, "updated_at"])
    except (ValidationError, IntegrityError):
        for name, (old, _) in changes.items():
            setattr(contact, name, old)
        raise
    audit_log_record(actor=actor, source=source, action="contact.update", target=contact, changes=changes)
    return contact


@transaction.atomic
def contact_delete(*, contact: Contact, actor: Actor, source: str) -> None:
    audit_log_record(actor=actor, source=source, action="contact.delete", target=contact)
    contact.delete()


def opt_source(reason: str, source: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > 64:
        raise ValidationError({"reason": "At most 64 characters."})
    return reason or source


@transaction.atomic
def contact_opt_out(*, contact: Contact, reason: str = "", actor: Actor, source: str) -> Contact:
    """Stops messages to the contact. Opting out again keeps the first time and reason.

    The row is claimed with a conditional UPDATE, so two doors opting out at once (a STOP reply
    and an operator) record one opt-out, the first.
    """
    opt_out_source = opt_source(reason, source)
    now = timezone.now()
    claimed = Contact.objects.filter(pk=contact.pk, opted_out_at__isnull=True).update(
        opted_out_at=now, opt_out_source=opt_out_source, updated_at=now
    )
    if not claimed:
        contact.refresh_from_db(fields=["opted_out_at", "opt_out_source", "updated_at"])
        return contact
    contact.opted_out_at, contact.opt_out_source, contact.updated_at = now, opt_out_source, now
    audit_log_record(
        actor=actor,
        source=source,
        action="contact.opt_out",
        target=contact,
        changes={
            "opted_out_at": [None, jsonable(contact.opted_out_at)],
            "opt_out_source": ["", opt_out_source],
        },
    )
    return contact


@transaction.atomic
def contact_opt_in(*, contact: Contact, reason: str = "", actor: Actor, source: str) -> Contact:
    """Records consent, and lifts an opt-out: only call it when the contact asked for messages."""
    opt_in_source = opt_source(reason, source)
    changes = {
        "opted_in_at": [jsonable(contact.opted_in_at), jsonable(now := timezone.now())],
        "opt_in_source": [contact.opt_in_source, opt_in_source],
    }
    contact.opted_in_at, contact.opt_in_source = now, opt_in_source
    if contact.opted_out_at is not None:
        changes["opted_out_at"] = [jsonable(contact.opted_out_at), None]
        changes["opt_out_source"] = [contact.opt_out_source, ""]
        contact.opted_out_at, contact.opt_out_source = None, ""
    contact.save(
        update_fields=["opted_in_at", "opt_in_source", "opted_out_at", "opt_out_source", "updated_at"]
    )
    audit_log_record(actor=actor, source=source, action="contact.opt_in", target=contact, changes=changes)
    return contact


def channel_fields(channel: str) -> tuple[str, str]:
    try:
        return OPT_OUT_FIELDS[Channel(channel)]
    except ValueError:
        raise ValidationError({"channel": f"Unknown channel {channel!r}."}) from None


@transaction.atomic
def contact_channel_opt_out(
    *, contact: Contact, channel: str, reason: str = "", actor: Actor, source: str
) -> Contact:
    """Stops one channel's messages to the contact (WhatsApp's is contact_opt_out's).

    Claimed like contact_opt_out, with a conditional UPDATE: the first opt-out is the one kept and
    audited, and a repeat (a second click of the link, SNS delivering a STOP twice) writes nothing.
    """
    if Channel(channel) == Channel.WHATSAPP:
        return contact_opt_out(contact=contact, reason=reason, actor=actor, source=source)
    at_field, source_field = channel_fields(channel)
    opt_out_source = opt_source(reason, source)
    now = timezone.now()
    claimed = Contact.objects.filter(pk=contact.pk, **{f"{at_field}__isnull": True}).update(
        **{at_field: now, source_field: opt_out_source, "updated_at": now}
    )
    if not claimed:
        contact.refresh_from_db(fields=[at_field, source_field, "updated_at"])
        return contact
    setattr(contact, at_field, now)
    setattr(contact, source_field, opt_out_source)
    contact.updated_at = now
    audit_log_record(
        actor=actor,
        source=source,
        action=f"contact.{channel}_opt_out",
        target=contact,
        changes={at_field: [None, jsonable(now)], source_field: ["", opt_out_source]},
    )
    return contact


@transaction.atomic
def contact_channel_opt_in(
    *, contact: Contact, channel: str, reason: str = "", actor: Actor, source: str
) -> Contact:
    """Lifts one channel's opt-out: only call it when the contact asked for that channel's messages."""
    if Channel(channel) == Channel.WHATSAPP:
        return contact_opt_in(contact=contact, reason=reason, actor=actor, source=source)
    at_field, source_field = channel_fields(channel)
    opt_source(reason, source)
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    if getattr(contact, at_field) is None:
        return contact
    changes = {
        at_field: [jsonable(getattr(contact, at_field)), None],
        source_field: [getattr(contact, source_field), ""],
    }
    setattr(contact, at_field, None)
    setattr(contact, source_field, "")
    contact.save(update_fields=[at_field, source_field, "updated_at"])
    audit_log_record(
        actor=actor, source=source, action=f"contact.{channel}_opt_in", target=contact, changes=changes
    )
    return contact
