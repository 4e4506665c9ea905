"""The conversation page's contact panel: who the contact is (for a user who may view contacts),
whether each channel can reach them (contacts.reachability), and their other conversations. The
campaigns they received come from campaigns' template tag `contact_campaigns`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import HttpRequest

from contacts.access import contact_data_visible
from contacts.models import OPT_OUT_FIELDS, Channel, Contact
from contacts.reachability import NO_ADDRESS, OPTED_OUT, contact_reachable
from messaging.admin.inbox import conversation_open_url
from messaging.conversations import conversations_visible_q
from messaging.models import Conversation

REACHABILITY = {None: "reachable", NO_ADDRESS: "no address", OPTED_OUT: "opted out"}


@dataclass
class ChannelState:
    channel: str  # its name, "WhatsApp"
    state: str  # "reachable", "no address" or "opted out"
    opted_out_at: datetime | None
    source: str


@dataclass
class OtherConversation:
    conversation: Conversation
    url: str


def contact_panel_context(
    request: HttpRequest, contact: Contact, current: Conversation | None
) -> dict[str, Any]:
    user = request.user
    others = (
        Conversation.objects.filter(contact=contact)
        .filter(conversations_visible_q(user))
        .exclude(pk=current.pk if current else None)
        .select_related("phone_number")
        .order_by("-last_message_at", "-id")
    )
    context: dict[str, Any] = {
        "contact": contact,
        "can_view_contact": contact_data_visible(user),
        "others": [OtherConversation(other, conversation_open_url(other)) for other in others],
    }
    if not context["can_view_contact"]:
        return context
    channels = []
    for channel in Channel:
        reason = contact_reachable(contact, channel)
        at_field, source_field = OPT_OUT_FIELDS[channel]
        channels.append(
            ChannelState(
                channel=channel.label,
                state=REACHABILITY[reason],
                opted_out_at=getattr(contact, at_field),
                source=getattr(contact, source_field),
            )
        )
    context |= {
        "channels": channels,
        "attributes": sorted(contact.attributes.items()) if isinstance(contact.attributes, dict) else [],
    }
    return context
