"""Turns one stored webhook body into contacts, messages, statuses and typed events.

An event may be applied more than once (a retry after a crash, an operator's reprocess, the same
message in two bodies), so every write is idempotent: messages are keyed by Meta's `wamid` and the
first body to bring an id wins; typed events by (event, position); analytics rows by (kind, wamid,
status); pending statuses by (wamid, status, timestamp).

Statuses only move a message forward. Each is one UPDATE whose WHERE names the states the message
may leave, and PostgreSQL evaluates that WHERE again on a row that another transaction changed
first, so two workers applying "read" and a late "delivered" at once cannot move a message back.
A status for a `wamid` not stored yet becomes a PendingStatus. That path and the creation of a
message (`message_pending_statuses_apply`) take the same transaction-level advisory lock on the
`wamid` before they look for each other's rows, so one of them always sees the other. An outbound
message learns its wamid from Meta's answer to its send, which a status may beat: it waits as
pending until the sending worker records the answer, and if the answer never came (the message is
in doubt) the status's `biz_opaque_callback_data`, our message id, settles the message at once.
The drain applies a batch's bodies of statuses only together (`inbound_statuses_apply`): the
wamids it does not find are locked in wamid order before they are looked for again, and the
messages are locked in id order before their statuses are played over them, so the lock's
guarantee holds and two such batches wait for each other instead of deadlocking.

Reactions, edits and revokes are rows of their own; the message they are about is recomputed from
all of them (latest reaction, latest edit, first revoke) under a row lock, whichever arrives first.

The caller (the inbound drain) runs each event (or the batch's statuses) in a savepoint, records
the event's state and enqueues media fetches after commit: nothing here saves the event or enqueues
work. Payloads are Meta's, so shapes are never trusted: anything unexpected is kept as an unknown
WebhookEvent.

Where Meta leaves the choice to us: an event for a phone_number_id Wharf does not know is applied
all the same, its rows without a sender number and the event flagged, so nothing waits on an
operator. Messages the business sent from the WhatsApp Business app (smb_message_echoes) become
outbound messages, so their statuses apply and the conversation is whole. A user's marketing "stop"
in user_preferences opts the contact out and "resume" opts it back in, like the STOP and START
keywords; the latest keyword a contact sent wins, whatever order the bodies arrive in. Calls
(connects, terminates and call statuses) become Call rows (messaging/calls.py); a call entry Wharf
cannot read is kept as an unknown WebhookEvent beside the change's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models.functions import Lower, Trim
from django.utils import timezone

from contacts.models import Contact
from contacts.services.contact import contact_opt_in, contact_opt_out
from contacts.services.whatsapp import contact_upsert_whatsapp
from core.models import AuditLog
from messaging.calls import CallEvent, CallEventInvalid, call_event_apply, call_event_read, call_status_read
from messaging.conversations import QUIET_KINDS, conversation_auto_assign, conversation_message_apply
from messaging.inbound.payloads import (
    inbound_payload_parse,
    meta_dict,
    meta_dicts,
    meta_error,
    meta_name,
    meta_str,
    meta_time,
    meta_wa_id,
)
from messaging.models import AnalyticsEvent, InboundEvent, Message, PhoneNumber, WebhookEvent
from messaging.numbers import phone_number_name_webhook_apply, phone_number_quality_webhook_apply
from messaging.statuses import (
    STATUS_TIMES,
    StatusReport,
    message_pending_statuses_apply,
    status_record,
    statuses_lookup,
    statuses_record,
)
from messaging.templates import TEMPLATE_FIELDS, template_webhook_apply

OBJECT = "whatsapp_business_account"
MEDIA_KINDS = frozenset({"image", "video", "audio", "document", "sticker"})
TARGET_KINDS = frozenset({"reaction", "edit", "revoke"})
# Fields other than `messages` that Meta documents for WhatsApp Business Accounts.
KNOWN_FIELDS = frozenset(
    {
        "account_alerts",
        "account_review_update",
        "account_settings_update",
        "account_update",
        "automatic_events",
        "business_capability_update",
        "business_status_update",
        "calls",
        "flows",
        "group_lifecycle_update",
        "group_participants_update",
        "group_settings_update",
        "group_status_update",
        "history",
        "message_echoes",
        "message_template_components_update",
        "message_template_quality_update",
        "message_template_status_update",
        "partner_solutions",
        "payment_configuration_update",
        "phone_number_name_update",
        "phone_number_quality_update",
        "security",
        "smb_app_state_sync",
        "smb_message_echoes",
        "template_category_update",
        "template_correct_category_detection",
        "tracking_events",
        "user_preferences",
    }
)
# The value key that names what happened, for fields whose value has no `event`.
_EVENT_KEYS = {
    "message_template_quality_update": "new_quality_score",
    "template_category_update": "new_category",
    "message_template_components_update": "message_template_name",
    "phone_number_name_update": "decision",
    "account_review_update": "decision",
}
_EVENT_DEFAULTS = {"business_capability_update": "capability_update", "history": "history_sync"}
# A field whose value is a list of items: the event is the first item's `event`, `type` or `value`.
_EVENT_LISTS = {
    "calls": "calls",
    "user_preferences": "user_preferences",
    "smb_message_echoes": "message_echoes",
    "message_echoes": "message_echoes",
    "smb_app_state_sync": "state_sync",
    "history": "history",
}


@dataclass
class ApplyResult:
    fields: list[str] = field(default_factory=list)
    unknown_phone_number: bool = False
    unknown_fields: bool = False
    media_message_ids: list[int] = field(default_factory=list)


def _payload(event: InboundEvent) -> Any:
    """The stored payload; for an event stored without one, its body read as the webhook view would."""
    if event.payload is not None:
        return event.payload
    return inbound_payload_parse(bytes(event.body or b""))


# -- message content ------------------------------------------------------------------------------


def _join(*parts: str, sep: str = ", ") -> str:
    return sep.join(part for part in parts if part)


def _location_text(location: dict) -> str:
    latitude, longitude = meta_str(location.get("latitude")), meta_str(location.get("longitude"))
    where = f"({latitude}, {longitude})" if latitude and longitude else ""
    return _join(_join(meta_str(location.get("name")), meta_str(location.get("address"))), where, sep=" ")


def _contacts_text(cards: list[dict]) -> str:
    names = []
    for card in cards:
        name = meta_dict(card.get("name"))
        names.append(
            meta_str(name.get("formatted_name"))
            or _join(meta_str(name.get("first_name")), meta_str(name.get("last_name")), sep=" ")
        )
    return _join(*names)


def _interactive_text(interactive: dict) -> str:
    kind = meta_name(interactive.get("type"))
    reply = meta_dict(interactive.get(kind))
    if kind == "nfm_reply":
        return meta_str(reply.get("response_json")) or meta_str(reply.get("body"))
    if kind == "call_permission_reply":
        return _join("Call permission", meta_str(reply.get("response")), sep=": ")
    if kind == "list_reply":
        return _join(meta_str(reply.get("title")), meta_str(reply.get("description")), sep=" — ") or meta_str(
            reply.get("id")
        )
    return meta_str(reply.get("title")) or meta_str(reply.get("id"))


def _order_text(order: dict) -> str:
    items = []
    for item in meta_dicts(order.get("product_items")):
        price = _join(meta_str(item.get("item_price")), meta_str(item.get("currency")), sep=" ")
        line = f"{meta_str(item.get('quantity')) or '?'} x {meta_str(item.get('product_retailer_id'))}"
        items.append(_join(line, price, sep=" at "))
    catalog = meta_str(order.get("catalog_id"))
    summary = f"Order from catalog {catalog}" if catalog else "Order"
    return _join(_join(summary, "; ".join(items), sep=": "), meta_str(order.get("text")), sep="\n")


def _message_text(kind: str, message: dict) -> str:
    """What an operator reads in the conversation; the whole message stays in `payload`."""
    body = meta_dict(message.get(kind))
    if kind == "text":
        return meta_str(body.get("body"))
    if kind in {"image", "video", "document"}:
        return meta_str(body.get("caption"))
    if kind == "location":
        return _location_text(body)
    if kind == "contacts":
        return _contacts_text(meta_dicts(message.get("contacts")))
    if kind == "interactive":
        return _interactive_text(body)
    if kind == "button":
        return meta_str(body.get("text")) or meta_str(body.get("payload"))
    if kind == "order":
        return _order_text(body)
    if kind == "system":
        return meta_str(body.get("body"))
    if kind == "reaction":
        return meta_str(body.get("emoji"))
    if kind == "edit":
        inner = meta_dict(body.get("message"))
        inner_kind = meta_name(inner.get("type"))
        return _message_text(inner_kind, inner) if inner_kind and inner_kind != "edit" else ""
    return meta_str(body.get("body")) or meta_str(body.get("text")) or meta_str(body.get("caption"))


def _message_kind(message: dict) -> str:
    kind = meta_name(message.get("type"), 32)
    if kind:
        return kind
    for candidate in ("text", *sorted(MEDIA_KINDS), "location", "contacts", "interactive", "button"):
        if isinstance(message.get(candidate), dict | list):
            return candidate
    return "unsupported"


def _target_wamid(kind: str, message: dict) -> str:
    body = meta_dict(message.get(kind))
    if kind == "reaction":
        return meta_str(body.get("message_id"), 255)
    if kind in {"edit", "revoke"}:
        return meta_str(body.get("original_message_id"), 255)
    return ""


def _media(kind: str, message: dict) -> dict[str, Any]:
    if kind not in MEDIA_KINDS:
        return {}
    media = meta_dict(message.get(kind))
    media_id = meta_str(media.get("id"), 128)
    if not media_id:
        return {}
    return {
        "media_id": media_id,
        "media_mime_type": meta_str(media.get("mime_type"), 128),
        "media_sha256": meta_str(media.get("sha256"), 128),
        "media_filename": meta_str(media.get("filename"), 255) if kind == "document" else "",
        "media_state": Message.MediaState.PENDING,
    }


# -- the walk over a body -------------------------------------------------------------------------


class _Apply:
    """One application of one event's payload: the result, and what it looked up along the way."""

    def __init__(self, event: InboundEvent):
        self.event = event
        self.result = ApplyResult()
        self.position = 0
        self.phone_numbers: dict[str, PhoneNumber | None] = {}
        self.fallback_time = event.received_at or timezone.now()

    def run(self) -> ApplyResult:
        payload = _payload(self.event)
        entries = meta_dicts(payload.get("entry")) if isinstance(payload, dict) else []
        if not entries or payload.get("object", OBJECT) != OBJECT:
            self.unknown(field="", event="not_a_whatsapp_envelope", value=payload)
            return self.result
        for entry in entries:
            waba_id = meta_str(entry.get("id"), 64)
            entry_time = meta_time(entry.get("time"))
            changes = entry.get("changes")
            if not isinstance(changes, list) or not changes:
                self.unknown(field="", event="entry_without_changes", value=entry, waba_id=waba_id)
                continue
            for change in changes:
                self.change(change, waba_id=waba_id, entry_time=entry_time)
        return self.result

    # -- recording ---------------------------------------------------------------------------------

    def webhook_event(
        self,
        *,
        field: str,
        event: str,
        value: Any,
        known: bool,
        waba_id: str = "",
        phone_number: PhoneNumber | None = None,
        occurred_at: datetime | None = None,
    ) -> WebhookEvent:
        # Rows are numbered in the order the walk meets them, the same on every run over a body.
        self.position += 1
        if not known:
            self.result.unknown_fields = True
        row, _ = WebhookEvent.objects.get_or_create(
            inbound_event=self.event,
            position=self.position,
            defaults={
                "field": field[:64],
                "event": event[:64],
                "known": known,
                "waba_id": waba_id,
                "phone_number": phone_number,
                "value": {} if value is None else value,
                "occurred_at": occurred_at,
            },
        )
        return row

    def unknown(self, *, field: str, event: str, value: Any, **kwargs: Any) -> None:
        self.webhook_event(field=field, event=event, value=value, known=False, **kwargs)

    def phone_number(self, value: dict) -> PhoneNumber | None:
        """The sender number named by the value's metadata; an id Wharf does not know is flagged."""
        phone_number_id = meta_str(meta_dict(value.get("metadata")).get("phone_number_id"), 64)
        if not phone_number_id:
            return None
        if phone_number_id not in self.phone_numbers:
            self.phone_numbers[phone_number_id] = PhoneNumber.objects.filter(
                phone_number_id=phone_number_id
            ).first()
        number = self.phone_numbers[phone_number_id]
        if number is None:
            self.result.unknown_phone_number = True
        return number

    # -- changes -----------------------------------------------------------------------------------

    def change(self, change: Any, *, waba_id: str, entry_time: datetime | None) -> None:
        if not isinstance(change, dict):
            self.unknown(field="", event="change_not_an_object", value=change, waba_id=waba_id)
            return
        field_name = meta_name(change.get("field"), 64)
        value = change.get("value")
        if field_name and field_name not in self.result.fields:
            self.result.fields.append(field_name)
        if not isinstance(value, dict):
            self.unknown(field=field_name, event="value_not_an_object", value=change, waba_id=waba_id)
            return
        phone_number = self.phone_number(value)
        if field_name == "messages":
            self.messages_change(value, waba_id=waba_id, entry_time=entry_time, phone_number=phone_number)
            return
        known = field_name in KNOWN_FIELDS
        self.webhook_event(
            field=field_name,
            event=_event_name(field_name, value) if known else meta_str(value.get("event"), 64),
            value=value,
            known=known,
            waba_id=waba_id,
            phone_number=phone_number,
            occurred_at=entry_time or _value_time(value),
        )
        if field_name == "phone_number_quality_update":
            phone_number_quality_webhook_apply(
                value=value, waba_id=waba_id, at=entry_time or self.fallback_time
            )
        elif field_name == "phone_number_name_update":
            phone_number_name_webhook_apply(value=value, waba_id=waba_id)
        elif field_name in TEMPLATE_FIELDS:
            template_webhook_apply(field=field_name, waba_id=waba_id, value=value)
        elif field_name == "user_preferences":
            _user_preferences_apply(value)
        elif field_name in {"smb_message_echoes", "message_echoes"}:
            for echo in meta_dicts(value.get("message_echoes")):
                self.message(echo, value, entry_time=entry_time, phone_number=phone_number, echo=True)
        elif field_name == "calls":
            self.calls_change(value, waba_id=waba_id, entry_time=entry_time, phone_number=phone_number)

    def calls_change(
        self, value: dict, *, waba_id: str, entry_time: datetime | None, phone_number: PhoneNumber | None
    ) -> None:
        """Connects and terminates (`calls`), and business calls' statuses (`statuses`)."""
        for items, read in ((value.get("calls"), call_event_read), (value.get("statuses"), call_status_read)):
            for item in items if isinstance(items, list) else []:
                self.call(
                    item, value, read=read, waba_id=waba_id, entry_time=entry_time, phone_number=phone_number
                )

    def messages_change(
        self, value: dict, *, waba_id: str, entry_time: datetime | None, phone_number: PhoneNumber | None
    ) -> None:
        messages, statuses = value.get("messages"), value.get("statuses")
        handled = False
        if isinstance(messages, list):
            handled = True
            for message in messages:
                self.message(message, value, entry_time=entry_time, phone_number=phone_number)
        if isinstance(statuses, list):
            handled = True
            for status in statuses:
                if isinstance(status, dict) and meta_name(status.get("type")) == "call":
                    self.call(
                        status,
                        value,
                        read=call_status_read,
                        waba_id=waba_id,
                        entry_time=entry_time,
                        phone_number=phone_number,
                    )
                    continue
                self.status(status, entry_time=entry_time, phone_number=phone_number, waba_id=waba_id)
        if not handled:
            self.unknown(
                field="messages",
                event=meta_str(value.get("event"), 64) or "no_messages_or_statuses",
                value=value,
                waba_id=waba_id,
                phone_number=phone_number,
                occurred_at=entry_time,
            )

    # -- messages ----------------------------------------------------------------------------------

    def message(
        self,
        message: Any,
        value: dict,
        *,
        entry_time: datetime | None,
        phone_number: PhoneNumber | None,
        echo: bool = False,
    ) -> None:
        field_name = "smb_message_echoes" if echo else "messages"
        wamid = meta_name(message.get("id")) if isinstance(message, dict) else ""
        if not wamid or len(wamid) > 255:
            self.unknown(
                field=field_name, event="message_without_id", value=message, phone_number=phone_number
            )
            return
        kind = _message_kind(message)
        timestamp = meta_time(message.get("timestamp")) or entry_time or self.fallback_time
        # A system notice (a changed number, a changed identity) is not the user writing to us.
        inbound_at = timestamp if not echo and kind != "system" else None
        contact = _sender(message, value, echo=echo, inbound_at=inbound_at)
        if contact is None:
            self.unknown(
                field=field_name, event="message_without_sender", value=message, phone_number=phone_number
            )
            return
        context = meta_dict(message.get("context"))
        # On the unique wamid: a concurrent insert of the same id waits for the other, then finds it.
        message, created = Message.objects.get_or_create(
            wamid=wamid,
            defaults={
                "direction": Message.Direction.OUTBOUND if echo else Message.Direction.INBOUND,
                "type": kind,
                "status": Message.Status.SENT if echo else Message.Status.RECEIVED,
                "sent_at": timestamp if echo else None,
                "contact": contact,
                "phone_number": phone_number,
                "text": _message_text(kind, message),
                "payload": message,
                "timestamp": timestamp,
                "context_wamid": meta_str(context.get("id"), 255),
                "target_wamid": _target_wamid(kind, message),
                **_media(kind, message),
                **(meta_error(message.get("errors")) or meta_error(value.get("errors"))),
            },
        )
        if message.media_state == Message.MediaState.PENDING and message.contact_id == contact.pk:
            self.result.media_message_ids.append(message.pk)
        if not created:
            return
        # Only the body that inserted the message counts it: a replay changes no conversation.
        conversation_message_apply(message=message, reply=echo)
        if not echo and kind not in QUIET_KINDS:
            conversation_auto_assign(conversation_id=message.conversation_id)
        if not echo:
            AnalyticsEvent.objects.bulk_create(
                [
                    AnalyticsEvent(
                        kind=AnalyticsEvent.Kind.MESSAGE_RECEIVED,
                        wamid=message.wamid,
                        message=message,
                        contact_id=contact.pk,
                        phone_number_id=phone_number.pk if phone_number else None,
                        occurred_at=timestamp,
                        data={"type": kind},
                    )
                ],
                ignore_conflicts=True,
            )
        if message.target_wamid:
            _target_refresh(message.target_wamid)
        _target_refresh(message.wamid, only_if_targeted=True)
        message_pending_statuses_apply(message=message)
        if kind == "text" and not echo:
            _keywords_apply(message=message, contact=contact)

    # -- calls -------------------------------------------------------------------------------------

    def call(
        self,
        item: Any,
        value: dict,
        *,
        read: Callable[..., CallEvent],
        waba_id: str,
        entry_time: datetime | None,
        phone_number: PhoneNumber | None,
    ) -> None:
        """A connect, terminate or status of a call into its Call row; what cannot be read is kept
        as an unknown event, and the rest of the body is applied all the same."""
        try:
            event = read(item=item, value=value, fallback_at=entry_time or self.fallback_time)
        except CallEventInvalid as invalid:
            self.unknown(
                field="calls", event=invalid.event, value=item, waba_id=waba_id, phone_number=phone_number
            )
            return
        contact = _profile_contact(
            wa_id=event.customer_wa_id, user_id=event.customer_user_id, value=value, inbound_at=None
        )
        if contact is None:
            self.unknown(
                field="calls",
                event="call_without_contact",
                value=item,
                waba_id=waba_id,
                phone_number=phone_number,
                occurred_at=event.at,
            )
            return
        call_event_apply(event=event, contact=contact, phone_number=phone_number)

    # -- statuses ----------------------------------------------------------------------------------

    def status(
        self, status: Any, *, entry_time: datetime | None, phone_number: PhoneNumber | None, waba_id: str
    ) -> None:
        wamid = meta_name(status.get("id")) if isinstance(status, dict) else ""
        name = meta_name(status.get("status")).lower() if isinstance(status, dict) else ""
        if not wamid or len(wamid) > 255 or name not in STATUS_TIMES:
            if not wamid or len(wamid) > 255:
                event = "status_without_id"
            else:
                event = f"status.{name}" if name else "status_unnamed"
            self.unknown(
                field="messages", event=event, value=status, waba_id=waba_id, phone_number=phone_number
            )
            return
        at = meta_time(status.get("timestamp")) or entry_time or self.fallback_time
        outcome = status_record(wamid=wamid, status=name, at=at, payload=status)
        if outcome == "inbound":
            self.unknown(
                field="messages",
                event="status_for_inbound_message",
                value=status,
                waba_id=waba_id,
                phone_number=phone_number,
                occurred_at=at,
            )


