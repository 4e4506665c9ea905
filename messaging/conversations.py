"""Conversations: one per contact and sender number, kept current by the paths that write messages.

Counters and times move only inside single statements (`INSERT ... ON CONFLICT ... DO UPDATE` with
GREATEST / LEAST, or a conditional UPDATE), so two workers applying messages of one conversation at
once cannot lose each other's changes, and messages applied out of order leave the latest times.
The inbound path calls `conversation_message_apply` only for a message row it has just inserted,
so a replayed webhook counts nothing twice. Outbound rows get their conversation before their
INSERT (`conversations_outbound_prepare`), one statement for a whole campaign batch, its rows
taken in contact order so that concurrent batches lock conversations in the same order.

What counts as the customer writing (reopens, unread, waiting): an inbound message other than a
reaction, an edit, a revoke or a system notice. Those still join the conversation, and all but
system notices move `last_inbound_at` (the 24-hour window of that number, messaging/window.py).
An operator's reply (the send service, a message echoed from the WhatsApp Business app) makes an
open conversation pending and ends the wait; a campaign's message changes neither. A call
(messaging/calls.py) joins its conversation as its latest activity (time and preview) and changes
nothing else, however often its events are applied. After the customer writes, the inbound path
hands an unassigned conversation of a number with `auto_assign` to the next available operator
(`conversation_auto_assign`, whose protocol is told below).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from core.audit import Actor, audit_log_record, audit_log_record_many
from core.models import AuditLog
from messaging.labels import labels_unknown
from messaging.models import (
    LABEL_PATTERN,
    Call,
    Conversation,
    ConversationNote,
    Message,
    OperatorStatus,
    PhoneNumber,
)
from messaging.receipts import conversation_read_receipt_send

PREVIEW_LENGTH = Conversation._meta.get_field("last_message_preview").max_length
QUIET_KINDS = frozenset({"reaction", "edit", "revoke", "system"})  # never the customer waiting
LABELS_MAX = 20
NOTE_MAX_LENGTH = ConversationNote.BODY_MAX_LENGTH

_C = Conversation._meta.db_table
_M = Message._meta.db_table
_CALL = Call._meta.db_table
_S = Conversation.Status

# The latest message's preview, for SET clauses where `c` is the stored row and EXCLUDED the new one.
_PREVIEW_SET = """
    last_message_preview = CASE
        WHEN EXCLUDED.last_message_at IS NOT NULL
             AND (c.last_message_at IS NULL OR EXCLUDED.last_message_at >= c.last_message_at)
        THEN EXCLUDED.last_message_preview ELSE c.last_message_preview END,
    last_message_at = GREATEST(c.last_message_at, EXCLUDED.last_message_at)"""

_INBOUND_SQL = f"""
WITH conversation AS (
    INSERT INTO {_C} AS c (
        contact_id, phone_number_id, status, labels, priority, unread_count, last_inbound_at,
        last_message_at, last_message_preview, waiting_since, created_at, updated_at
    ) VALUES (
        %(contact_id)s, %(phone_number_id)s, %(status)s, '{{}}', 'none', %(unread)s, %(inbound_at)s,
        %(message_at)s, %(preview)s, %(waiting_since)s, now(), now()
    )
    ON CONFLICT (contact_id, phone_number_id) DO UPDATE SET
        status = CASE WHEN %(writes)s THEN '{_S.OPEN}' ELSE c.status END,
        snoozed_until = CASE WHEN %(writes)s THEN NULL ELSE c.snoozed_until END,
        unread_count = c.unread_count + EXCLUDED.unread_count,
        last_inbound_at = GREATEST(c.last_inbound_at, EXCLUDED.last_inbound_at),
        waiting_since = LEAST(c.waiting_since, EXCLUDED.waiting_since),
        {_PREVIEW_SET},
        updated_at = now()
    RETURNING id
)
UPDATE {_M} SET conversation_id = (SELECT id FROM conversation) WHERE id = %(message_id)s
RETURNING conversation_id
"""

_OUTBOUND_SQL = f"""
INSERT INTO {_C} AS c (
    contact_id, phone_number_id, status, labels, priority, unread_count, last_outbound_at,
    last_message_at, last_message_preview, created_at, updated_at
)
SELECT t.contact_id, t.phone_number_id, '{_S.PENDING}', '{{}}', 'none', 0, t.at, t.at, t.preview, now(), now()
FROM unnest(%(contact_ids)s::bigint[], %(phone_number_ids)s::bigint[], %(ats)s::timestamptz[],
            %(previews)s::text[]) AS t(contact_id, phone_number_id, at, preview)
