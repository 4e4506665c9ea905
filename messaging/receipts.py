"""Read receipts and typing indicators: telling Meta that an operator has seen what a customer wrote.

One Graph call does both: `POST /<phone_number_id>/messages {"status": "read", "message_id": <wamid>}`
marks that inbound message and every earlier one read (the customer sees blue ticks), and with
`"typing_indicator": {"type": "text"}` also shows "typing…" for up to 25 s or until we answer.
Neither is sent from a number whose `read_receipts` is off (a typing indicator marks read too), nor
from a paused one.

An inbound message's `read_at` is when Meta confirmed it read: written after Meta's answer, on that
message and every earlier inbound message of its conversation. Reading a conversation (the page,
the API) enqueues one task after commit, with ids only, for its latest inbound message when that
has no `read_at`; otherwise nothing, so opening it again sends nothing. The task locks that row
(SKIP LOCKED: a concurrent copy of the task steps aside), asks Meta and records the answer before
the lock goes, so a copy run later finds `read_at` and sends nothing; a crash before the record
leaves the row as it was for SQS's redelivery. Retryable failures come back as SQS-delayed retries
paced by the one Backoff; a permanent failure, or the last retry, is logged and audited, never
raised into the page that opened the conversation.

Typing indicators are limited in one place, a conditional UPDATE of the conversation's
`typing_sent_at` on the database's clock, so that across every app server one request per
conversation wins in TYPING_INTERVAL and enqueues the call. A typing indicator is never retried:
late, it would say something untrue.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from celery import shared_task
from django.db import transaction
from django.db.models import DateTimeField, Func, Q
from django.utils import timezone

from core.audit import audit_log_record
from core.backoff import Backoff
from core.models import AuditLog
from core.queues import task_publish
from messaging.graph import GraphError, GraphRetryableError, graph_client
from messaging.models import Conversation, Message, PhoneNumber
from messaging.window import conversation_window

logger = logging.getLogger(__name__)

TYPING_INTERVAL = timedelta(seconds=25)  # how long Meta shows a typing indicator
RETRIES_MAX = 5
BACKOFF = Backoff(base_s=5, cap_s=300)  # below SQS's 900 s limit on a message's delay
# Events about other messages (reactions, edits, revokes) and WhatsApp's own notices: not messages
# of the customer's that a receipt names.
_NOT_NAMED = frozenset({"reaction", "edit", "revoke", "system"})


def receipts_allowed(phone_number: PhoneNumber | None) -> bool:
    """Whether Meta may be told from this number that its customers' messages were read."""
    return phone_number is not None and phone_number.read_receipts and phone_number.paused_at is None


def _latest_inbound(conversation: Conversation) -> Message | None:
    """The customer's latest message in the conversation (the index on contact and time, backwards)."""
    return (
        Message.objects.filter(
            contact_id=conversation.contact_id,
            phone_number_id=conversation.phone_number_id,
            direction=Message.Direction.INBOUND,
        )
        .exclude(type__in=_NOT_NAMED)
        .order_by("-timestamp", "-id")
        .first()
    )


def conversation_read_receipt_send(*, conversation: Conversation) -> Message | None:
    """Tell Meta, after commit and from a worker, that the customer's messages in the conversation
    were read. Returns the message the receipt names; None when nothing is sent: the number sends
    no receipts or is paused, the customer never wrote, or their latest message was marked already."""
    phone_number = PhoneNumber.objects.filter(pk=conversation.phone_number_id).first()
    if not receipts_allowed(phone_number):
        return None
    latest = _latest_inbound(conversation)
    if latest is None or latest.read_at is not None:
        return None
    transaction.on_commit(partial(_receipt_enqueue, latest.pk, typing=False))
    return latest