def _event_name(field_name: str, value: dict) -> str:
    """What happened, for a typed event: the value's `event`, else what names it for that field."""
    event = meta_str(value.get("event"), 64)
    if event:
        return event
    if field_name in _EVENT_KEYS:
        return meta_str(value.get(_EVENT_KEYS[field_name]), 64)
    if field_name == "account_alerts":
        return meta_str(meta_dict(value.get("alert_info")).get("alert_type"), 64)
    if field_name == "calls" and not isinstance(value.get("calls"), list):
        first = next(iter(meta_dicts(value.get("statuses"))), {})  # a call's status: RINGING, ACCEPTED ...
        return meta_str(first.get("status"), 64).lower()
    if field_name in _EVENT_LISTS:
        first = next(iter(meta_dicts(value.get(_EVENT_LISTS[field_name]))), {})
        if field_name == "user_preferences":
            return _join(meta_str(first.get("category")), meta_str(first.get("value")), sep=".")[:64]
        event = meta_str(first.get("event") or first.get("type") or first.get("value"), 64)
        if event:
            return event
    return _EVENT_DEFAULTS.get(field_name, "")


def _value_time(value: dict) -> datetime | None:
    found = meta_time(value.get("timestamp"))
    if found:
        return found
    for key in ("calls", "statuses", "user_preferences", "message_echoes"):
        for item in meta_dicts(value.get(key)):
            if found := meta_time(item.get("timestamp")):
                return found
    return None


