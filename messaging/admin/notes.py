"""The conversation page's private notes: the "Add private note" box under the reply box, posted
to `conversation/<contact>/notes/` and added through `conversation_note_add`.

A note belongs to the conversation of the contact and the number the page replies from
(`?sender=`); adding one needs `messaging.change_conversation`, as every other operator's action
on a conversation. No conversation is made for a note: until a message starts one, the box says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse

from contacts.models import Contact
from core.params import int_param
from messaging.admin.common import SOURCE
from messaging.conversations import NOTE_MAX_LENGTH, conversation_note_add, conversations_visible_q
from messaging.models import Conversation, ConversationNote, PhoneNumber

NOTE_PERMISSION = "messaging.change_conversation"
NO_CONVERSATION = "There is no conversation with this contact on this number yet: a note needs one."


def note_conversation(
    request: HttpRequest, contact: Contact, phone_number_id: int | None
) -> Conversation | None:
    """The conversation of the contact and the sender number (None: the one without a number),
    when the operator sees it."""
    return (
        Conversation.objects.filter(conversations_visible_q(request.user), contact=contact)
        .filter(phone_number_id=phone_number_id)
        .first()
    )


def note_context(
    request: HttpRequest,
    contact: Contact,
    *,
    sender: PhoneNumber | None,
    errors: Sequence[str] = (),
    body: str = "",
) -> dict[str, Any]:
    can_add = request.user.has_perm(NOTE_PERMISSION)
    return {
        "can_add": can_add,
        "conversation": note_conversation(request, contact, sender.pk if sender else None)
        if can_add
        else None,
        "url": reverse("admin:messaging_message_conversation_notes", args=[contact.pk]),
        "max_length": NOTE_MAX_LENGTH,
        "errors": list(errors),
        "body": body,
    }


def note_add(request: HttpRequest, contact: Contact) -> tuple[ConversationNote | None, list[str]]:
    """The note box's POST (`phone_number`, `body`); its refusals come back as lines to show."""
    found = note_conversation(request, contact, int_param(request.POST.get("phone_number")))
    if found is None:
        return None, [NO_CONVERSATION]
    body = request.POST.get("body", "").replace("\r\n", "\n")  # a browser's line breaks, counted once
    try:
        note = conversation_note_add(conversation=found, body=body, actor=request.user, source=SOURCE)
    except ValidationError as error:
        return None, [text for texts in error.message_dict.values() for text in texts]
    return note, []
