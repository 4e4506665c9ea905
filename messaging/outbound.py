"""Outbound messages: one send service, and a worker that hands each message to Meta at most once.

The protocol, in the order things happen:

1. Queue. `message_send` checks Meta's rules and the 24-hour window, then writes the message as
   `queued` (a local placeholder `wamid`, `wharf-<uuid>`, until Meta names it; `payload` is the Graph
   request body) with its audit row in one transaction, and after commit raises the `outgoing`
   WakeUp flag, coalesced as inbound's (messaging/inbound.py), which enqueues one drain. A medium
   in S3 (under MEDIA_OUTGOING_PREFIX) is sent by a link presigned at each attempt, valid for
   MEDIA_LINK_EXPIRY_S, rather than uploaded to Meta: no second copy, no media id to expire.
2. Claim. `outgoing_drain` takes, per sender that is not paused, about ROUND_S worth of due
   queued messages with SELECT ... FOR UPDATE SKIP LOCKED, marks them `sending` with `claimed_by`
   (a token of this drain) and `claimed_at`, and commits; it claims again for a sender whose
   claimed messages run short. Concurrent drains take disjoint batches; a redelivered task finds
   the messages no longer queued. Only the claim's holder may send a message.
3. Pace. Slots are taken just before they are needed: a sender's next group (GROUP_S worth of its
   rate, at most GROUP_MAX) takes its slots from the shared limiter (messaging/ratelimit.py) when
   the drain's prepared sends for it end within GROUP_S. So drains sharing a sender hold slots at
   most about two groups ahead, and their sends interleave closely. A message whose slot is far
   off, or whose recipient's turn comes after its slot, goes back to the queue, due then (where it
   takes a new slot). In a drain's first round each sender's first message goes alone and the
   rest take their slots after its answer, so a sender Meta refuses or does not answer costs one
   attempt, not a group of them.
4. Attempt. One statement checks that the group's claims are still this drain's (refreshing
   `claimed_at`) and inserts a SendAttempt without outcome for each; it commits BEFORE any of the
   group's requests leaves. A dispatcher thread, which does nothing else, hands each request at
   its slot to one of SEND_CONCURRENCY request threads, so it does not wait behind a slow answer
   or the drain's own statements. Meta counts any one second, and slots leave only the headroom
   free (20 ms of each second at 2 %), so a request that leaves more than LATE_MAX_S after its
   slot (a stalled process, no request thread free) could meet, within one of Meta's seconds, a
   second's worth of sends that leave on time after it. Lateness is read in the request thread,
   as the request leaves. For a sender faster than one send per GROUP_S the drain then moves the
   sender's schedule on by the lateness beyond LATE_MAX_S (`rate_slots_delay`): the slots taken
   after it (all but the next two groups, and Meta's second ends a second later) begin that much
   later. A slower sender's next slot may already be taken by another drain: there the late
   request does not leave; its attempt is closed unsent and the message queued again.
   The drain records the answers as they come, the successes together (at most GROUP_MAX of them,
   or every GROUP_S) in one statement (attempts and messages, with the locks parsing takes on their
   wamids, messaging/parsing.py), each other answer at once in a statement of its own:
   sent (Meta's wamid; statuses that arrived first, kept pending by wamid, are applied), queued
   again with a due time (retryable errors, exponential backoff with jitter, failed after
   MAX_ATTEMPTS), failed (Meta's code, title and details), queued again with its sender paused
   (190, operators alerted), or in doubt (the request left but no answer came: a read timeout, a
   dropped connection), settled at once as sent when a status that came first carries its id
   (see step 5). An answer that pauses the sender, or silence (its first request in the drain
   unanswered, or SILENT_MAX in a row), stops its sends not yet handed over: their attempts are
   closed unsent and the messages queued again (after a backoff for silence). A worker that dies
   leaves the attempts of its prepared groups open, sent or not: step 5 makes them in doubt, which
   errs on the safe side.
5. Sweep. Beat runs `outgoing_sweep`: a message `sending` under a claim older than CLAIM_STALE_S()
   lost its worker. Without an open attempt no request left for it: it is queued again. With one,
   a request may have reached Meta: it becomes `in_doubt`, which nothing resends automatically. If
   it did reach Meta, Meta's statuses for it carry its id as `biz_opaque_callback_data`, which
   settles it as sent with their wamid (`outgoing_doubts_resolve`: when the status is parsed, when
   the worker records the silence, and at each sweep, whichever comes last); else an operator resends
   it (`message_resend`) or abandons it (`message_abandon`). The claim check in
   step 4 and the sweep's UPDATE lock the same row, so a worker that is only slow either keeps its
   claim (its refresh came first) or finds it gone and skips the message.

Why never twice: a request for a message leaves only from the drain whose claim is on the row,
after an attempt row says so; every path back to `queued` either proves no request left (the
claim was released before an attempt, or the attempt was closed by the drain whose request never
left: not handed over, or not sent by its request thread; or the request failed to connect, or
Meta answered an error) or is an
operator's decision, taken only while no status has shown that it was sent.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from queue import SimpleQueue
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.queues import QUEUES, task_publish
from contacts.models import AuditLog, Contact
from contacts.services import Actor, audit_log_record
from core.aws import s3_client
from messaging.graph import (
    GraphAuthError,
    GraphError,
    GraphRetryableError,
    graph_client,
)
from messaging.inbound import wake_flag_raise
from messaging.models import Message, PendingStatus, PhoneNumber, SendAttempt, Template, WakeUp

logger = logging.getLogger(__name__)

WAKE_NAME = "outgoing"
PLACEHOLDER_PREFIX = "wharf-"
WINDOW = timedelta(hours=24)
# A drain claims about ROUND_S worth of a sender's rate at a time, and looks for senders with
# messages due as often.
ROUND_S = 1.0
BATCH_MAX = 1000
MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 900.0
SLOT_WAIT_MAX_S = 5.0  # a slot further off than this sends the message back to the queue, due then
# Requests one drain may have in flight at once: at a sender's rate times Meta's answer time, sends
# leave at their slots; fewer, and a slow answer holds back the sends behind it.
SEND_CONCURRENCY = 32
# A group is GROUP_S worth of a sender's rate, at most GROUP_MAX sends: its slots are taken and
# its attempts started in one statement each, when the sender's prepared sends end within GROUP_S.
# So a drain holds slots at most about two groups ahead (another drain's slots follow close behind
# them), and a worker dying leaves few messages in doubt that never left.
GROUP_S = 0.1
GROUP_MAX = 50
# Meta counts any one second. Slots leave WHATSAPP_RATE_HEADROOM_PCT of it free (20 ms at 2 %),
# for sends that leave up to this late and for the way to Meta (threads, network): a send that
# would leave later moves its sender's schedule on, or is queued again (step 4).
LATE_MAX_S = 0.005
# A sender stops for the rest of a drain when its first request is left unanswered, or this many in
# a row after it was answered.
SILENT_MAX = 3
SWITCH_INTERVAL_S = 0.0005
DRAIN_BUDGET_S = QUEUES["outgoing"].visibility_timeout / 2
SQS_DELAY_MAX_S = 900
# Meta fetches a linked medium when it sends the message, which may be after our retries.
MEDIA_LINK_EXPIRY_S = 24 * 3600

WINDOW_CLOSED = "The 24-hour customer service window is closed: send a template."
_S = Message.Status
_O = SendAttempt.Outcome


def CLAIM_STALE_S() -> float:
    """A claim older than this lost its worker: longer than one request can take, with a margin."""
    return 2 * settings.WHATSAPP_HTTP_TIMEOUT_S + 30


# -- Meta's rules ---------------------------------------------------------------------------------

TEXT_MAX = 4096
CAPTION_MAX = 1024
KINDS = (
    "text",
    "template",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "interactive",
    "reaction",
    "location",
    "contacts",
)
TEMPLATE_KIND = "template"
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
MB = 1024 * 1024
# Per Meta's "Supported media types": the types each kind accepts and its largest size.
MEDIA_RULES: dict[str, tuple[frozenset[str], int]] = {
    "image": (frozenset({"image/jpeg", "image/png"}), 5 * MB),
    "video": (frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
    "audio": (frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}), 16 * MB),
    "document": (
        frozenset(
            {
                "text/plain",
                "application/pdf",
                "application/msword",
                "application/vnd.ms-excel",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            }
        ),
        100 * MB,
    ),
    # 100 KB static, 500 KB animated: S3 cannot tell which, so the larger limit is checked here.
    "sticker": (frozenset({"image/webp"}), 500 * 1024),
}
CAPTIONED = ("image", "video", "document")
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ValidationError({field: message})


def _text(value: Any, field: str, *, max_length: int, required: bool = True) -> str:
    if value is None or value == "":
        _require(not required, field, "This field is required.")
        return ""
    _require(isinstance(value, str), field, "Must be a string.")
    _require(bool(value.strip()) or not required, field, "Must not be blank.")
    _require(len(value) <= max_length, field, f"At most {max_length:,} characters (got {len(value):,}).")
    return value


def _object(value: Any, field: str) -> dict:
    _require(isinstance(value, dict), field, "Must be an object.")
    return value


@dataclass
class _Built:
    """The Graph body's `type`-keyed part and what the row shows of it."""

    body: Any
    text: str = ""
    media_key: str = ""
    media_mime_type: str = ""
    media_size: int | None = None
    media_filename: str = ""
    target_wamid: str = ""


