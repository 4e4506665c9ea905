"""What the messaging console's pages share: the source of their writes, message types and ticks,
and links to a conversation."""

from __future__ import annotations

import json
from typing import Any

from django.urls import reverse
from django.utils.html import format_html

from core.models import AuditLog
from messaging.models import (
    Message,
)

SOURCE = AuditLog.Source.ADMIN
PHONE_PUNCTUATION = str.maketrans("", "", " -().\t")

MESSAGE_TYPES = (
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "template",
    "reaction",
    "order",
    "system",
    "request_welcome",
    "edit",
    "revoke",
    "unsupported",
)

# How an outbound message's status reads in the console: a tick mark and its words.
TICKS = {
    Message.Status.QUEUED: ("🕓", "queued"),
    Message.Status.SENDING: ("🕓", "sending"),
    Message.Status.IN_DOUBT: ("?", "in doubt: may have been sent"),
    Message.Status.ABANDONED: ("⊘", "abandoned"),
    Message.Status.SENT: ("✓", "sent"),
    Message.Status.DELIVERED: ("✓✓", "delivered"),
    Message.Status.READ: ("✓✓", "read"),
    Message.Status.PLAYED: ("✓✓", "played"),
    Message.Status.FAILED: ("✗", "failed"),
    Message.Status.DELETED: ("⊘", "deleted"),
}


def pretty_json(value: Any, *, fallback: str = "Nested too deeply to show.") -> str:
    """Indented JSON inside <pre>, escaped: raw events are written by whoever holds the secret. Lone
    surrogates show as their escapes (a page cannot carry them); a value too deep to indent shows
    `fallback` instead."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    except (RecursionError, ValueError):
        text = fallback
    text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return format_html('<pre class="wharf-json">{}</pre>', text)


def ticks_html(message: Message) -> str:
    if message.direction != Message.Direction.OUTBOUND:
        return ""
    mark, words = TICKS.get(message.status, ("", message.status))
    return format_html('<span class="wharf-ticks wharf-{}" title="{}">{}</span>', message.status, words, mark)


def conversation_url(contact_id: int) -> str:
    return reverse("admin:messaging_message_conversation", args=[contact_id])


def label_chip(name: str, colour: str) -> str:
    """A label as the console shows it: its colour's dot and its name (CSS in label_style.html)."""
    return format_html('<span class="wharf-label wharf-label-{}">{}</span>', colour, name)