ORDER BY t.contact_id, t.phone_number_id
ON CONFLICT (contact_id, phone_number_id) DO UPDATE SET
    last_outbound_at = GREATEST(c.last_outbound_at, EXCLUDED.last_outbound_at),
    status = CASE WHEN %(reply)s AND c.status = '{_S.OPEN}' THEN '{_S.PENDING}' ELSE c.status END,
    waiting_since = CASE WHEN %(reply)s THEN NULL ELSE c.waiting_since END,
    {_PREVIEW_SET},
    updated_at = now()
RETURNING id, contact_id, phone_number_id
"""


# A call is the conversation's latest activity and nothing more: status, unread, wait and window stay.
_CALL_SQL = f"""
WITH conversation AS (
    INSERT INTO {_C} AS c (
        contact_id, phone_number_id, status, labels, priority, unread_count,
        last_message_at, last_message_preview, created_at, updated_at
    ) VALUES (
        %(contact_id)s, %(phone_number_id)s, '{_S.PENDING}', '{{}}', 'none', 0,
        %(at)s, %(preview)s, now(), now()
    )
    ON CONFLICT (contact_id, phone_number_id) DO UPDATE SET
        {_PREVIEW_SET},
        updated_at = now()
    RETURNING id
)
UPDATE {_CALL} SET conversation_id = (SELECT id FROM conversation) WHERE id = %(call_id)s
RETURNING conversation_id
"""


def message_preview(*, kind: str, text: str) -> str:
    """What the inbox shows of a message: its text, else its kind."""
    preview = " ".join(text.split()) or f"[{kind}]"
    return preview[:PREVIEW_LENGTH]


# -- kept current by the message paths --------------------------------------------------------------


def conversation_message_apply(*, message: Message, reply: bool = False) -> None:
    """Join a just-inserted message to its conversation (created if needed), in one statement.

    Inbound: the customer writing opens or reopens it, counts one unread and starts the wait.
    Outbound (a message echoed from the business app): `reply` says an operator answered."""
    if message.direction == Message.Direction.OUTBOUND:
        (conversation_id,) = conversations_outbound_prepare(messages=[message], reply=reply).values()
        Message.objects.filter(pk=message.pk).update(conversation_id=conversation_id)
        message.conversation_id = conversation_id
        return
    writes = message.type not in QUIET_KINDS
    with connection.cursor() as cursor:
        cursor.execute(
            _INBOUND_SQL,
            {
                "contact_id": message.contact_id,
                "phone_number_id": message.phone_number_id,
                "status": _S.OPEN if writes else _S.PENDING,
                "writes": writes,
                "unread": 1 if writes else 0,
                "inbound_at": message.timestamp if message.type != "system" else None,
                "message_at": message.timestamp if writes else None,
                "preview": message_preview(kind=message.type, text=message.text) if writes else "",
                "waiting_since": message.timestamp if writes else None,
                "message_id": message.pk,
            },
        )
        (message.conversation_id,) = cursor.fetchone()


def conversation_call_apply(*, call: Call, preview: str) -> None:
    """Join a call to its conversation (created pending if needed), in one statement, and show
    `preview` when the call is the conversation's latest activity (by the call's start). Its
    status, unread count, wait and 24-hour window are left as messages made them. Safe to repeat."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CALL_SQL,
            {
                "contact_id": call.contact_id,
                "phone_number_id": call.phone_number_id,
                "at": call.started_at,
                "preview": preview[:PREVIEW_LENGTH],
                "call_id": call.pk,
            },
        )
        (call.conversation_id,) = cursor.fetchone()


