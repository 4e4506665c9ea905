"""The conversation's reply box: text, files and templates through the send service, from the
default sender, within the 24-hour window (messaging.window); the operator's canned responses
(messaging.canned) filled for the contact; each template's components for the page's live preview."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone

from contacts.models import Contact
from core.params import int_param
from messaging.admin.common import SOURCE
from messaging.canned import canned_responses_filled
from messaging.conversations import phone_numbers_visible_q
from messaging.media import media_outgoing_discard, media_outgoing_upload
from messaging.models import (
    Message,
    PhoneNumber,
    Template,
)
from messaging.outbound.send import (
    WINDOW_CLOSED,
    message_send,
    phone_number_default,
)
from messaging.templates import (
    SENDABLE,
    template_components_build,
    template_slots,
)
from messaging.window import whatsapp_window


def reply_sender(request: HttpRequest, contact: Contact) -> PhoneNumber | None:
    """The number chosen (?sender= or the form's) when the operator sees it, else the send
    service's default among the numbers they see (`phone_number_default`)."""
    chosen = int_param(request.POST.get("phone_number") or request.GET.get("sender"))
    if chosen is not None:
        found = PhoneNumber.objects.filter(phone_numbers_visible_q(request.user), pk=chosen).first()
        if found is not None:
            return found
    return phone_number_default(contact=contact, user=request.user)


def reply_context(request: HttpRequest, contact: Contact, *, errors: list[str]) -> dict[str, Any]:
    """The reply box's context. After a refused post (`errors`) what was posted comes back: the typed
    text (kept even when the window closed meanwhile, to be copied) and the chosen template's values."""
    sender = reply_sender(request, contact)
    window = whatsapp_window(contact, phone_number=sender)
    posted = request.POST if errors else {}
    chosen_template = request.POST.get("template", "")
    templates = []
    if sender is not None and sender.waba_id:
        approved = Template.objects.filter(waba_id=sender.waba_id, status=SENDABLE).order_by(
            "name", "language"
        )
        for template in approved:
            refill = posted and chosen_template == str(template.pk)
            slots = [
                {"slot": slot, "value": posted.get(f"param-{slot.key}", "") if refill else ""}
                for slot in template_slots(template=template)
            ]
            templates.append({"template": template, "slots": slots})
    quoting = request.POST.get("reply_to") or request.GET.get("reply_to") or ""
    return {
        "quoted": Message.objects.filter(contact=contact, wamid=quoting).first() if quoting else None,
        "can_send": request.user.has_perm("messaging.add_message"),
        "window_open": window.is_open,
        "window_closes_at": window.closes_at,
        "now": timezone.now(),
        "text_kept": bool(posted) and posted.get("reply_kind") == "text" and not window.is_open,
        "senders": list(PhoneNumber.objects.filter(phone_numbers_visible_q(request.user))),
        "sender": sender,
        "templates": templates,
        "template_components": {
            str(entry["template"].pk): entry["template"].components for entry in templates
        },
        "chosen_template": chosen_template if posted else "",
        "canned": [vars(canned) for canned in canned_responses_filled(user=request.user, contact=contact)],
        "can_add_canned": request.user.has_perm("messaging.add_cannedresponse"),
        "reply_key": request.POST.get("reply_key", "") if errors else uuid.uuid4().hex,
        "errors": errors,
        "posted": posted,
    }


def reply_links_context(request: HttpRequest, contact: Contact) -> dict[str, Any]:
    """What the timeline alone needs of the reply box (its "reply" links, the in-doubt buttons)."""
    window = whatsapp_window(contact, phone_number=reply_sender(request, contact))
    return {"can_send": request.user.has_perm("messaging.add_message"), "window_open": window.is_open}


def _media_kind(mime_type: str) -> str:
    """WhatsApp's kind for a file: WebP images are stickers; what is not image, video or audio is a
    document."""
    if mime_type == "image/webp":
        return "sticker"
    major = mime_type.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "document"


def _reply_idempotency_key(post) -> str:
    """One key per form of a rendered page: a double click sends once, and the page's other forms
    still send their own message."""
    reply_key = post.get("reply_key", "")
    if not re.fullmatch(r"[0-9a-f]{32}", reply_key):
        return ""
    return f"admin:{reply_key}:{post.get('reply_kind', '')}{post.get('template', '')}"


def _reply_to(post, contact: Contact) -> str:
    """The quoted message's wamid, if it is one of this conversation's delivered messages."""
    wamid = post.get("reply_to", "")
    if not wamid or not Message.objects.filter(contact=contact, wamid=wamid).exists():
        return ""
    return wamid


def reply_send(request: HttpRequest, contact: Contact) -> tuple[Message | None, list[str]]:
    """The reply box's POST through the send service; its refusals come back as lines to show."""
    post = request.POST
    sender = reply_sender(request, contact)
    kind, content, key = post.get("reply_kind", ""), {}, ""
    if kind == "text":
        content = {"body": post.get("body", ""), "preview_url": bool(post.get("preview_url"))}
    elif kind == "template":
        template = Template.objects.filter(pk=int_param(post.get("template")) or 0).first()
        if template is None:
            return None, ["template: Choose a template."]
        values = {slot.key: post.get(f"param-{slot.key}", "") for slot in template_slots(template=template)}
        content = {
            "name": template.name,
            "language": {"code": template.language},
            "components": template_components_build(template=template, values=values),
        }
    elif kind == "media":
        upload = request.FILES.get("file")
        if upload is None:
            return None, ["file: Choose a file to send."]
        mime_type = upload.content_type or "application/octet-stream"
        try:
            key = media_outgoing_upload(file=upload, filename=upload.name or "file", content_type=mime_type)
        except ValidationError as error:
            return None, [f"file: {message}" for message in error.message_dict.get("file", error.messages)]
        kind = _media_kind(mime_type)
        content = {"s3_key": key}
        if kind == "document":
            content["filename"] = (upload.name or "file")[:240]
        if post.get("caption") and kind != "audio":
            content["caption"] = post["caption"]
    else:
        return None, ["Choose what to send."]
    try:
        message = message_send(
            phone_number=sender,
            contact=contact,
            kind=kind,
            content=content,
            actor=request.user,
            source=SOURCE,
            idempotency_key=_reply_idempotency_key(post),
            reply_to_wamid=_reply_to(post, contact),
        )
    except ValidationError as error:
        if key:
            media_outgoing_discard(key=key)
        if hasattr(error, "error_dict"):
            return None, [
                text if text == WINDOW_CLOSED else f"{field}: {text}"
                for field, texts in error.message_dict.items()
                for text in texts
            ]
        return None, list(error.messages)
    return message, []
