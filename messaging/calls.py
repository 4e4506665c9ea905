"""WhatsApp calls: the `calls` webhooks made into one Call row per Meta call id, joined to the
conversation of its contact and sender number.

Meta sends for each call a `connect` (the call began: an inbound call rings, a business call's
media is set up), for a business-initiated call statuses (RINGING, ACCEPTED, REJECTED, in the
value's `statuses` with `type: call`), and a `terminate` (COMPLETED or FAILED, with the start, end
and duration of a call that connected). Any of them may come twice or out of order. An event
writes only facts, in one INSERT ... ON CONFLICT (call_id) DO UPDATE where each fact moves one way
(the earliest start, the first connection, end, duration and Meta's end status), so a replay
changes nothing and a connect that arrives after the terminate does not undo the end. The row's
`status` and `missed` are computed from those facts by PostgreSQL (messaging.models.Call).

A call joins its conversation (`conversation_call_apply`) as its latest activity only: the inbox
shows "Missed call" and the like when nothing was said after it; the conversation's status, unread
count, wait and 24-hour window stay as messages made them. A call is not the customer writing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import QuerySet

from contacts.models import Contact
from messaging.conversations import conversation_call_apply, conversations_visible_q
from messaging.inbound.payloads import meta_dict, meta_error, meta_int, meta_name, meta_str, meta_time
from messaging.models import Call, Conversation, PhoneNumber

CALL_EVENTS = frozenset({"connect", "terminate"})
CALL_STATUSES = frozenset({"RINGING", "ACCEPTED", "REJECTED"})
_DIRECTIONS = {"USER_INITIATED": Call.Direction.INBOUND, "BUSINESS_INITIATED": Call.Direction.OUTBOUND}
_ID_LENGTH = Call._meta.get_field("call_id").max_length
_NUMBER_LENGTH = Call._meta.get_field("from_number").max_length


class CallEventInvalid(ValueError):
    """A call entry Wharf cannot read; `event` names what is wrong, as an unknown webhook event."""

    def __init__(self, event: str):
        super().__init__(event)
        self.event = event[:64]


@dataclass(frozen=True)
class CallEvent:
    """What one of Meta's call events says about its call; None where it says nothing."""

    call_id: str
    direction: str
    customer_wa_id: str  # the contact's WhatsApp id (the caller, or whom the business called)
    customer_user_id: str
    from_number: str
    to_number: str
    at: datetime  # when the event happened
    started_at: datetime
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: int | None = None
    rejected_at: datetime | None = None
    end_status: str = ""
    error: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


# -- reading Meta's shapes --------------------------------------------------------------------------


def _digits(value: str) -> str:
    return "".join(character for character in value if character in "0123456789")


def _call_id(item: dict) -> str:
    call_id = meta_name(item.get("id"))
    if not call_id or len(call_id) > _ID_LENGTH:
        raise CallEventInvalid("call_without_id")
    return call_id


def call_event_read(*, item: Any, value: dict, fallback_at: datetime) -> CallEvent:
    """One entry of a `calls` value's `calls` list (a connect or a terminate), as a CallEvent.
    Raises CallEventInvalid for an entry without an id or with an event Wharf does not know."""
    if not isinstance(item, dict):
        raise CallEventInvalid("call_not_an_object")
    call_id = _call_id(item)
    kind = meta_name(item.get("event")).lower()
    if kind not in CALL_EVENTS:
        raise CallEventInvalid(f"call.{kind or 'unnamed'}")
    from_number, to_number = (
        meta_name(item.get("from"), _NUMBER_LENGTH),
        meta_name(item.get("to"), _NUMBER_LENGTH),
    )
    direction = _DIRECTIONS.get(meta_name(item.get("direction")).upper())
    if direction is None:  # not said: the business's own number is the caller of an outbound call
        business = _digits(meta_str(meta_dict(value.get("metadata")).get("display_phone_number")))
        outbound = bool(business) and _digits(from_number) == business
        direction = Call.Direction.OUTBOUND if outbound else Call.Direction.INBOUND
    inbound = direction == Call.Direction.INBOUND
    at = meta_time(item.get("timestamp")) or fallback_at
    facts: dict[str, Any] = {"started_at": at}
    if kind == "terminate":
        start, end = meta_time(item.get("start_time")), meta_time(item.get("end_time")) or at
        duration = meta_int(item.get("duration"))
        if duration is None and start is not None and end >= start:
            duration = int((end - start).total_seconds())
        duration = duration if duration is not None and duration >= 0 else None
        connected_at = None
        if duration:
            connected_at = start or end - timedelta(seconds=duration)
        facts = {
            "started_at": min(moment for moment in (start, at, connected_at) if moment is not None),
            "connected_at": connected_at,
            "ended_at": end,
            "duration_s": duration,
            "end_status": meta_name(item.get("status"), 16).upper(),
            "error": meta_error(item.get("errors")) or meta_error(value.get("errors")),
        }
    return CallEvent(
        call_id=call_id,
        direction=direction,
        customer_wa_id=(from_number if inbound else to_number).removeprefix("+"),
        customer_user_id=meta_name(item.get("from_user_id" if inbound else "to_user_id"), 128),
        from_number=from_number,
        to_number=to_number,
        at=at,
        payload=item,
        **facts,
    )