def conversation_typing_send(*, conversation: Conversation) -> bool:
    """Show the customer that an operator is typing (which marks their messages read too), at most
    once per TYPING_INTERVAL per conversation across every app server. True when Meta will be asked;
    False when the number may not, the window is closed, the customer never wrote, or it was shown
    less than TYPING_INTERVAL ago."""
    phone_number = PhoneNumber.objects.filter(pk=conversation.phone_number_id).first()
    if not receipts_allowed(phone_number) or not conversation_window(conversation).is_open:
        return False
    latest = _latest_inbound(conversation)
    if latest is None:
        return False
    # Only typing_sent_at: `updated_at` is the live pages' token, and typing changes nothing they show.
    claimed = (
        Conversation.objects.filter(pk=conversation.pk)
        .filter(Q(typing_sent_at__isnull=True) | Q(typing_sent_at__lte=_clock() - TYPING_INTERVAL))
        .update(typing_sent_at=_clock())
    )
    if not claimed:
        return False
    transaction.on_commit(partial(_receipt_enqueue, latest.pk, typing=True))
    return True


def _clock() -> Func:
    """The database's clock at the statement (not now(), the start of its transaction)."""
    return Func(function="clock_timestamp", template="clock_timestamp()", output_field=DateTimeField())


def _receipt_enqueue(message_id: int, *, typing: bool) -> None:
    task_publish(
        message_read_receipt_send_task,
        args=(message_id,),
        kwargs={"typing": typing},
        what=f"the {'typing indicator' if typing else 'read receipt'} of message {message_id}",
        fallback="the next reading of its conversation",
    )


def message_read_receipt_send(*, message_id: int, typing: bool = False) -> bool:
    """Ask Meta to mark the inbound message (and every earlier one) read, showing a typing indicator
    when `typing`, and record it in `read_at`. False when there was nothing to send: the message is
    gone or marked already (a receipt only), another worker has it, or its number may not.
    GraphError propagates for the task to retry or record."""
    with transaction.atomic():
        rows = Message.objects.select_related("phone_number").filter(
            pk=message_id, direction=Message.Direction.INBOUND
        )
        if not typing:
            rows = rows.filter(read_at__isnull=True)
        message = rows.select_for_update(skip_locked=True, of=("self",)).first()
        if message is None or not receipts_allowed(message.phone_number):
            return False
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": message.wamid}
        if typing:
            body["typing_indicator"] = {"type": "text"}
        graph_client().request("POST", f"{message.phone_number.phone_number_id}/messages", json=body)
        now = timezone.now()
        Message.objects.filter(
            contact_id=message.contact_id,
            phone_number_id=message.phone_number_id,
            direction=Message.Direction.INBOUND,
            timestamp__lte=message.timestamp,
            read_at__isnull=True,
        ).update(read_at=now, updated_at=now)
    return True


def _receipt_failed(*, message_id: int, typing: bool, reason: str) -> None:
    """A receipt Meta refused for good: logged and audited. A typing indicator only logged."""
    logger.warning(
        "%s of message %s not sent: %s", "typing indicator" if typing else "read receipt", message_id, reason
    )
    if typing:
        return
    message = Message.objects.filter(pk=message_id).first()
    if message is not None:
        audit_log_record(
            actor=None,
            source=AuditLog.Source.SYSTEM,
            action="message.read_receipt_fail",
            target=message,
            changes={"error": reason},
        )


@shared_task(name="messaging.read_receipt_send", bind=True, max_retries=None)
def message_read_receipt_send_task(self, message_id: int, typing: bool = False) -> bool:
    try:
        return message_read_receipt_send(message_id=message_id, typing=typing)
    except GraphRetryableError as error:
        if typing or self.request.retries >= RETRIES_MAX:
            tries = self.request.retries + 1
            _receipt_failed(
                message_id=message_id, typing=typing, reason=f"{error.reason} (after {tries} tries)"
            )
            return False
        delay_s = max(1, round(BACKOFF.seconds(self.request.retries + 1)))
        # countdown=0: the delay is SQS's own (DelaySeconds), not an eta held by a worker.
        raise self.retry(exc=error, countdown=0, delay_seconds=delay_s, max_retries=RETRIES_MAX) from error
    except GraphError as error:
        _receipt_failed(message_id=message_id, typing=typing, reason=error.reason)
        return False