def _text_build(content: dict) -> _Built:
    body = _text(content.get("body"), "text.body", max_length=TEXT_MAX)
    preview = content.get("preview_url", False)
    _require(isinstance(preview, bool), "text.preview_url", "Must be true or false.")
    return _Built({"body": body, "preview_url": preview}, text=body)


def _media_build(kind: str, content: dict) -> _Built:
    types, max_size = MEDIA_RULES[kind]
    key, link = content.get("s3_key"), content.get("link")
    _require(
        bool(key) != bool(link), f"{kind}.s3_key", "Give either s3_key (uploaded to S3) or link, not both."
    )
    body: dict[str, Any] = {}
    built = _Built(body)
    if kind in CAPTIONED and content.get("caption"):
        body["caption"] = built.text = _text(content["caption"], f"{kind}.caption", max_length=CAPTION_MAX)
    if kind == "document" and content.get("filename"):
        body["filename"] = built.media_filename = _text(
            content["filename"], f"{kind}.filename", max_length=240
        )
    if link:
        _require(isinstance(link, str), f"{kind}.link", "Must be a URL.")
        _require(urlsplit(link).scheme in ("http", "https"), f"{kind}.link", "Must be an http(s) URL.")
        body["link"] = link
        return built
    _require(isinstance(key, str), f"{kind}.s3_key", "Must be a string.")
    prefix = settings.MEDIA_OUTGOING_PREFIX
    _require(key.startswith(prefix) and ".." not in key, f"{kind}.s3_key", f"Must be a key under {prefix}.")
    client = s3_client()
    try:
        head = client.head_object(Bucket=settings.AWS_STORAGE_BUCKET_NAME, Key=key)
    except client.exceptions.ClientError:
        raise ValidationError({f"{kind}.s3_key": f"No object {key} in the bucket."}) from None
    mime_type = (head.get("ContentType") or "").split(";")[0].strip().lower()
    size = int(head.get("ContentLength") or 0)
    _require(
        mime_type in types,
        f"{kind}.s3_key",
        f"WhatsApp does not take {mime_type or 'untyped files'} as {kind}: "
        f"one of {', '.join(sorted(types))}.",
    )
    _require(
        size <= max_size,
        f"{kind}.s3_key",
        f"{size:,} bytes is more than WhatsApp's {max_size:,} for {kind}.",
    )
    built.media_key, built.media_mime_type, built.media_size = key, mime_type, size
    if kind == "document" and not built.media_filename:
        body["filename"] = built.media_filename = key.rsplit("/", 1)[-1]
    return built


def _interactive_build(content: dict) -> _Built:
    kind = content.get("type")
    _require(kind in ("button", "list", "cta_url"), "interactive.type", "One of button, list, cta_url.")
    body_text = _text(
        _object(content.get("body"), "interactive.body").get("text"), "interactive.body.text", max_length=1024
    )
    if "footer" in content:
        _text(
            _object(content["footer"], "interactive.footer").get("text"),
            "interactive.footer.text",
            max_length=60,
        )
    if "header" in content:
        header = _object(content["header"], "interactive.header")
        if header.get("type") == "text":
            _text(header.get("text"), "interactive.header.text", max_length=60)
    action = _object(content.get("action"), "interactive.action")
    if kind == "button":
        buttons = action.get("buttons")
        _require(isinstance(buttons, list) and buttons, "interactive.action.buttons", "Give 1 to 3 buttons.")
        _require(
            len(buttons) <= BUTTONS_MAX,
            "interactive.action.buttons",
            f"At most {BUTTONS_MAX} reply buttons (got {len(buttons)}).",
        )
        ids = set()
        for index, button in enumerate(buttons):
            field = f"interactive.action.buttons[{index}]"
            reply = _object(_object(button, field).get("reply"), f"{field}.reply")
            _text(reply.get("title"), f"{field}.reply.title", max_length=BUTTON_TITLE_MAX)
            button_id = _text(reply.get("id"), f"{field}.reply.id", max_length=256)
            _require(button_id not in ids, f"{field}.reply.id", "Button ids must differ.")
            ids.add(button_id)
            button.setdefault("type", "reply")
    elif kind == "list":
        _text(action.get("button"), "interactive.action.button", max_length=20)
        sections = action.get("sections")
        _require(
            isinstance(sections, list) and 0 < len(sections) <= LIST_SECTIONS_MAX,
            "interactive.action.sections",
            f"Give 1 to {LIST_SECTIONS_MAX} sections.",
        )
        rows = 0
        for s_index, section in enumerate(sections):
            field = f"interactive.action.sections[{s_index}]"
            section_rows = _object(section, field).get("rows")
            _require(
                isinstance(section_rows, list) and section_rows, f"{field}.rows", "Give at least one row."
            )
            if len(sections) > 1:
                _text(section.get("title"), f"{field}.title", max_length=24)
            for r_index, row in enumerate(section_rows):
                row_field = f"{field}.rows[{r_index}]"
                _object(row, row_field)
                _text(row.get("id"), f"{row_field}.id", max_length=200)
                _text(row.get("title"), f"{row_field}.title", max_length=ROW_TITLE_MAX)
                _text(
                    row.get("description"),
                    f"{row_field}.description",
                    max_length=ROW_DESCRIPTION_MAX,
                    required=False,
                )
            rows += len(section_rows)
        _require(
            rows <= LIST_ROWS_MAX,
            "interactive.action.sections",
            f"At most {LIST_ROWS_MAX} rows in all sections (got {rows}).",
        )
    else:
        parameters = _object(action.get("parameters"), "interactive.action.parameters")
        _text(parameters.get("display_text"), "interactive.action.parameters.display_text", max_length=20)
        url = parameters.get("url")
        _require(
            isinstance(url, str) and urlsplit(url).scheme in ("http", "https"),
            "interactive.action.parameters.url",
            "Must be an http(s) URL.",
        )
    return _Built(content, text=body_text)