def conversations_outbound_prepare(*, messages: Iterable[Message], reply: bool) -> dict[tuple, int]:
    """Upsert the conversations of outbound messages about to be inserted (or just inserted) and set
    each message's `conversation_id`; one statement for the batch. Returns the conversation id by
    (contact_id, phone_number_id)."""
    latest: dict[tuple, Message] = {}
    messages = list(messages)
    for message in messages:
        key = (message.contact_id, message.phone_number_id)
        if key not in latest or message.timestamp >= latest[key].timestamp:
            latest[key] = message
    if not latest:
        return {}
    rows = list(latest.values())
    with connection.cursor() as cursor:
        cursor.execute(
            _OUTBOUND_SQL,
            {
                "contact_ids": [m.contact_id for m in rows],
                "phone_number_ids": [m.phone_number_id for m in rows],
                "ats": [m.timestamp for m in rows],
                "previews": [message_preview(kind=m.type, text=m.text) for m in rows],
                "reply": reply,
            },
        )
        ids = {(contact_id, number_id): pk for pk, contact_id, number_id in cursor.fetchall()}
    for message in messages:
        message.conversation_id = ids[(message.contact_id, message.phone_number_id)]
    return ids


# -- who sees what ---------------------------------------------------------------------------------


def phone_numbers_visible_q(user: AbstractBaseUser) -> Q:
    """The sender numbers whose conversations `user` sees, as a filter on PhoneNumber: every number
    for a superuser; for anyone else the numbers with none of `PhoneNumber.groups` (an install that
    never set groups works as before) and those with a group `user` belongs to. Whether the user may
    view conversations at all is the permission `messaging.view_conversation`, checked by each door."""
    if user.is_superuser:
        return Q()
    number_groups = PhoneNumber.groups.through.objects.filter(phonenumber_id=OuterRef("pk"))
    return ~Exists(number_groups) | Exists(number_groups.filter(group__user=user.pk))


def conversations_visible_q(user: AbstractBaseUser) -> Q:
    """The conversations `user` sees, as a filter on Conversation (or on Message: the same
    `phone_number` field): those of the numbers of `phone_numbers_visible_q`, and those without a
    sender number (Wharf did not learn it: such a conversation belongs to no number's team, and
    hiding it would leave it to nobody)."""
    if user.is_superuser:
        return Q()
    visible = PhoneNumber.objects.filter(phone_numbers_visible_q(user)).values("pk")
    return Q(phone_number__isnull=True) | Q(phone_number__in=visible)


def phone_number_viewers_q(*, phone_number_id: int | None) -> Q:
    """The users who see the conversations of the number, as a filter on the user model: the other
    side of `phone_numbers_visible_q` (superusers; everyone when the number has no groups; else the
    members of its groups). None, a conversation without a number: everyone."""
    if phone_number_id is None:
        return Q()
    number_groups = PhoneNumber.groups.through.objects.filter(phonenumber_id=phone_number_id)
    members = (
        get_user_model()
        .groups.through.objects.filter(group_id__in=number_groups.values("group_id"))
        .values("user_id")
    )
    return Q(is_superuser=True) | ~Exists(number_groups) | Q(pk__in=members)


def phone_number_visible(*, user: AbstractBaseUser, phone_number_id: int | None) -> bool:
    """Whether `user` sees the conversations of the number (None: a conversation without one)."""
    if phone_number_id is None or user.is_superuser:
        return True
    return PhoneNumber.objects.filter(phone_numbers_visible_q(user), pk=phone_number_id).exists()


# -- operators' actions -----------------------------------------------------------------------------