# -- contacts -------------------------------------------------------------------------------------


def _sender(message: dict, value: dict, *, echo: bool, inbound_at: datetime | None) -> Contact | None:
    """The contact a message belongs to: its sender, or for a business echo its recipient.

    `value.contacts` gives the profile; an entry is used only when its wa_id or user id is the
    message's own, so a profile never lands on a contact it does not describe.
    """
    return _profile_contact(
        wa_id=meta_name(message.get("to" if echo else "from")),
        user_id=meta_name(message.get("to_user_id" if echo else "from_user_id")),
        value=value,
        inbound_at=inbound_at,
    )


def _profile_contact(*, wa_id: str, user_id: str, value: dict, inbound_at: datetime | None) -> Contact | None:
    """The contact with these ids, its profile from `value.contacts` (the entry with its ids, or the
    only entry when no id is given); None when neither gives an id. A WhatsApp id that is not one
    (`meta_wa_id`) counts as none."""
    wa_id = meta_wa_id(wa_id)
    profiles = meta_dicts(value.get("contacts"))
    profile = next(
        (
            entry
            for entry in profiles
            if (wa_id and meta_wa_id(entry.get("wa_id")) == wa_id)
            or (user_id and meta_name(entry.get("user_id")) == user_id)
        ),
        None,
    )
    if profile is None and not wa_id and not user_id and len(profiles) == 1:
        profile = profiles[0]
    profile = profile or {}
    wa_id = wa_id or meta_wa_id(profile.get("wa_id"))
    user_id = user_id or meta_name(profile.get("user_id"))
    if len(wa_id) > 32:
        wa_id = ""
    if len(user_id) > 128:
        user_id = ""
    if not wa_id and not user_id:
        return None
    details = meta_dict(profile.get("profile"))
    return contact_upsert_whatsapp(
        wa_id=wa_id,
        user_id=user_id,
        profile_name=meta_str(details.get("name"), 200),
        username=meta_str(details.get("username"), 128),
        inbound_at=inbound_at,
    )