def _reaction_build(content: dict) -> _Built:
    wamid = _text(content.get("message_id"), "reaction.message_id", max_length=255)
    emoji = content.get("emoji", "")
    _require(isinstance(emoji, str) and len(emoji) <= 16, "reaction.emoji", "One emoji, or empty to remove.")
    return _Built({"message_id": wamid, "emoji": emoji}, text=emoji, target_wamid=wamid)


def _location_build(content: dict) -> _Built:
    body: dict[str, Any] = {}
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = content.get(name)
        _require(
            isinstance(value, int | float) and not isinstance(value, bool) and -bound <= value <= bound,
            f"location.{name}",
            f"A number between -{bound} and {bound}.",
        )
        body[name] = value
    for name in ("name", "address"):
        if content.get(name):
            body[name] = _text(content[name], f"location.{name}", max_length=1000)
    text = ", ".join(part for part in (body.get("name"), body.get("address")) if part)
    return _Built(body, text=text or f"{body['latitude']}, {body['longitude']}")


def _contacts_build(content: Any) -> _Built:
    cards = content.get("contacts") if isinstance(content, dict) else content
    _require(isinstance(cards, list) and cards, "contacts", "Give a list of one or more contact cards.")
    names = []
    for index, card in enumerate(cards):
        name = _object(_object(card, f"contacts[{index}]").get("name"), f"contacts[{index}].name")
        names.append(
            _text(name.get("formatted_name"), f"contacts[{index}].name.formatted_name", max_length=500)
        )
    return _Built(cards, text=", ".join(names))


def _template_placeholders(text: Any) -> int:
    return len(set(_PLACEHOLDER.findall(text))) if isinstance(text, str) else 0


