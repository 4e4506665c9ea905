"""Meta-shaped webhook bodies, for the sandbox, `manage.py sandbox_inbound`, tests and benchmarks.

The shapes follow Meta's webhook reference for the `messages` field: an envelope
`{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>, "changes": [{"field": "messages",
"value": {...}}]}]}` whose value has `metadata`, `contacts` and `messages`, or `statuses`; and for
the `calls` field, whose value has `metadata`, `contacts` and `calls` (connect, terminate).
Timestamps are strings of Unix seconds, as Meta sends them. Nothing here needs Django.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
import phonenumbers

DEFAULT_WABA_ID = "100000000000001"
DEFAULT_PHONE_NUMBER_ID = "100000000000002"
DEFAULT_DISPLAY_PHONE_NUMBER = "15550000001"
DEFAULT_VERIFIED_NAME = "Wharf sandbox"


def wamid_new() -> str:
    """A fresh id in the shape of Meta's: `wamid.` and base64 of opaque bytes."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)).decode()


def wa_id_from_phone(phone: str) -> str:
    """A WhatsApp id is the number's digits without the `+`."""
    return "".join(character for character in phone if character.isdigit())


def user_id_of(wa_id: str) -> str:
    """The user's business-scoped user id (BSUID) as Meta shapes it, `US.13491208655302741918`: the
    region of the number, a dot and an opaque id, the same for one user every time."""
    try:
        number = phonenumbers.parse(f"+{wa_id}")
        region = phonenumbers.region_code_for_country_code(number.country_code)
    except phonenumbers.NumberParseException:
        region = "ZZ"
    digest = hashlib.sha256(f"wharf-sandbox-bsuid:{wa_id}".encode()).digest()
    return f"{region}.{int.from_bytes(digest[:8], 'big') % 10**20:020d}"


def sha256_base64(content: bytes) -> str:
    """How a webhook's media object carries the file's hash."""
    return base64.b64encode(hashlib.sha256(content).digest()).decode()


def text_message(*, wa_id: str, text: str, wamid: str | None = None, timestamp: int | None = None) -> dict:
    return {
        **_message_head(wa_id=wa_id, wamid=wamid, timestamp=timestamp, kind="text"),
        "text": {"body": text},
    }


def media_message(
    *,
    wa_id: str,
    kind: str,
    media_id: str,
    mime_type: str,
    sha256: str,
    caption: str = "",
    filename: str = "",
    wamid: str | None = None,
    timestamp: int | None = None,
) -> dict:
    """An image, video, audio, document or sticker message; `sha256` as the webhook carries it."""
    media: dict[str, Any] = {"mime_type": mime_type, "sha256": sha256, "id": media_id}
    if caption and kind in ("image", "video", "document"):
        media["caption"] = caption
    if filename and kind == "document":
        media["filename"] = filename
    return {**_message_head(wa_id=wa_id, wamid=wamid, timestamp=timestamp, kind=kind), kind: media}


def messages_body(
    *,
    messages: list[dict],
    profile_name: str = "",
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
    display_phone_number: str = DEFAULT_DISPLAY_PHONE_NUMBER,
    waba_id: str = DEFAULT_WABA_ID,
) -> dict:
    """A `messages` webhook carrying `messages`, all from one sender (the first message's `from`)."""
    wa_id = messages[0]["from"]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": profile_name}, "wa_id": wa_id}],
        "messages": messages,
    }
    return _envelope(waba_id=waba_id, field="messages", value=value)


def statuses_body(
    *,
    statuses: list[dict],
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
    display_phone_number: str = DEFAULT_DISPLAY_PHONE_NUMBER,
    waba_id: str = DEFAULT_WABA_ID,
) -> dict:
    """A `messages` webhook carrying statuses, with `contacts`: each recipient's wa_id and user_id,
    once, in the order of the statuses (as Meta sends them since business-scoped user ids)."""
    contacts: dict[str, dict] = {}
    for entry in statuses:
        wa_id = entry["recipient_id"]
        contacts.setdefault(
            wa_id, {"wa_id": wa_id, "user_id": entry.get("recipient_user_id") or user_id_of(wa_id)}
        )
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
        "contacts": list(contacts.values()),
        "statuses": statuses,
    }
    return _envelope(waba_id=waba_id, field="messages", value=value)