def _refreshed(conversation: Conversation) -> Conversation:
    conversation.refresh_from_db()
    return conversation


def conversation_read(
    *, conversation: Conversation, actor: Actor, source: str = AuditLog.Source.ADMIN
) -> Conversation:
    """An operator has seen the conversation: nothing unread (audited only when something was), and
    Meta is told the customer's messages were read (`conversation_read_receipt_send`)."""
    with transaction.atomic():
        read = Conversation.objects.filter(pk=conversation.pk, unread_count__gt=0).update(
            unread_count=0, updated_at=timezone.now()
        )
        if read:
            audit_log_record(actor=actor, source=source, action="conversation.read", target=conversation)
        conversation_read_receipt_send(conversation=conversation)
    return _refreshed(conversation)


class ConversationAssignConflict(ValidationError):
    """Someone else changed the assignee since the caller looked; `holder` has it now (None: nobody)."""

    def __init__(self, *, holder: AbstractBaseUser | None):
        who = (holder.get_username() or str(holder)) if holder else "nobody (it was unassigned)"
        super().__init__({"assignee": f"Someone else changed the assignee meanwhile: now {who}."})
        self.holder = holder


def conversation_assign(
    *,
    conversation: Conversation,
    assignee: AbstractBaseUser | None,
    actor: Actor,
    source: str = AuditLog.Source.ADMIN,
) -> Conversation:
    """Assign (or unassign, with None) a conversation the caller saw with `conversation.assignee_id`.

    Only to an active staff member (operators work in the admin) who sees the conversation's number
    (`phone_number_visible`). A conditional UPDATE on the
    assignee the caller saw: of two operators assigning at once, one wins and the other gets a
    ConversationAssignConflict (a ValidationError on `assignee`) naming who holds it now; so does
    a caller who asks for no change when the conversation has changed hands meanwhile."""
    if assignee is not None and not (assignee.is_active and assignee.is_staff):
        raise ValidationError({"assignee": f"{assignee.get_username()} is not an active staff member."})
    if assignee is not None and not phone_number_visible(
        user=assignee, phone_number_id=conversation.phone_number_id
    ):
        raise ValidationError(
            {"assignee": f"{assignee.get_username()} does not see the conversations of this sender number."}
        )
    seen = conversation.assignee_id
    wanted = assignee.pk if assignee is not None else None
    with transaction.atomic():
        unchanged = Conversation.objects.filter(pk=conversation.pk, assignee_id=seen)
        moved = unchanged.update(assignee_id=wanted, updated_at=timezone.now()) if seen != wanted else 0
        if not moved and not (seen == wanted and unchanged.exists()):
            holder = Conversation.objects.select_related("assignee").get(pk=conversation.pk).assignee
            if (holder.pk if holder else None) == wanted:
                return _refreshed(conversation)
            raise ConversationAssignConflict(holder=holder)
        if moved:
            audit_log_record(
                actor=actor,
                source=source,
                action="conversation.assign",
                target=conversation,
                changes={"assignee": [seen, wanted]},
            )
    return _refreshed(conversation)


def conversation_status_set(
    *,
    conversation: Conversation,
    status: str,
    actor: Actor,
    snoozed_until: datetime | None = None,
    source: str = AuditLog.Source.ADMIN,
) -> Conversation:
    """Open, pending, resolved, or snoozed until a time in the future. Resolving ends the wait."""
    if status not in _S.values:
        raise ValidationError({"status": f"One of {', '.join(_S.values)}."})
    now = timezone.now()
    if status == _S.SNOOZED:
        if snoozed_until is None:
            raise ValidationError({"snoozed_until": "Say until when."})
        if snoozed_until <= now:
            raise ValidationError({"snoozed_until": "A snooze ends in the future."})
    else:
        snoozed_until = None
    changes: dict = {"status": status, "snoozed_until": snoozed_until, "updated_at": now}
    if status == _S.RESOLVED:
        changes["waiting_since"] = None
    with transaction.atomic():
        before = (
            Conversation.objects.select_for_update().values("status", "snoozed_until").get(pk=conversation.pk)
        )
        Conversation.objects.filter(pk=conversation.pk).update(**changes)
        audit_log_record(
            actor=actor,
            source=source,
            action="conversation.status",
            target=conversation,
            changes={"status": [before["status"], status]}
            | ({"snoozed_until": snoozed_until.isoformat()} if snoozed_until else {}),
        )
    return _refreshed(conversation)