def _keyword(text: str) -> str:
    return text.strip().casefold()


def _keywords_apply(*, message: Message, contact: Contact) -> None:
    """STOP / START as a whole message. Only the contact's latest keyword counts, so a STOP that
    arrives after a later START (Meta does not keep order) changes nothing."""
    said = _keyword(message.text)
    opt_out = {_keyword(word) for word in settings.WHATSAPP_OPT_OUT_KEYWORDS if word.strip()}
    opt_in = {_keyword(word) for word in settings.WHATSAPP_OPT_IN_KEYWORDS if word.strip()}
    if said not in opt_out | opt_in:
        return
    # Locked first, so a concurrent keyword of the same contact has committed before the check.
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    later = (
        Message.objects.filter(
            contact=contact, direction=Message.Direction.INBOUND, type="text", timestamp__gt=message.timestamp
        )
        .annotate(said=Lower(Trim("text")))
        .filter(said__in=[word.lower() for word in opt_out | opt_in])
    )
    if later.exists():
        return
    reason = f"keyword {message.text.strip()}"[:64]
    if said in opt_out:
        contact_opt_out(contact=contact, reason=reason, actor=None, source=AuditLog.Source.WEBHOOK)
    else:
        contact_opt_in(contact=contact, reason=reason, actor=None, source=AuditLog.Source.WEBHOOK)