def call_status_read(*, item: Any, value: dict, fallback_at: datetime) -> CallEvent:
    """A status of a business-initiated call (`statuses` entry with `type: call`) as a CallEvent.
    Raises CallEventInvalid for one without an id or with a status Wharf does not know."""
    if not isinstance(item, dict):
        raise CallEventInvalid("call_status_not_an_object")
    status = item
    call_id = _call_id(status)
    name = meta_name(status.get("status")).upper()
    if name not in CALL_STATUSES:
        raise CallEventInvalid(f"call_status.{name.lower() or 'unnamed'}")
    at = meta_time(status.get("timestamp")) or fallback_at
    recipient = meta_name(status.get("recipient_id"), _NUMBER_LENGTH)
    return CallEvent(
        call_id=call_id,
        direction=Call.Direction.OUTBOUND,
        customer_wa_id=recipient.removeprefix("+"),
        customer_user_id=meta_name(status.get("recipient_user_id"), 128),
        from_number=meta_str(meta_dict(value.get("metadata")).get("display_phone_number"), _NUMBER_LENGTH),
        to_number=recipient,
        at=at,
        started_at=at,
        connected_at=at if name == "ACCEPTED" else None,
        rejected_at=at if name == "REJECTED" else None,
        error=meta_error(status.get("errors")),
        payload=status,
    )


# -- writing ----------------------------------------------------------------------------------------

_T = Call._meta.db_table

_UPSERT_SQL = f"""
INSERT INTO {_T} AS c (
    call_id, phone_number_id, contact_id, direction, from_number, to_number, started_at,
    connected_at, ended_at, duration_s, rejected_at, end_status, error_code, error_title,
    error_details, payload, last_event_at, created_at, updated_at
) VALUES (
    %(call_id)s, %(phone_number_id)s, %(contact_id)s, %(direction)s, %(from_number)s, %(to_number)s,
    %(started_at)s, %(connected_at)s, %(ended_at)s, %(duration_s)s, %(rejected_at)s, %(end_status)s,
    %(error_code)s, %(error_title)s, %(error_details)s, %(payload)s::jsonb, %(at)s, now(), now()
)
ON CONFLICT (call_id) DO UPDATE SET
    phone_number_id = COALESCE(c.phone_number_id, EXCLUDED.phone_number_id),
    from_number = COALESCE(NULLIF(c.from_number, ''), EXCLUDED.from_number),
    to_number = COALESCE(NULLIF(c.to_number, ''), EXCLUDED.to_number),
    started_at = LEAST(c.started_at, EXCLUDED.started_at),
    connected_at = LEAST(c.connected_at, EXCLUDED.connected_at),
    ended_at = COALESCE(c.ended_at, EXCLUDED.ended_at),
    duration_s = COALESCE(c.duration_s, EXCLUDED.duration_s),
    rejected_at = LEAST(c.rejected_at, EXCLUDED.rejected_at),
    end_status = COALESCE(NULLIF(c.end_status, ''), EXCLUDED.end_status),
    error_code = COALESCE(c.error_code, EXCLUDED.error_code),
    error_title = COALESCE(NULLIF(c.error_title, ''), EXCLUDED.error_title),
    error_details = COALESCE(NULLIF(c.error_details, ''), EXCLUDED.error_details),
    payload = CASE WHEN c.last_event_at IS NULL OR EXCLUDED.last_event_at >= c.last_event_at
                   THEN EXCLUDED.payload ELSE c.payload END,
    last_event_at = GREATEST(c.last_event_at, EXCLUDED.last_event_at),
    updated_at = now()
RETURNING id
"""