def conversation_labels_set(
    *, conversation: Conversation, labels: list[str], actor: Actor, source: str = AuditLog.Source.ADMIN
) -> Conversation:
    """Replace the labels: names of the catalogue (messaging.labels; short slugs: lower-case
    letters, digits, - and _), at most 20."""
    if not isinstance(labels, list | tuple) or not all(isinstance(label, str) for label in labels):
        raise ValidationError({"labels": "A list of labels."})
    cleaned = list(dict.fromkeys(label.strip().lower() for label in labels))
    invalid = [label for label in cleaned if not LABEL_PATTERN.match(label)]
    if invalid:
        raise ValidationError(
            {"labels": f"Not a label: {', '.join(invalid)} (up to 32 letters, digits, - or _)."}
        )
    if len(cleaned) > LABELS_MAX:
        raise ValidationError({"labels": f"At most {LABELS_MAX} labels."})
    with transaction.atomic():
        unknown = labels_unknown(cleaned)
        if unknown:
            raise ValidationError({"labels": f"Unknown label: {', '.join(unknown)}."})
        before = (
            Conversation.objects.select_for_update().values_list("labels", flat=True).get(pk=conversation.pk)
        )
        Conversation.objects.filter(pk=conversation.pk).update(labels=cleaned, updated_at=timezone.now())
        audit_log_record(
            actor=actor,
            source=source,
            action="conversation.labels",
            target=conversation,
            changes={"labels": [before, cleaned]},
        )
    return _refreshed(conversation)


def conversation_priority_set(
    *, conversation: Conversation, priority: str, actor: Actor, source: str = AuditLog.Source.ADMIN
) -> Conversation:
    if priority not in Conversation.Priority.values:
        raise ValidationError({"priority": f"One of {', '.join(Conversation.Priority.values)}."})
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).update(priority=priority, updated_at=timezone.now())
        audit_log_record(
            actor=actor,
            source=source,
            action="conversation.priority",
            target=conversation,
            changes={"priority": [conversation.priority, priority]},
        )
    return _refreshed(conversation)


_WAKE_SQL = f"""
UPDATE {_C} SET status = '{_S.OPEN}', snoozed_until = NULL, updated_at = %(now)s
WHERE status = '{_S.SNOOZED}' AND snoozed_until <= %(now)s
RETURNING id
"""


def conversations_wake(*, now: datetime | None = None) -> int:
    """Snoozed conversations whose time has come are open again (beat); returns how many. One
    UPDATE, and one audit row per woken conversation (its timeline says it woke), in one INSERT."""
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_WAKE_SQL, {"now": now})
            ids = [pk for (pk,) in cursor.fetchall()]
        if ids:
            audit_log_record_many(
                actor=None,
                source=AuditLog.Source.SYSTEM,
                action="conversation.wake",
                targets=list(
                    Conversation.objects.select_related("contact", "phone_number").filter(pk__in=ids)
                ),
                changes={"status": [_S.SNOOZED, _S.OPEN]},
            )
    return len(ids)


