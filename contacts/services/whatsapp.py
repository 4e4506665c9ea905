"""Contacts as WhatsApp names them in webhooks: found or created by WhatsApp id, user id or phone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from contacts.models import Contact
from contacts.services.cleaning import jsonable, name_clean, phone_normalise
from core.audit import audit_log_record
from core.models import AuditLog

WHATSAPP_PROFILE_NAME = "whatsapp_profile_name"
WHATSAPP_USERNAME = "whatsapp_username"


def _phone_from_wa_id(wa_id: str) -> str | None:
    """The E.164 number a WhatsApp id spells, or None when phonenumbers does not accept it."""
    if not wa_id.isdigit():
        return None
    try:
        return phone_normalise("+" + wa_id)
    except ValidationError:
        return None


def _whatsapp_contact_find(*, wa_id: str, user_id: str, phone: str | None) -> Contact | None:
    """By WhatsApp id, else business-scoped user id, else the phone number of a contact that has no
    WhatsApp id yet (an imported one, which gains its wa_id)."""
    condition = models.Q(pk__in=[])
    if wa_id:
        condition |= models.Q(wa_id=wa_id)
    if user_id:
        condition |= models.Q(user_id=user_id)
    if phone:
        condition |= models.Q(phone=phone, wa_id="")
    found = list(Contact.objects.filter(condition)[:3])
    for matches in (
        lambda contact: wa_id and contact.wa_id == wa_id,
        lambda contact: user_id and contact.user_id == user_id,
        lambda contact: phone and contact.phone == phone,
    ):
        for contact in found:
            if matches(contact):
                return contact
    return None


def _whatsapp_changes(
    contact: Contact, *, wa_id: str, user_id: str, phone: str | None, profile_name: str, username: str
) -> dict[str, Any]:
    """What Meta's word changes: ids the contact lacks, and the profile name and username. The name
    follows the profile name while it is empty or still the last one WhatsApp gave."""
    changes: dict[str, Any] = {}
    if wa_id and not contact.wa_id:
        changes["wa_id"] = wa_id
    if user_id and not contact.user_id:
        changes["user_id"] = user_id
    if phone and contact.phone is None and (wa_id == contact.wa_id or "wa_id" in changes):
        changes["phone"] = phone
    attributes = dict(contact.attributes or {})
    if profile_name and attributes.get(WHATSAPP_PROFILE_NAME) != profile_name:
        if not contact.name or contact.name == attributes.get(WHATSAPP_PROFILE_NAME):
            changes["name"] = profile_name
        attributes[WHATSAPP_PROFILE_NAME] = profile_name
    if username and attributes.get(WHATSAPP_USERNAME) != username:
        attributes[WHATSAPP_USERNAME] = username
    if attributes != (contact.attributes or {}):
        changes["attributes"] = attributes
    return changes


def contact_upsert_whatsapp(
    *,
    wa_id: str,
    user_id: str = "",
    profile_name: str = "",
    username: str = "",
    inbound_at: datetime | None,
) -> Contact:
    """The contact a webhook names, made if new, with what Meta says about it kept current.

    Found by WhatsApp id, else by business-scoped user id (newer payloads may carry only that),
    else by the phone number the WhatsApp id spells. A new contact's phone is that number, or
    none when phonenumbers rejects it: the contact is kept all the same. Meta's profile name is
    kept in attributes["whatsapp_profile_name"] and becomes the name unless an operator gave
    another. `last_inbound_at` only moves forward. Creations and identity changes are audited
    (source "webhook"); the inbound time is not. Two workers naming the same new contact make one:
    the loser of the insert finds the winner's row.
    """
    wa_id, user_id = (wa_id or "").strip(), (user_id or "").strip()
    profile_name, username = name_clean(profile_name[:200]), (username or "").strip()[:128]
    if not wa_id and not user_id:
        raise ValueError("contact_upsert_whatsapp() needs a wa_id or a user_id")
    if len(wa_id) > 32 or len(user_id) > 128:
        raise ValueError("contact_upsert_whatsapp() got an id longer than Meta's")
    phone = _phone_from_wa_id(wa_id)
    ids = {
        "wa_id": wa_id,
        "user_id": user_id,
        "phone": phone,
        "profile_name": profile_name,
        "username": username,
    }
    for _ in range(3):
        contact = _whatsapp_contact_find(wa_id=wa_id, user_id=user_id, phone=phone)
        try:
            if contact is None:
                with transaction.atomic():
                    return _whatsapp_contact_create(**ids, inbound_at=inbound_at)
            if _whatsapp_changes(contact, **ids):
                with transaction.atomic():
                    contact = _whatsapp_contact_update(contact.pk, **ids)
        except (IntegrityError, Contact.DoesNotExist):
            continue  # another worker took an id or the phone first, or deleted the contact: look again
        if inbound_at is not None and (
            contact.last_inbound_at is None or contact.last_inbound_at < inbound_at
        ):
            Contact.objects.filter(pk=contact.pk).filter(
                models.Q(last_inbound_at__isnull=True) | models.Q(last_inbound_at__lt=inbound_at)
            ).update(last_inbound_at=inbound_at, updated_at=timezone.now())
            contact.last_inbound_at = inbound_at
        return contact
    raise IntegrityError(f"could not upsert the WhatsApp contact {wa_id or user_id}")


def _whatsapp_contact_update(pk: int, **ids: Any) -> Contact:
    contact = Contact.objects.select_for_update().get(pk=pk)
    changes = _whatsapp_changes(contact, **ids)
    # An id or number another contact holds stays with it (merging two contacts is an operator's call).
    for name in ("phone", "user_id"):
        if name in changes and Contact.objects.filter(**{name: changes[name]}).exists():
            del changes[name]
    if changes:
        audit = {name: [jsonable(getattr(contact, name)), value] for name, value in changes.items()}
        for name, value in changes.items():
            setattr(contact, name, value)
        contact.save(update_fields=[*changes, "updated_at"])
        audit_log_record(
            actor=None, source=AuditLog.Source.WEBHOOK, action="contact.update", target=contact, changes=audit
        )
    return contact


def _whatsapp_contact_create(
    *,
    wa_id: str,
    user_id: str,
    phone: str | None,
    profile_name: str,
    username: str,
    inbound_at: datetime | None,
) -> Contact:
    """A new contact, without a phone when another contact holds the number under another wa_id."""
    if phone and Contact.objects.filter(phone=phone).exists():
        phone = None
    attributes = {
        name: value
        for name, value in ((WHATSAPP_PROFILE_NAME, profile_name), (WHATSAPP_USERNAME, username))
        if value
    }
    contact = Contact.objects.create(
        phone=phone,
        wa_id=wa_id,
        user_id=user_id,
        name=profile_name,
        attributes=attributes,
        last_inbound_at=inbound_at,
    )
    audit_log_record(
        actor=None,
        source=AuditLog.Source.WEBHOOK,
        action="contact.create",
        target=contact,
        changes={
            name: [None, value]
            for name, value in (
                ("phone", phone),
                ("wa_id", wa_id),
                ("user_id", user_id),
                ("name", profile_name),
            )
            if value
        },
    )
    return contact