def call_event_apply(*, event: CallEvent, contact: Contact, phone_number: PhoneNumber | None) -> Call:
    """Write what one call event says into its call (made on the first event) and join the call to
    its conversation. Safe to apply again, and in any order with the call's other events: the
    first event's contact, direction and number stay."""
    error = {"error_code": None, "error_title": "", "error_details": "", **event.error}
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT_SQL,
            {
                "call_id": event.call_id,
                "phone_number_id": phone_number.pk if phone_number else None,
                "contact_id": contact.pk,
                "direction": event.direction,
                "from_number": event.from_number,
                "to_number": event.to_number,
                "started_at": event.started_at,
                "connected_at": event.connected_at,
                "ended_at": event.ended_at,
                "duration_s": event.duration_s,
                "rejected_at": event.rejected_at,
                "end_status": event.end_status,
                **error,
                "payload": json.dumps(event.payload),
                "at": event.at,
            },
        )
        (call_id,) = cursor.fetchone()
    call = Call.objects.get(pk=call_id)
    conversation_call_apply(call=call, preview=call_preview(call))
    return call


# -- reading ----------------------------------------------------------------------------------------

_PREVIEWS = {
    Call.Status.ONGOING: "Call in progress",
    Call.Status.MISSED: "Missed call",
    Call.Status.UNANSWERED: "Unanswered call",
    Call.Status.REJECTED: "Declined call",
    Call.Status.FAILED: "Failed call",
}


def call_duration_text(seconds: int | None) -> str:
    """A call's length as people read it: 0:42, 12:05, 1:02:03; empty when unknown."""
    if seconds is None:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


def call_preview(call: Call) -> str:
    """What the inbox shows of a call: "Missed call", "Incoming call (2:05)" ..."""
    if call.status in _PREVIEWS:
        return _PREVIEWS[call.status]
    side = "Incoming call" if call.direction == Call.Direction.INBOUND else "Outgoing call"
    if call.status == Call.Status.COMPLETED and call.duration_s is not None:
        return f"{side} ({call_duration_text(call.duration_s)})"
    return side


def call_list(
    *,
    user: AbstractBaseUser,
    direction: str | None = None,
    status: str | None = None,
    missed: bool | None = None,
    phone_number: int | None = None,
    contact: int | None = None,
    since: datetime | None = None,
) -> QuerySet[Call]:
    """Calls of the sender numbers `user` sees (`conversations_visible_q`), the latest first, with
    contact and number joined; `phone_number` and `contact` are ids, `since` is inclusive on the
    start; a filter left None is not applied."""
    queryset = Call.objects.select_related("contact", "phone_number").filter(conversations_visible_q(user))
    if direction:
        queryset = queryset.filter(direction=direction)
    if status:
        queryset = queryset.filter(status=status)
    if missed is not None:
        queryset = queryset.filter(missed=missed)
    if phone_number is not None:
        queryset = queryset.filter(phone_number_id=phone_number)
    if contact is not None:
        queryset = queryset.filter(contact_id=contact)
    if since is not None:
        queryset = queryset.filter(started_at__gte=since)
    return queryset.order_by("-started_at", "-id")


def call_get(*, id: int, user: AbstractBaseUser) -> Call | None:
    """The call, when `user` sees its sender number."""
    return call_list(user=user).filter(id=id).first()


def calls_of_conversations(
    *, conversations: QuerySet[Conversation], since: datetime | None = None, until: datetime | None = None
) -> QuerySet[Call]:
    """The conversations' calls, oldest first, for a timeline: started at or after `since` and
    before `until` when given (the span of a page of messages)."""
    queryset = Call.objects.filter(conversation__in=conversations)
    if since is not None:
        queryset = queryset.filter(started_at__gte=since)
    if until is not None:
        queryset = queryset.filter(started_at__lt=until)
    return queryset.order_by("started_at", "id")