def _user_preferences_apply(value: dict) -> None:
    """A user's "stop" of marketing messages in WhatsApp opts them out; "resume" opts them back in."""
    for preference in meta_dicts(value.get("user_preferences")):
        choice = meta_name(preference.get("value")).lower()
        wa_id = meta_wa_id(preference.get("wa_id"))
        if choice not in {"stop", "resume"} or not wa_id or len(wa_id) > 32:
            continue
        contact = contact_upsert_whatsapp(wa_id=wa_id, inbound_at=None)
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        reason = f"whatsapp {meta_str(preference.get('category')) or 'marketing'} {choice}"[:64]
        if choice == "stop":
            contact_opt_out(contact=contact, reason=reason, actor=None, source=AuditLog.Source.WEBHOOK)
        else:
            contact_opt_in(contact=contact, reason=reason, actor=None, source=AuditLog.Source.WEBHOOK)


# -- messages -------------------------------------------------------------------------------------


def _target_refresh(wamid: str, *, only_if_targeted: bool = False) -> None:
    """Sets a message's reaction (latest), text and edited_at (latest edit) and revoked_at (first
    revoke) from the rows about it. Only its own contact's rows count, and edits and revokes only
    from the same side of the conversation: a user cannot edit a business message."""
    if only_if_targeted and not Message.objects.filter(target_wamid=wamid, type__in=TARGET_KINDS).exists():
        return
    target = Message.objects.select_for_update().filter(wamid=wamid).first()
    if target is None:
        return
    rows = list(
        Message.objects.filter(target_wamid=wamid, type__in=TARGET_KINDS, contact_id=target.contact_id)
        .exclude(pk=target.pk)
        .order_by("timestamp", "id")
        .values_list("type", "direction", "text", "timestamp")
    )
    changes: dict[str, Any] = {}
    reactions = [row for row in rows if row[0] == "reaction"]
    if reactions and target.reaction != reactions[-1][2][:32]:
        changes["reaction"] = reactions[-1][2][:32]
    edits = [row for row in rows if row[0] == "edit" and row[1] == target.direction]
    if edits and (target.edited_at != edits[-1][3] or target.text != edits[-1][2]):
        changes["text"], changes["edited_at"] = edits[-1][2], edits[-1][3]
    revokes = [row for row in rows if row[0] == "revoke" and row[1] == target.direction]
    if revokes and target.revoked_at != revokes[0][3]:
        changes["revoked_at"] = revokes[0][3]
    if changes:
        for name, new in changes.items():
            setattr(target, name, new)
        target.save(update_fields=[*changes, "updated_at"])


