"""The send service: one door for every outbound message (API, admin, campaigns), queued as a row
with its audit record and a wake-up after commit (see messaging/outbound/__init__.py)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Case, F, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from contacts.models import Channel, Contact
from contacts.reachability import NO_ADDRESS, OPTED_OUT, contact_address, contact_reachable
from core.audit import Actor, audit_log_record
from core.models import AuditLog
from messaging.conversations import conversations_outbound_prepare, phone_numbers_visible_q
from messaging.graph import (
    graph_client,
)
from messaging.models import Message, PhoneNumber
from messaging.outbound.content import KINDS, TEMPLATE_KIND, content_build, require, text_field
from messaging.outbound.drain import outgoing_wake
from messaging.outbound.rows import message_ids_take, outbound_message_build
from messaging.statuses import outgoing_doubts_resolve
from messaging.window import whatsapp_window

logger = logging.getLogger(__name__)

WINDOW_CLOSED = "The 24-hour customer service window is closed: send a template."
_S = Message.Status


# -- the send service -----------------------------------------------------------------------------


def phone_number_default(*, contact: Contact, user: AbstractBaseUser | None = None) -> PhoneNumber | None:
    """The sender a message to the contact leaves from when none is chosen, skipping paused
    numbers: the number the contact last wrote to, else the number the conversation last used,
    else the first number. None when every number is paused (or there is none). With `user`, only
    the numbers that user sees (`phone_numbers_visible_q`): nobody writes from a number whose
    conversations they cannot see."""
    numbers = PhoneNumber.objects.filter(paused_at__isnull=True)
    if user is not None:
        numbers = numbers.filter(phone_numbers_visible_q(user))
    last = (
        Message.objects.filter(contact=contact, phone_number__in=numbers.values("pk"))
        .annotate(inbound=Case(When(direction=Message.Direction.INBOUND, then=1), default=0))
        .order_by("-inbound", "-timestamp", "-id")
        .select_related("phone_number")
        .first()
    )
    if last is not None:
        return last.phone_number
    return numbers.order_by("id").first()


_UNREACHABLE = {
    NO_ADDRESS: "The contact has no WhatsApp number.",
    OPTED_OUT: "The contact has opted out of WhatsApp messages.",
}


def _actor_user(actor: Actor):
    return actor if actor is not None and actor.is_authenticated else None


def _existing(user, idempotency_key: str) -> Message | None:
    if not idempotency_key:
        return None
    return Message.objects.filter(created_by=user, idempotency_key=idempotency_key).first()


def message_send_or_get(
    *,
    phone_number: PhoneNumber | None,
    contact: Contact,
    kind: str,
    content: Any,
    actor: Actor,
    source: str,
    idempotency_key: str = "",
    reply_to_wamid: str = "",
) -> tuple[Message, bool]:
    """`message_send`, also saying whether this call queued the message (False: the key's earlier one)."""
    user = _actor_user(actor)
    require(len(idempotency_key) <= 255, "idempotency_key", "At most 255 characters.")
    if (existing := _existing(user, idempotency_key)) is not None:
        return existing, False
    require(kind in KINDS, "type", f"One of {', '.join(KINDS)}.")
    unreachable = contact_reachable(contact, Channel.WHATSAPP)
    require(unreachable is None, "contact", _UNREACHABLE.get(unreachable or "", ""))
    if phone_number is None:
        phone_number = phone_number_default(contact=contact)
        require(phone_number is not None, "phone_number_id", "No sender number that is not paused.")
    require(
        phone_number.paused_at is None,
        "phone_number_id",
        f"Sender {phone_number} is paused ({phone_number.paused_reason or 'by an operator'}): "
        "resume it first.",
    )
    if kind != TEMPLATE_KIND:
        require(whatsapp_window(contact, phone_number=phone_number).is_open, "type", WINDOW_CLOSED)
    if reply_to_wamid:
        text_field(reply_to_wamid, "reply_to", max_length=255)
    built = content_build(kind, content, phone_number=phone_number)
    to = contact_address(contact, Channel.WHATSAPP)
    message = outbound_message_build(
        pk=message_ids_take(1)[0],
        kind=kind,
        built=built,
        to=to,
        contact_id=contact.pk,
        phone_number=phone_number,
        now=timezone.now(),
        reply_to_wamid=reply_to_wamid,
        created_by=user,
        idempotency_key=idempotency_key,
    )
    message.contact = contact
    try:
        with transaction.atomic():
            # Kept until commit: a contact deleted meanwhile would break the message's foreign key.
            locked = Contact.objects.select_for_update(no_key=True).filter(pk=contact.pk)
            require(locked.values_list("pk", flat=True).first() is not None, "contact", "No such contact.")
            # Every message through this door is someone answering (campaigns queue in bulk).
            conversations_outbound_prepare(messages=[message], reply=True)
            message.save(force_insert=True)
            audit_log_record(
                actor=actor,
                source=source,
                action="message.send",
                target=message,
                changes={"type": kind, "to": to, "phone_number_id": phone_number.phone_number_id}
                | ({"idempotency_key": idempotency_key} if idempotency_key else {}),
            )
            transaction.on_commit(outgoing_wake)
    except IntegrityError:
        if (existing := _existing(user, idempotency_key)) is not None:
            return existing, False  # the same key, sent concurrently: that one won
        raise
    return message, True


def message_send(
    *,
    phone_number: PhoneNumber | None,
    contact: Contact,
    kind: str,
    content: Any,
    actor: Actor,
    source: str,
    idempotency_key: str = "",
    reply_to_wamid: str = "",
) -> Message:
    """Queue one message after checking Meta's rules and the 24-hour window; ValidationError names
    the field. The same `idempotency_key` from the same user returns that key's message instead."""
    message, _ = message_send_or_get(
        phone_number=phone_number,
        contact=contact,
        kind=kind,
        content=content,
        actor=actor,
        source=source,
        idempotency_key=idempotency_key,
        reply_to_wamid=reply_to_wamid,
    )
    return message


def message_mark_read(*, message: Message, actor: Actor, source: str = AuditLog.Source.API) -> Message:
    """Tell Meta (inline: one idempotent call whose failure the caller should see) that an inbound
    message was read, which shows blue ticks to the user; GraphError propagates."""
    require(
        message.direction == Message.Direction.INBOUND, "message", "Only inbound messages can be marked read."
    )
    require(message.phone_number is not None, "message", "The message has no sender number to answer from.")
    graph_client().request(
        "POST",
        f"{message.phone_number.phone_number_id}/messages",
        json={"messaging_product": "whatsapp", "status": "read", "message_id": message.wamid},
    )
    now = timezone.now()
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(read_at=Coalesce(F("read_at"), now), updated_at=now)
        audit_log_record(actor=actor, source=source, action="message.mark_read", target=message)
    message.refresh_from_db(fields=["read_at", "updated_at"])
    return message


def _in_doubt_move(*, message: Message, actor: Actor, source: str, action: str, status: str) -> Message:
    with transaction.atomic():
        moved = Message.objects.filter(pk=message.pk, status=_S.IN_DOUBT).update(
            status=status, due_at=None, claimed_at=None, claimed_by="", updated_at=timezone.now()
        )
        require(bool(moved), "status", "Only a message in doubt can be resent or abandoned.")
        audit_log_record(actor=actor, source=source, action=action, target=message)
        if status == _S.QUEUED:
            transaction.on_commit(outgoing_wake)
    message.refresh_from_db()
    return message


def message_resend(*, message: Message, actor: Actor, source: str = AuditLog.Source.ADMIN) -> Message:
    """An operator decided an in-doubt message did not reach the user: queue it again, unless Meta's
    statuses have shown meanwhile that it did (then it is sent, and nothing is sent again)."""
    if outgoing_doubts_resolve(message_ids=[message.pk]):
        message.refresh_from_db()
        return message
    return _in_doubt_move(
        message=message, actor=actor, source=source, action="message.resend", status=_S.QUEUED
    )


def message_abandon(*, message: Message, actor: Actor, source: str = AuditLog.Source.ADMIN) -> Message:
    """An operator decided an in-doubt message is not to be sent again."""
    return _in_doubt_move(
        message=message, actor=actor, source=source, action="message.abandon", status=_S.ABANDONED
    )


def phone_number_resume(
    *, phone_number: PhoneNumber, actor: Actor, source: str = AuditLog.Source.ADMIN
) -> PhoneNumber:
    """Send from a paused number again (its token was fixed); its queued messages go out."""
    with transaction.atomic():
        changed = PhoneNumber.objects.filter(pk=phone_number.pk, paused_at__isnull=False).update(
            paused_at=None, paused_reason="", updated_at=timezone.now()
        )
        if changed:
            audit_log_record(
                actor=actor,
                source=source,
                action="phone_number.resume",
                target=phone_number,
                changes={"paused_reason": [phone_number.paused_reason, ""]},
            )
            transaction.on_commit(outgoing_wake)
    phone_number.refresh_from_db()
    return phone_number