def conversation_note_add(
    *, conversation: Conversation, body: str, actor: Actor, source: str = AuditLog.Source.ADMIN
) -> ConversationNote:
    """A private note on the conversation (never sent to the customer). Moves the conversation's
    `updated_at`, so the inbox's and the conversation page's live tokens move with it."""
    text = body.strip() if isinstance(body, str) else ""
    if not text:
        raise ValidationError({"body": "Write the note first."})
    if len(text) > NOTE_MAX_LENGTH:
        raise ValidationError({"body": f"At most {NOTE_MAX_LENGTH} characters (this one has {len(text)})."})
    with transaction.atomic():
        note = ConversationNote.objects.create(
            conversation=conversation,
            author=actor if actor is not None and actor.is_authenticated else None,
            body=text,
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        audit_log_record(
            actor=actor,
            source=source,
            action="conversation.note",
            target=conversation,
            changes={"note": note.pk},
        )
    return note


# -- automatic assignment ---------------------------------------------------------------------------
#
# A number with `auto_assign` hands a conversation the customer opens without an assignee to the
# available operator (OperatorStatus.available) who may be assigned it (`conversation_assign`'s
# rule: active staff who see the number) and may view conversations, least recently assigned
# first. The operator's row is taken FOR UPDATE SKIP LOCKED, so two workers assigning at once take
# two operators in turn and never wait on each other (a worker's batch holds its locks until it
# commits); when every candidate is held, the first in turn gets it without moving the turn. The
# conversation moves only by a conditional UPDATE on "no assignee": one assignee, never two.


def operator_available(*, user: AbstractBaseUser) -> bool:
    """Whether `user` takes automatically assigned conversations."""
    return OperatorStatus.objects.filter(user_id=user.pk, available=True).exists()


def operator_availability_set(
    *, user: AbstractBaseUser, available: bool, actor: Actor, source: str = AuditLog.Source.ADMIN
) -> OperatorStatus:
    """Mark `user` available for automatically assigned conversations, or away. Audited when it changes."""
    with transaction.atomic():
        status, _created = OperatorStatus.objects.select_for_update().get_or_create(user_id=user.pk)
        if status.available != available:
            status.available = available
            status.save(update_fields=["available", "updated_at"])
            audit_log_record(
                actor=actor,
                source=source,
                action="operator.availability",
                target=status,
                changes={"available": [not available, available]},
            )
    return status


def _operators_assignable(*, phone_number_id: int):
    """The available operators who may be assigned the number's conversations, in turn."""
    may_view = Permission.objects.filter(content_type__app_label="messaging", codename="view_conversation")
    users = get_user_model().objects.filter(
        phone_number_viewers_q(phone_number_id=phone_number_id),
        Q(is_superuser=True) | Q(user_permissions__in=may_view) | Q(groups__permissions__in=may_view),
        is_active=True,
        is_staff=True,
    )
    return OperatorStatus.objects.filter(available=True, user__in=users.values("pk")).order_by(
        F("last_assigned_at").asc(nulls_first=True), "user_id"
    )


def conversation_auto_assign(*, conversation_id: int) -> int | None:
    """Assign an unassigned conversation of a number with `auto_assign` to the next available
    operator (see above); returns the assignee's id, None when nothing was assigned. Called after
    the customer wrote, in the same transaction; audited as the system's assignment."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.filter(
                pk=conversation_id, assignee__isnull=True, phone_number__auto_assign=True
            )
            .select_related("contact", "phone_number")
            .first()
        )
        if conversation is None:
            return None
        candidates = _operators_assignable(phone_number_id=conversation.phone_number_id)
        turn = candidates.select_for_update(skip_locked=True).first()
        assignee_id = (
            turn.user_id if turn is not None else candidates.values_list("user_id", flat=True).first()
        )
        if assignee_id is None:
            return None
        now = timezone.now()
        moved = Conversation.objects.filter(pk=conversation_id, assignee__isnull=True).update(
            assignee_id=assignee_id, updated_at=now
        )
        if not moved:
            return None
        if turn is not None:
            OperatorStatus.objects.filter(pk=turn.pk).update(last_assigned_at=now)
        audit_log_record(
            actor=None,
            source=AuditLog.Source.SYSTEM,
            action="conversation.assign",
            target=conversation,
            changes={"assignee": [None, assignee_id]},
        )
    return assignee_id