def _template_expected(components: list) -> dict[str, int]:
    """How many parameters each of the stored template's components wants: header, body, and
    buttons by index ("button.0"); a media header wants one."""
    expected: dict[str, int] = {}
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).lower()
        if kind == "header":
            media = str(component.get("format", "TEXT")).upper() in ("IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
            expected["header"] = 1 if media else _template_placeholders(component.get("text"))
        elif kind == "body":
            expected["body"] = _template_placeholders(component.get("text"))
        elif kind == "buttons":
            for index, button in enumerate(component.get("buttons") or []):
                if isinstance(button, dict) and (count := _template_placeholders(button.get("url"))):
                    expected[f"button.{index}"] = count
    return expected


def _template_find(*, waba_id: str, name: str, language: str) -> Template:
    try:
        from messaging.templates import template_get_approved
    except ImportError:
        template_get_approved = None
    if template_get_approved is not None:
        template = template_get_approved(waba_id=waba_id, name=name, language=language)
        if template is not None:
            return template
    found = Template.objects.filter(waba_id=waba_id, name=name, language=language).first()
    if found is None:
        raise ValidationError({"template.name": f"No template {name} ({language}) in WABA {waba_id}."})
    _require(
        template_get_approved is None and found.status == "APPROVED",
        "template.name",
        f"Template {name} ({language}) is {found.status or 'not approved'}, not APPROVED.",
    )
    return found


def _template_build(content: dict, *, phone_number: PhoneNumber) -> _Built:
    name = _text(content.get("name"), "template.name", max_length=512)
    language = content.get("language")
    code = language.get("code") if isinstance(language, dict) else language
    code = _text(code, "template.language", max_length=16)
    components = content.get("components", [])
    _require(isinstance(components, list), "template.components", "Must be a list.")
    template = _template_find(waba_id=phone_number.waba_id, name=name, language=code)
    expected = _template_expected(template.components)
    given: dict[str, int] = {}
    for index, component in enumerate(components):
        field = f"template.components[{index}]"
        _object(component, field)
        kind = str(component.get("type", "")).lower()
        _require(kind in ("header", "body", "button"), f"{field}.type", "One of header, body, button.")
        parameters = component.get("parameters", [])
        _require(isinstance(parameters, list), f"{field}.parameters", "Must be a list.")
        for p_index, parameter in enumerate(parameters):
            _require(
                isinstance(parameter, dict) and "type" in parameter,
                f"{field}.parameters[{p_index}]",
                'Each parameter is an object with a "type".',
            )
        key = f"button.{component.get('index', 0)}" if kind == "button" else kind
        given[key] = given.get(key, 0) + len(parameters)
    for key in sorted(set(expected) | set(given)):
        want, got = expected.get(key, 0), given.get(key, 0)
        _require(
            want == got,
            "template.components",
            f"Template {name} ({code}) wants {want} parameter{'s' if want != 1 else ''} "
            f"in its {key}, got {got}.",
        )
    body = {"name": name, "language": {"code": code}}
    if components:
        body["components"] = components
    body_text = next(
        (
            c.get("text", "")
            for c in template.components
            if isinstance(c, dict) and str(c.get("type")).upper() == "BODY"
        ),
        "",
    )
    return _Built(body, text=body_text or name)


def _content_build(kind: str, content: Any, *, phone_number: PhoneNumber) -> _Built:
    if kind == "contacts":
        return _contacts_build(content)
    _object(content, kind)
    if kind == "text":
        return _text_build(content)
    if kind == TEMPLATE_KIND:
        return _template_build(content, phone_number=phone_number)
    if kind in MEDIA_KINDS:
        return _media_build(kind, content)
    if kind == "interactive":
        return _interactive_build(content)
    if kind == "reaction":
        return _reaction_build(content)
    return _location_build(content)


# -- the send service -----------------------------------------------------------------------------


def phone_number_default(*, contact: Contact) -> PhoneNumber | None:
    """The number the contact last wrote to, else the first sender number that is not paused."""
    last = (
        Message.objects.filter(
            contact=contact, direction=Message.Direction.INBOUND, phone_number__isnull=False
        )
        .order_by("-timestamp", "-id")
        .select_related("phone_number")
        .first()
    )
    if last is not None and last.phone_number.paused_at is None:
        return last.phone_number
    return PhoneNumber.objects.filter(paused_at__isnull=True).order_by("id").first()


def _recipient(contact: Contact) -> str:
    to = contact.wa_id or (contact.phone or "").lstrip("+")
    _require(bool(to), "contact", "The contact has no WhatsApp number.")
    return to


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
    _require(len(idempotency_key) <= 255, "idempotency_key", "At most 255 characters.")
    if (existing := _existing(user, idempotency_key)) is not None:
        return existing, False
    _require(kind in KINDS, "type", f"One of {', '.join(KINDS)}.")
    _require(not contact.is_opted_out, "contact", "The contact has opted out of WhatsApp messages.")
    if phone_number is None:
        phone_number = phone_number_default(contact=contact)
        _require(phone_number is not None, "phone_number_id", "No sender number is set up.")
    _require(
        phone_number.paused_at is None,
        "phone_number_id",
        f"Sender {phone_number} is paused ({phone_number.paused_reason or 'by an operator'}): "
        "resume it first.",
    )
    if kind != TEMPLATE_KIND:
        last = contact.last_inbound_at
        _require(last is not None and last >= timezone.now() - WINDOW, "type", WINDOW_CLOSED)
    if reply_to_wamid:
        _text(reply_to_wamid, "reply_to", max_length=255)
    built = _content_build(kind, content, phone_number=phone_number)
    to = _recipient(contact)
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if reply_to_wamid:
        payload["context"] = {"message_id": reply_to_wamid}
    payload.update({"type": kind, kind: built.body})
    now = timezone.now()
    message = Message(
        wamid=f"{PLACEHOLDER_PREFIX}{uuid.uuid4()}",
        direction=Message.Direction.OUTBOUND,
        type=kind,
        status=_S.QUEUED,
        contact=contact,
        phone_number=phone_number,
        text=built.text,
        payload=payload,
        timestamp=now,
        context_wamid=reply_to_wamid,
        target_wamid=built.target_wamid,
        media_key=built.media_key,
        media_mime_type=built.media_mime_type,
        media_size=built.media_size,
        media_filename=built.media_filename,
        media_state=Message.MediaState.STORED if built.media_key else Message.MediaState.NONE,
        created_by=user,
        idempotency_key=idempotency_key,
    )
    try:
        with transaction.atomic():
            message.save()
            message.payload["biz_opaque_callback_data"] = str(message.pk)
            Message.objects.filter(pk=message.pk).update(payload=message.payload)
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
    _require(
        message.direction == Message.Direction.INBOUND, "message", "Only inbound messages can be marked read."
    )
    _require(message.phone_number is not None, "message", "The message has no sender number to answer from.")
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
        _require(bool(moved), "status", "Only a message in doubt can be resent or abandoned.")
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


def phone_number_pause(*, phone_number: PhoneNumber, reason: str) -> bool:
    """Stop sending from a number (Meta refused its token); True if this call paused it."""
    return bool(
        PhoneNumber.objects.filter(pk=phone_number.pk, paused_at__isnull=True).update(
            paused_at=timezone.now(), paused_reason=reason[:255], updated_at=timezone.now()
        )
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


# -- wake -----------------------------------------------------------------------------------------


def outgoing_wake() -> None:
    """Enqueue a drain unless one is queued already (the flag is shared with the drain, as inbound's)."""
    if wake_flag_raise(WAKE_NAME):
        transaction.on_commit(_wake_enqueue)


def _wake_enqueue() -> None:
    if not _drain_enqueue(reason="wake"):
        try:
            WakeUp.objects.filter(name=WAKE_NAME).update(pending=False, updated_at=timezone.now())
        except Exception as error:
            logger.warning("could not reset the outgoing wake-up flag: %s", type(error).__name__)


def _drain_enqueue(*, reason: str, countdown: float | None = None) -> bool:
    from messaging.tasks import outbound_send_task  # messaging.tasks imports this module

    return task_publish(
        outbound_send_task, countdown=countdown, what=f"an outgoing drain ({reason})", fallback="the sweeper"
    )


# -- the outgoing worker --------------------------------------------------------------------------


@dataclass
class DrainResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    in_doubt: int = 0
    deferred: int = 0  # their slot was far off, or their recipient's turn later: queued again, due then
    released: int = 0  # their sender was paused mid-batch: queued again
    late: int = 0  # would leave more than LATE_MAX_S after their slots (a slow sender's: queued again)
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worker_token() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _due(now: datetime) -> Q:
    return Q(status=_S.QUEUED) & (Q(due_at__isnull=True) | Q(due_at__lte=now))


def outgoing_claim(*, phone_number: PhoneNumber, batch_size: int, worker: str) -> list[Message]:
    """Claim up to `batch_size` due queued messages of one sender, oldest first, skipping rows
    other drains hold; committed on return, so the claim is visible to the sweeper."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(_due(now), phone_number=phone_number)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if ids:
            Message.objects.filter(id__in=ids).update(
                status=_S.SENDING, claimed_at=now, claimed_by=worker, updated_at=now
            )
    return list(
        Message.objects.filter(id__in=ids, claimed_by=worker)
        .only("id", "wamid", "payload", "attempts", "type", "media_key", "media_mime_type", "phone_number_id")
        .order_by("id")
    )


def _backoff_s(attempts: int) -> float:
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _release(message: Message, *, worker: str, due_at: datetime | None = None) -> bool:
    """Give a claimed message back to the queue: safe only while no attempt was started for it."""
    return bool(
        Message.objects.filter(pk=message.pk, status=_S.SENDING, claimed_by=worker).update(
            status=_S.QUEUED, due_at=due_at, claimed_at=None, claimed_by="", updated_at=timezone.now()
        )
    )


_MESSAGE = Message._meta.db_table
_ATTEMPT = SendAttempt._meta.db_table

# One statement, so one round trip that commits by itself: the claim is checked and refreshed
# and the attempt inserted together, or nothing happens (the claim is gone).
_ATTEMPT_START_SQL = f"""
    WITH owned AS (
        UPDATE {_MESSAGE} SET claimed_at = %(now)s
        WHERE id = %(id)s AND status = 'sending' AND claimed_by = %(worker)s
        RETURNING id
    )
    INSERT INTO {_ATTEMPT} (message_id, started_at, worker, error_title, error_details, outcome)
    SELECT id, %(now)s, %(worker)s, '', '', '' FROM owned
    RETURNING id
"""


def _attempt_start(message: Message, *, worker: str) -> int | None:
    """The attempt row's id, committed before the request; None when the claim is no longer ours."""
    with connection.cursor() as cursor:
        cursor.execute(_ATTEMPT_START_SQL, {"now": timezone.now(), "id": message.pk, "worker": worker})
        row = cursor.fetchone()
    return row[0] if row else None


def _request_body(message: Message) -> dict:
    """The stored payload; a medium stored in S3 gets a fresh presigned link for this attempt."""
    body = message.payload
    if message.type in MEDIA_KINDS and message.media_key:
        media = dict(body.get(message.type) or {})
        media["link"] = s3_client().generate_presigned_url(
            "get_object",
            Params={"Bucket": settings.AWS_STORAGE_BUCKET_NAME, "Key": message.media_key},
            ExpiresIn=MEDIA_LINK_EXPIRY_S,
        )
        body = {**body, message.type: media}
    return body


def _request_left(error: GraphRetryableError) -> bool:
    """Whether a request that got no answer may have reached Meta: not if it never connected."""
    cause = error.__cause__
    if error.status is not None or not isinstance(cause, httpx.HTTPError):
        return False  # Meta answered (5xx, 429, a throttling code)
    return not isinstance(
        cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol
    )


# The attempt's answer and the message's new state in one statement. A message given Meta's wamid
# also takes the lock parsing takes on that wamid (messaging/parsing.py), within the caller's
# transaction, so that a status stored meanwhile as pending is seen by the statement after it.
_OUTCOME_SQL = f"""
    WITH attempt AS (
        UPDATE {_ATTEMPT} SET finished_at = %(now)s, http_status = %(http_status)s,
            error_code = %(error_code)s, error_title = %(error_title)s,
            error_details = %(error_details)s, latency_ms = %(latency_ms)s, outcome = %(outcome)s
        WHERE id = %(attempt)s
    ), locked AS (
        SELECT pg_advisory_xact_lock(%(lock)s, hashtext(%(wamid)s)) WHERE %(wamid)s <> ''
    )
    UPDATE {_MESSAGE} SET {{assignments}}, updated_at = %(now)s
    WHERE id = %(id)s AND status IN ('sending', 'in_doubt') AND claimed_by = %(worker)s
        AND (%(wamid)s = '' OR EXISTS (SELECT 1 FROM locked))
    RETURNING id
"""


def _outcome_record(
    message: Message,
    attempt: int,
    *,
    worker: str,
    outcome: str,
    latency_ms: int,
    http_status: int | None,
    error: GraphError | None,
    changes: dict[str, Any],
) -> bool:
    """The attempt's answer and the message's new state, together. The message may have been made
    in doubt meanwhile by the sweeper (this worker was slow): the answer settles that doubt."""
    from messaging.parsing import _WAMID_LOCK, message_pending_statuses_apply

    wamid = changes.get("wamid", "")
    columns = sorted(changes)
    sql = _OUTCOME_SQL.replace("{assignments}", ", ".join(f"{column} = %(c_{column})s" for column in columns))
    params = {
        "now": timezone.now(),
        "http_status": http_status,
        "error_code": error.code if error else None,
        "error_title": (error.title if error else "")[:255],
        "error_details": error.details if error else "",
        "latency_ms": latency_ms,
        "outcome": outcome,
        "attempt": attempt,
        "lock": _WAMID_LOCK,
        "wamid": wamid,
        "id": message.pk,
        "worker": worker,
        **{f"c_{column}": changes[column] for column in columns},
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        moved = cursor.fetchone() is not None
        if moved and wamid:
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {PendingStatus._meta.db_table} WHERE wamid = %s)", [wamid]
            )
            if cursor.fetchone()[0]:
                message.wamid, message.direction = wamid, Message.Direction.OUTBOUND
                message_pending_statuses_apply(message=message)
    return moved


_NO_ERROR = {"error_code": None, "error_title": "", "error_details": ""}  # a retry's error, settled


def _error_fields(error: GraphError) -> dict[str, Any]:
    return {
        "error_code": error.code,
        "error_title": error.title[:255],
        "error_details": error.details or error.reason,
    }


@dataclass
class _Reply:
    """Meta's answer to one request (or the error it became), as a request thread saw it."""

    answer: dict | None
    error: GraphError | None
    latency_ms: int
    at: datetime


def _request(phone_number_id: str, body: dict) -> _Reply:
    """One Graph API request; runs in a request thread, so it touches no database."""
    started = time.monotonic()
    answer, error = None, None
    try:
        answer = graph_client().request("POST", f"{phone_number_id}/messages", json=body)
    except GraphError as caught:
        error = caught
    return _Reply(answer, error, int((time.monotonic() - started) * 1000), timezone.now())


def _wamid_of(answer: dict) -> str:
    wamids = [item.get("id") for item in answer.get("messages", []) if isinstance(item, dict)]
    return wamids[0] if wamids and isinstance(wamids[0], str) else ""


def outgoing_message_send(
    message: Message, *, phone_number: PhoneNumber, worker: str, slot: datetime | None = None
) -> str:
    """Send one claimed message, at its `slot` from the limiter, and wait for the answer; returns
    the attempt's outcome ("" when the claim was lost, "auth" when Meta refused the sender's token:
    the sender is paused and the message queued again). Drains send many at once (`_Stream`)."""
    attempt = _attempt_start(message, worker=worker)
    if attempt is None:
        return ""
    body = _request_body(message)
    if slot is not None:
        from messaging.ratelimit import rate_slot_wait

        rate_slot_wait(slot)
    reply = _request(phone_number.phone_number_id, body)
    return _outcome_apply(message, attempt, phone_number=phone_number, worker=worker, reply=reply)


def _outcome_apply(
    message: Message, attempt: int, *, phone_number: PhoneNumber, worker: str, reply: _Reply
) -> str:
    """Record one answer (see `outgoing_message_send`); a group of successes has `_sents_record`."""
    error, now = reply.error, reply.at
    released = {"claimed_at": None, "claimed_by": ""}
    record = dict(message=message, attempt=attempt, worker=worker, latency_ms=reply.latency_ms, error=error)
    if error is None:
        changes = {"status": _S.SENT, "sent_at": now, "due_at": None, **released, **_NO_ERROR}
        if wamid := _wamid_of(reply.answer):
            changes["wamid"] = wamid
        try:
            _outcome_record(**record, outcome=_O.SENT, http_status=200, changes=changes)
        except IntegrityError:  # Meta named a wamid Wharf already holds: keep the placeholder
            logger.error("Meta answered message %s with a wamid already stored: %s", message.pk, wamid)
            changes.pop("wamid")
            _outcome_record(**record, outcome=_O.SENT, http_status=200, changes=changes)
        return _O.SENT
    if isinstance(error, GraphAuthError):
        reason = f"Meta refused the access token: {error.reason}"
        _outcome_record(
            **record, outcome=_O.RETRY, http_status=error.status, changes={"status": _S.QUEUED, **released}
        )
        if phone_number_pause(phone_number=phone_number, reason=reason):
            from messaging.alerts import operator_alert_raise

            operator_alert_raise(
                key=f"sender-paused:{phone_number.phone_number_id}",
                text=f"Sending from {phone_number} is paused. {reason}. "
                "Fix the token, then resume the number.",
            )
        return "auth"
    if isinstance(error, GraphRetryableError) and _request_left(error):
        _outcome_record(
            **record,
            outcome=_O.IN_DOUBT,
            http_status=None,
            changes={"status": _S.IN_DOUBT, "attempts": message.attempts + 1, **_error_fields(error)},
        )
        if outgoing_doubts_resolve(message_ids=[message.pk]):  # a status of it came before the silence
            return _O.SENT
        return _O.IN_DOUBT
    attempts = message.attempts + 1
    if isinstance(error, GraphRetryableError) and attempts < MAX_ATTEMPTS:
        due_at = now + timedelta(seconds=_backoff_s(attempts))
        changes = {
            "status": _S.QUEUED,
            "attempts": attempts,
            "due_at": due_at,
            **released,
            **_error_fields(error),
        }
        _outcome_record(**record, outcome=_O.RETRY, http_status=error.status, changes=changes)
        return _O.RETRY
    changes = {
        "status": _S.FAILED,
        "attempts": attempts,
        "failed_at": now,
        "due_at": None,
        **_error_fields(error),
    }
    _outcome_record(**record, outcome=_O.FAILED, http_status=error.status, changes=changes)
    return _O.FAILED


# -- many sends at once ---------------------------------------------------------------------------

# Attempts for a group of claimed messages: one statement, committed before any of their requests.
_ATTEMPTS_START_SQL = f"""
    WITH owned AS (
        UPDATE {_MESSAGE} SET claimed_at = %(now)s
        WHERE id = ANY(%(ids)s) AND status = 'sending' AND claimed_by = %(worker)s
        RETURNING id
    )
    INSERT INTO {_ATTEMPT} (message_id, started_at, worker, error_title, error_details, outcome)
    SELECT id, %(now)s, %(worker)s, '', '', '' FROM owned
    RETURNING message_id, id
"""

# An attempt whose request never left: closed, its message queued again.
_ATTEMPT_CANCEL_SQL = f"""
    WITH attempt AS (
        UPDATE {_ATTEMPT} SET finished_at = %(now)s, outcome = 'retry', error_title = %(reason)s
        WHERE id = %(attempt)s
    )
    UPDATE {_MESSAGE} SET status = 'queued', due_at = %(due_at)s, claimed_at = NULL, claimed_by = '',
        updated_at = %(now)s
    WHERE id = %(id)s AND status = 'sending' AND claimed_by = %(worker)s
"""

# Meta's answers to a group of successful sends and their messages' new state, in one statement
# that takes the wamids' locks (in one order) as `_OUTCOME_SQL` takes one.
_SENTS_SQL = f"""
    WITH input AS (
        SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::bigint[], %(wamids)s::text[],
            %(latencies)s::int[], %(times)s::timestamptz[]) AS t(id, attempt, wamid, latency_ms, at)
    ), attempt AS (
        UPDATE {_ATTEMPT} AS a SET finished_at = i.at, http_status = 200, latency_ms = i.latency_ms,
            outcome = 'sent'
        FROM input AS i WHERE a.id = i.attempt
    ), locked AS (
        SELECT count(pg_advisory_xact_lock(%(lock)s, hashtext(w))) AS n
        FROM (SELECT wamid AS w FROM input WHERE wamid <> '' ORDER BY hashtext(wamid)) AS l
    )
    UPDATE {_MESSAGE} AS m SET status = 'sent', sent_at = i.at, due_at = NULL, claimed_at = NULL,
        claimed_by = '', error_code = NULL, error_title = '', error_details = '',
        wamid = CASE WHEN i.wamid <> '' THEN i.wamid ELSE m.wamid END, updated_at = %(now)s
    FROM input AS i, locked
    WHERE m.id = i.id AND m.status IN ('sending', 'in_doubt') AND m.claimed_by = %(worker)s
        AND locked.n >= 0
"""


@dataclass(eq=False)
class _Send:
    slot: datetime
    phone_number: PhoneNumber
    message: Message
    state: str = "claimed"  # then "started" (attempt row), "flying" (request handed over), "done"
    attempt: int | None = None
    body: dict | None = None
    future: Future | None = None
    reply: _Reply | None = None
    gaps_s: float = 0.0  # the sender's `gaps_s` when the slot was taken
    unsent: str = ""  # why the request thread did not send it


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _send_pool() -> ThreadPoolExecutor:
    """This process's request threads, made after the worker's fork (a pool does not survive one)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(SEND_CONCURRENCY, thread_name_prefix="graph-send"))
        # The thread that hands requests over at their slots waits at most this for the GIL while
        # request threads parse answers (Python's default is 5 ms, a quarter of the headroom).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    return _pool[1]


def _attempts_start(sends: list[_Send], *, worker: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            _ATTEMPTS_START_SQL,
            {"now": timezone.now(), "ids": [send.message.pk for send in sends], "worker": worker},
        )
        started = dict(cursor.fetchall())
    for send in sends:
        if (attempt := started.get(send.message.pk)) is not None:
            send.attempt, send.state = attempt, "started"
            send.body = _request_body(send.message)
        else:
            send.state = "done"  # the claim is gone: someone else has the message


def _attempt_cancel(send: _Send, *, worker: str, due_at: datetime | None, reason: str) -> bool:
    send.state = "done"
    with connection.cursor() as cursor:
        cursor.execute(
            _ATTEMPT_CANCEL_SQL,
            {
                "now": timezone.now(),
                "attempt": send.attempt,
                "reason": f"Not sent: {reason}"[:255],
                "due_at": due_at,
                "id": send.message.pk,
                "worker": worker,
            },
        )
        return cursor.rowcount > 0


def _sents_record(sends: list[_Send], *, worker: str) -> None:
    """Record a group of successes together; one by one when the group cannot be (a wamid Wharf
    already holds, a deadlock with a status's lock on a wamid)."""
    from messaging.parsing import _WAMID_LOCK, message_pending_statuses_apply

    wamids = [_wamid_of(send.reply.answer) for send in sends]
    params = {
        "ids": [send.message.pk for send in sends],
        "attempts": [send.attempt for send in sends],
        "wamids": wamids,
        "latencies": [send.reply.latency_ms for send in sends],
        "times": [send.reply.at for send in sends],
        "lock": _WAMID_LOCK,
        "now": timezone.now(),
        "worker": worker,
    }
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_SENTS_SQL, params)
            cursor.execute(
                f"SELECT DISTINCT wamid FROM {PendingStatus._meta.db_table} WHERE wamid = ANY(%s)",
                [[wamid for wamid in wamids if wamid]],
            )
            pending = {row[0] for row in cursor.fetchall()}
            for send, wamid in zip(sends, wamids, strict=True):
                if wamid in pending:
                    send.message.wamid, send.message.direction = wamid, Message.Direction.OUTBOUND
                    message_pending_statuses_apply(message=send.message)
    except (IntegrityError, OperationalError) as error:
        logger.warning("recording %d answers one by one: %s", len(sends), type(error).__name__)
        for send in sends:
            _outcome_apply(
                send.message, send.attempt, phone_number=send.phone_number, worker=worker, reply=send.reply
            )


class _Dispatcher(threading.Thread):
    """Hands each prepared send to a request thread at its slot, and does nothing else: no database,
    no recording, so that nothing a drain must also do makes a request leave late."""

    def __init__(self, stream: _Stream):
        super().__init__(name="graph-dispatch", daemon=True)
        self.stream = stream
        self.heap: list[tuple[datetime, int, _Send]] = []
        self.order = itertools.count()
        self.cond = threading.Condition()
        self.closed = False

    def push(self, sends: list[_Send]) -> None:
        with self.cond:
            for send in sends:
                heapq.heappush(self.heap, (send.slot, next(self.order), send))
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        from messaging.ratelimit import rate_clock_now

        while True:
            with self.cond:
                if self.closed:
                    return
                if not self.heap:
                    self.cond.wait()
                    continue
                delay = (self.heap[0][0] - rate_clock_now()).total_seconds()
                if delay > 0:
                    self.cond.wait(delay)  # or until an earlier send is pushed
                    continue
                send = heapq.heappop(self.heap)[2]
            self.stream.hand_over(send)


@dataclass(eq=False)
class _Sender:
    """One sender's part of a drain: messages claimed and not yet prepared, and what is under way."""

    phone_number: PhoneNumber
    queue: deque[Message] = field(default_factory=deque)
    horizon: datetime | None = None  # the last slot handed to the dispatcher
    pending: int = 0  # sends handed to the dispatcher and not yet answered or given back
    probe: str = ""  # "due": its first send goes alone; "out": it has, no more until its answer
    more: bool = True  # its last claim came back full: the queue may hold more
    gaps_s: float = 0.0  # how far this drain moved its schedule on for sends that left late


class _Stream:
    """A drain's sends: claimed per sender about ROUND_S worth at a time, prepared a group at a time
    just before their slots (slots taken, attempts started), handed over by the dispatcher, and the
    answers recorded in groups as they come. A sender Meta refused or left unanswered stops its
    remaining sends."""

    def __init__(self, *, worker: str, result: DrainResult, batch_size: int):
        self.worker, self.result, self.batch_size = worker, result, batch_size
        self.senders: dict[int, _Sender] = {}
        self.stops: dict[int, tuple[datetime | None, str]] = {}  # sender → (due time, why) for the rest
        self.events: SimpleQueue[tuple[_Send, tuple[datetime | None, str] | None]] = SimpleQueue()
        self.lates: SimpleQueue[tuple[_Send, float]] = SimpleQueue()  # sent, this late after the slot
        self.answered: set[int] = set()  # senders Meta answered in this drain
        self.silent: dict[int, int] = {}  # sender → requests left unanswered since its last answer
        self.wake = threading.Event()
        self.open: set[_Send] = set()  # attempts started, not yet answered or closed
        self.replies: list[_Send] = []
        self.replies_since = 0.0
        self.looked_at = -math.inf  # when `_senders_due` last ran
        self.dispatcher = _Dispatcher(self)
        graph_client()  # made now (about 0.1 s the first time), not by a request after its slot

    # -- the request side (dispatcher and request threads: no database) --

    def hand_over(self, send: _Send) -> None:
        if (stop := self.stops.get(send.phone_number.pk)) is not None:
            self._event(send, stop)
            return
        send.state = "flying"
        send.future = _send_pool().submit(self._request_in_time, send)
        send.future.add_done_callback(lambda _future, send=send: self._answered(send))

    def _request_in_time(self, send: _Send) -> _Reply | None:
        """The request, in a request thread; None when it would leave too late to leave at all.
        Lateness is read here, as the request leaves, not at the hand-over: a request waits for a
        free request thread too."""
        from messaging.ratelimit import rate_clock_now

        late_s = (rate_clock_now() - send.slot).total_seconds()
        if late_s > LATE_MAX_S:
            if _group_size(send.phone_number) == 1:  # the next slot may be another drain's already
                send.unsent = f"it would have left {late_s * 1000:.0f} ms after its slot"
                return None
            self.lates.put((send, late_s))  # the drain moves the sender's schedule on
            self.wake.set()
        return _request(send.phone_number.phone_number_id, send.body)

    def _answered(self, send: _Send) -> None:
        if send.future.exception() is None:
            if (reply := send.future.result()) is None:
                self._event(send, (None, send.unsent))
                return
            error, number = reply.error, send.phone_number.pk
            if error is None:
                self.answered.add(number)
                self.silent[number] = 0
            elif isinstance(error, GraphAuthError):
                self.stops[number] = (None, "Meta refused the sender's token")
            elif isinstance(error, GraphRetryableError) and _request_left(error):
                # More requests into silence would only make more messages in doubt; one dropped
                # connection among answered requests is not silence.
                self.silent[number] = self.silent.get(number, 0) + 1
                silence = number not in self.answered or self.silent[number] >= SILENT_MAX
                if silence and number not in self.stops:
                    due_at = timezone.now() + timedelta(seconds=_backoff_s(1))
                    self.stops[number] = (due_at, "Meta left a request unanswered")
        self._event(send, None)

    def _event(self, send: _Send, unsent: tuple[datetime | None, str] | None) -> None:
        self.events.put((send, unsent))
        self.wake.set()

    # -- the drain's side (its thread and database connection) --

    def run(self, *, deadline: float, first: bool) -> None:
        self.dispatcher.start()
        try:
            self.refill(look=True, probe=first)
            out_of_time = False
            while True:
                self.settle()
                self.delay()
                if not out_of_time and time.monotonic() >= deadline:
                    out_of_time = True
                    self.queues_release(due_at=None, counter="released")
                    _drain_enqueue(reason="drain out of time")
                if not out_of_time:
                    self.refill()
                    self.prepare()
                if not self.open and not any(sender.queue for sender in self.senders.values()):
                    if out_of_time or not self.refill(look=True):
                        break
                    continue
                self.wake.wait(0.01)
            self.record()
        finally:
            self.dispatcher.close()
            self.abort()

    def refill(self, *, look: bool = False, probe: bool = False) -> bool:
        """Claim about ROUND_S worth for each sender whose queue runs short of a group and that may
        have more; `look` (at least every ROUND_S) asks the database which senders have messages due."""
        now = time.monotonic()
        if look or now - self.looked_at >= ROUND_S:
            self.looked_at = now
            for phone_number in _senders_due(timezone.now()):
                if phone_number.pk not in self.senders:
                    self.senders[phone_number.pk] = _Sender(phone_number, probe="due" if probe else "")
                self.senders[phone_number.pk].more = True
        claimed = False
        for number, sender in self.senders.items():
            phone_number = sender.phone_number
            if not sender.more or number in self.stops or len(sender.queue) >= _group_size(phone_number):
                continue
            size = min(self.batch_size, max(1, math.ceil(phone_number.rate_limit_per_s * ROUND_S)))
            messages = outgoing_claim(phone_number=phone_number, batch_size=size, worker=self.worker)
            sender.more = len(messages) == size
            if messages:
                claimed = True
                self.result.batches += 1
                sender.queue.extend(messages)
                if sender.more:
                    outgoing_wake()  # more than this drain takes at once: idle workers may join
        return claimed

    def prepare(self) -> None:
        """For each sender whose prepared sends end within GROUP_S, the next group: its slots taken,
        the messages whose slot is far off or whose recipient's turn comes later queued again, due
        then, and attempts started for the others (committed before the dispatcher has them)."""
        from messaging.ratelimit import rate_clock_now, rate_slots_take

        now = rate_clock_now()
        for number, sender in self.senders.items():
            if not sender.queue:
                continue
            if (stop := self.stops.get(number)) is not None:
                self.queue_release(sender, due_at=stop[0], counter="released")
                continue
            if sender.probe == "out":
                if sender.pending:
                    continue
                sender.probe = ""
            if sender.pending and sender.horizon and (sender.horizon - now).total_seconds() > GROUP_S:
                continue
            size = 1 if sender.probe == "due" else _group_size(sender.phone_number)
            sender.probe = "out" if sender.probe == "due" else ""
            messages = [sender.queue.popleft() for _ in range(min(size, len(sender.queue)))]
            recipients = [str(message.payload.get("to", "")) for message in messages]
            slots = rate_slots_take(phone_number=sender.phone_number, recipients=recipients)
            group = []
            for index, (slot, message) in enumerate(zip(slots, messages, strict=True)):
                if index in slots.held:  # its recipient's turn is later: a new slot then
                    self.result.deferred += _release(message, worker=self.worker, due_at=slots.held[index])
                elif (slot - now).total_seconds() > SLOT_WAIT_MAX_S:
                    self.result.deferred += _release(message, worker=self.worker, due_at=slot)
                else:
                    group.append(_Send(slot, sender.phone_number, message, gaps_s=sender.gaps_s))
            if not group:
                continue
            _attempts_start(group, worker=self.worker)
            started = [send for send in group if send.state == "started"]
            if started:
                self.open.update(started)
                sender.pending += len(started)
                sender.horizon = max(send.slot for send in started)
                self.dispatcher.push(started)

    def settle(self) -> None:
        """Take in what came back: answers, recorded in groups (at once for an error), and sends that
        did not leave (their sender stopped, or too late), their attempts closed unsent and their
        messages queued again."""
        self.wake.clear()
        while not self.events.empty():
            send, unsent = self.events.get()
            self.open.discard(send)
            self.senders[send.phone_number.pk].pending -= 1
            if unsent is not None:
                counter = "released" if send.phone_number.pk in self.stops else "late"
                due_at, reason = unsent
                if _attempt_cancel(send, worker=self.worker, due_at=due_at, reason=reason):
                    setattr(self.result, counter, getattr(self.result, counter) + 1)
                continue
            send.reply = send.future.result()
            if not self.replies:
                self.replies_since = time.monotonic()
            self.replies.append(send)
            if send.reply.error is not None:
                self.replies_since = -math.inf
        waited_s = time.monotonic() - self.replies_since
        if len(self.replies) >= GROUP_MAX or waited_s >= GROUP_S or not self.open:
            self.record()

    def delay(self) -> None:
        """Move on the schedule of each sender whose sends left more than LATE_MAX_S after their
        slots, by as much more (less what this drain moved it on since their slots were taken), so
        that no second of Meta's holds more than the slots allow (see the module's header)."""
        from messaging.ratelimit import rate_slots_delay

        gaps: dict[int, float] = {}
        while not self.lates.empty():
            send, late_s = self.lates.get()
            self.result.late += 1
            sender = self.senders[send.phone_number.pk]
            gap = late_s - LATE_MAX_S - (sender.gaps_s - send.gaps_s)
            if gap > 0:
                sender.gaps_s += gap
                gaps[send.phone_number.pk] = gaps.get(send.phone_number.pk, 0.0) + gap
        for number, gap in gaps.items():
            rate_slots_delay(phone_number=self.senders[number].phone_number, gap=timedelta(seconds=gap))

    def record(self) -> None:
        replies, self.replies = self.replies, []
        sents = [send for send in replies if send.reply.error is None]
        if sents:
            _sents_record(sents, worker=self.worker)
            self.result.sent += len(sents)
        for send in replies:
            send.state = "done"
            if send.reply.error is None:
                continue
            outcome = _outcome_apply(
                send.message,
                send.attempt,
                phone_number=send.phone_number,
                worker=self.worker,
                reply=send.reply,
            )
            counter = "released" if outcome == "auth" else _COUNTERS[outcome]
            setattr(self.result, counter, getattr(self.result, counter) + 1)

    def queue_release(self, sender: _Sender, *, due_at: datetime | None, counter: str) -> None:
        while sender.queue:
            released = _release(sender.queue.popleft(), worker=self.worker, due_at=due_at)
            setattr(self.result, counter, getattr(self.result, counter) + released)

    def queues_release(self, *, due_at: datetime | None, counter: str) -> None:
        for sender in self.senders.values():
            self.queue_release(sender, due_at=due_at, counter=counter)

    def abort(self) -> None:
        """After an error stopped the drain: give back what was not sent, and wait for what flies
        (what cannot be recorded stays claimed with its attempt open: the sweeper doubts it)."""
        flying = [send.future for send in self.open if send.state == "flying"]
        if flying:
            futures_wait(flying)
        for send in list(self.open):
            if send.state != "started":
                continue
            try:
                _attempt_cancel(send, worker=self.worker, due_at=None, reason="the drain stopped")
            except Exception:
                logger.exception("could not give message %s back to the queue", send.message.pk)
        try:
            self.queues_release(due_at=None, counter="released")
        except Exception:
            logger.exception("could not give claimed messages back to the queue")
        if self.replies or not self.events.empty():
            try:
                self.settle()
                self.record()
            except Exception:
                logger.exception("could not record the answers of a stopped drain")


def _group_size(phone_number: PhoneNumber) -> int:
    """The sends a group prepares at once: GROUP_S worth at the sender's rate, at most GROUP_MAX."""
    return min(GROUP_MAX, max(1, math.ceil(phone_number.rate_limit_per_s * GROUP_S)))


def _senders_due(now: datetime) -> list[PhoneNumber]:
    ids = Message.objects.filter(_due(now)).order_by().values("phone_number_id").distinct()
    return list(PhoneNumber.objects.filter(id__in=ids, paused_at__isnull=True).order_by("id"))


_COUNTERS = {_O.SENT: "sent", _O.RETRY: "retrying", _O.FAILED: "failed", _O.IN_DOUBT: "in_doubt"}


def outgoing_drain(*, batch_size: int | None = None, time_budget_s: float = DRAIN_BUDGET_S) -> DrainResult:
    """Send due queued messages until none is left or time is up (see `_Stream`). A claim that
    comes back full wakes another drain, so idle workers join in."""
    worker = _worker_token()
    WakeUp.objects.filter(name=WAKE_NAME, pending=True).update(pending=False, updated_at=timezone.now())
    result = DrainResult()
    stream = _Stream(worker=worker, result=result, batch_size=batch_size or BATCH_MAX)
    stream.run(deadline=time.monotonic() + time_budget_s, first=True)
    if result.retrying or result.deferred or result.released or result.late:
        _next_due_wake()
    return result


def _next_due_wake() -> None:
    """A drain for when the next retry or deferred slot is due, sooner than the sweeper's next round
    (SQS delays at most 15 minutes; the sweeper covers what is later)."""
    earliest = (
        Message.objects.filter(status=_S.QUEUED, due_at__isnull=False, phone_number__paused_at__isnull=True)
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    if earliest is not None:
        delay_s = (earliest - timezone.now()).total_seconds()
        if delay_s < SQS_DELAY_MAX_S:
            _drain_enqueue(reason="next due", countdown=max(0.0, delay_s))


def outgoing_doubts_resolve(*, message_ids: list[int] | None = None) -> int:
    """Settle in-doubt messages that did reach Meta: the statuses Meta posts for a message carry
    our message id as `biz_opaque_callback_data`, and wait as PendingStatus rows for a wamid we
    never learnt. The message takes that wamid and is sent, and its statuses are applied."""
    from messaging.parsing import message_pending_statuses_apply

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
                **_NO_ERROR,
            )
            if moved:
                message = Message.objects.get(pk=int(message_id))
                message_pending_statuses_apply(message=message)
                resolved += 1
    if resolved:
        logger.info("in-doubt messages shown sent by Meta's statuses: %s", sorted(found))
    return resolved


def outgoing_sweep() -> dict[str, int]:
    """Settle the claims of dead workers (see the module's header) and wake a drain for due messages."""
    now = timezone.now()
    stale = Message.objects.filter(status=_S.SENDING, claimed_at__lt=now - timedelta(seconds=CLAIM_STALE_S()))
    open_attempt = SendAttempt.objects.filter(message=OuterRef("pk"), outcome="")
    with transaction.atomic():
        requeued = stale.filter(~Exists(open_attempt)).update(
            status=_S.QUEUED, claimed_at=None, claimed_by="", updated_at=now
        )
        doubted = list(
            stale.filter(Exists(open_attempt))
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        if doubted:
            Message.objects.filter(id__in=doubted).update(status=_S.IN_DOUBT, updated_at=now)
            SendAttempt.objects.filter(message_id__in=doubted, outcome="").update(outcome=_O.IN_DOUBT)
    if doubted:
        logger.warning("outgoing messages in doubt (their worker died mid-request): %s", doubted)
    resolved = outgoing_doubts_resolve()
    woken = False
    if Message.objects.filter(_due(now), phone_number__paused_at__isnull=True).exists():
        woken = _drain_enqueue(reason="sweep")
    return {"requeued": requeued, "in_doubt": len(doubted), "resolved": resolved, "woken": int(woken)}