# -- bodies of statuses only, many at once ---------------------------------------------------------


def _status_reports(event: InboundEvent) -> tuple[list[StatusReport], set[str]] | None:
    """The statuses of a body that holds nothing else, as the walk would read them, and the sender
    numbers it names; None for any other body, or a status the walk would keep as unknown."""
    payload = event.payload
    if not isinstance(payload, dict) or payload.get("object", OBJECT) != OBJECT:
        return None
    entries = payload.get("entry")
    if not isinstance(entries, list) or not entries:
        return None
    reports: list[StatusReport] = []
    numbers: set[str] = set()
    fallback_time = event.received_at or timezone.now()
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list) or not changes:
            return None
        entry_time = meta_time(entry.get("time"))
        for change in changes:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict) or change.get("field") != "messages" or "messages" in value:
                return None
            statuses = value.get("statuses")
            if not isinstance(statuses, list) or not statuses:
                return None
            if phone_number_id := meta_str(meta_dict(value.get("metadata")).get("phone_number_id"), 64):
                numbers.add(phone_number_id)
            for status in statuses:
                if not isinstance(status, dict) or meta_name(status.get("type")) == "call":
                    return None
                wamid, name = meta_name(status.get("id")), meta_name(status.get("status")).lower()
                if not wamid or len(wamid) > 255 or name not in STATUS_TIMES:
                    return None
                at = meta_time(status.get("timestamp")) or entry_time or fallback_time
                reports.append(StatusReport(wamid=wamid, status=name, at=at, payload=status))
    return reports, numbers