def status(
    *,
    wamid: str,
    recipient_id: str,
    status: str,
    timestamp: int | None = None,
    errors: list[dict] | None = None,
) -> dict:
    """A status of an outbound message: sent, delivered, read, played, failed (with `errors`), deleted."""
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "recipient_id": recipient_id,
        "recipient_user_id": user_id_of(recipient_id),
    }
    if errors:
        entry["errors"] = errors
    return entry


def call_id_new() -> str:
    """A fresh id in the shape of Meta's call ids: `wacid.` and base64 of opaque bytes."""
    return "wacid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)).decode()


def call_connect(*, call_id: str, wa_id: str, business: str, timestamp: int | None = None) -> dict:
    """A user calling the business: the `connect` event with the caller's SDP offer."""
    return {
        "id": call_id,
        "from": wa_id,
        "to": business,
        "event": "connect",
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "direction": "USER_INITIATED",
        "session": {"sdp_type": "offer", "sdp": "v=0\r\n"},
    }


def call_terminate(
    *, call_id: str, wa_id: str, business: str, ended: int, duration_s: int = 0, status: str = "COMPLETED"
) -> dict:
    """The end of a user's call at `ended`; with `duration_s` 0 nobody answered it, and it carries
    no start, end or duration."""
    entry: dict[str, Any] = {
        "id": call_id,
        "from": wa_id,
        "to": business,
        "event": "terminate",
        "direction": "USER_INITIATED",
        "timestamp": str(ended),
        "status": status,
    }
    if duration_s:
        entry |= {"start_time": str(ended - duration_s), "end_time": str(ended), "duration": duration_s}
    return entry


def calls_body(
    *,
    calls: list[dict],
    wa_id: str,
    profile_name: str = "",
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
    display_phone_number: str = DEFAULT_DISPLAY_PHONE_NUMBER,
    waba_id: str = DEFAULT_WABA_ID,
) -> dict:
    """A `calls` webhook carrying call events with one user (`wa_id`)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": profile_name}, "wa_id": wa_id}],
        "calls": calls,
    }
    return _envelope(waba_id=waba_id, field="calls", value=value)


def template_status_body(
    *,
    waba_id: str,
    template_id: str,
    name: str,
    language: str,
    event: str,
    reason: str = "NONE",
    other_info: dict | None = None,
) -> dict:
    """A `message_template_status_update` webhook: a template approved, rejected, paused ...;
    `other_info` ({"title", "description"}) comes with some events (a pause, a disable)."""
    value = {
        "event": event,
        "message_template_id": int(template_id) if template_id.isdigit() else template_id,
        "message_template_name": name,
        "message_template_language": language,
        "reason": reason,
    }
    if other_info:
        value["other_info"] = other_info
    return _envelope(waba_id=waba_id, field="message_template_status_update", value=value)


def phone_number_quality_body(
    *,
    waba_id: str,
    display_phone_number: str,
    event: str,
    current_limit: str,
    old_limit: str = "",
    timestamp: int | None = None,
) -> dict:
    """A `phone_number_quality_update` webhook: a number flagged or unflagged, its messaging limit
    raised or lowered (`old_limit` only then), its throughput upgraded. `current_limit` is also sent
    as `max_daily_conversations_per_business`, the name Meta gives it from 2026."""
    value = {"display_phone_number": display_phone_number, "event": event}
    if old_limit:
        value["old_limit"] = old_limit
    value |= {"current_limit": current_limit, "max_daily_conversations_per_business": current_limit}
    body = _envelope(waba_id=waba_id, field="phone_number_quality_update", value=value)
    body["entry"][0]["time"] = timestamp if timestamp is not None else int(time.time())
    return body


def body_encode(body: dict) -> bytes:
    """The bytes to post: compact JSON, as Meta sends it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def body_signature(body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` header: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_post(*, url: str, body: dict, app_secret: str, timeout_s: float = 10.0) -> httpx.Response:
    """Deliver a body as Meta does: compact JSON, signed, `Content-Type: application/json`."""
    raw = body_encode(body)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": body_signature(raw, app_secret)}
    return httpx.post(url, content=raw, headers=headers, timeout=timeout_s)


def _message_head(*, wa_id: str, wamid: str | None, timestamp: int | None, kind: str) -> dict:
    return {
        "from": wa_id,
        "id": wamid or wamid_new(),
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "type": kind,
    }


def _envelope(*, waba_id: str, field: str, value: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": field}]}],
    }