def inbound_statuses_apply(*, events: list[InboundEvent]) -> dict[int, ApplyResult]:
    """Applies the events that only carry statuses together, in a few statements, and returns their
    results by event id; the others, and those whose statuses `statuses_record` leaves to
    `status_record` (an inbound message's, a callback's), are left to `inbound_payload_apply`.

    Statuses and the messages other events create meet only under the wamid's lock, whichever comes
    first, so these events may be applied before the rest of their batch.
    """
    read = {event.pk: found for event in events if (found := _status_reports(event)) is not None}
    if not read:
        return {}
    wamids = {report.wamid for reports, _ in read.values() for report in reports}
    found = statuses_lookup(wamids=wamids)
    left = {
        report.wamid
        for reports, _ in read.values()
        for report in reports
        if (report.wamid in found and found[report.wamid]["direction"] != Message.Direction.OUTBOUND)
        or (report.wamid not in found and report.callback is not None)
    }
    while left:  # an event left to the walk takes all its wamids with it, so each keeps its order
        taken = [pk for pk, (reports, _) in read.items() if any(report.wamid in left for report in reports)]
        grown = {report.wamid for pk in taken for report in read.pop(pk)[0]}
        if grown <= left:
            break
        left |= grown
    numbers = {number for _, event_numbers in read.values() for number in event_numbers}
    known_numbers = set(
        PhoneNumber.objects.filter(phone_number_id__in=numbers).values_list("phone_number_id", flat=True)
    )
    statuses_record(reports=[report for reports, _ in read.values() for report in reports], found=found)
    return {
        pk: ApplyResult(fields=["messages"], unknown_phone_number=bool(event_numbers - known_numbers))
        for pk, (_, event_numbers) in read.items()
    }


# -- the interface --------------------------------------------------------------------------------


def inbound_payload_apply(*, event: InboundEvent) -> ApplyResult:
    """Writes what one stored webhook body says. Safe to run again on the same event."""
    return _Apply(event).run()
