"""The operators' console for messaging: sender numbers (paused ones resumed), messages and
conversations (with a reply box, and in-doubt messages resent or abandoned), templates (synced from
Meta), operator alerts, the raw inbound events with their reprocessing, typed webhook events and
analytics rows.

Writes go through the services (messaging.services, .inbound, .outbound, .templates, .alerts);
raw events, templates and analytics are read-only.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from contacts.models import Contact
from contacts.selectors import contact_search_q
from core.alerts import operator_alert_acknowledge_key
from core.console import ReadOnlyAdmin, admin_object_take, set_or_unset_filter
from core.models import AuditLog
from messaging.graph import GraphError
from messaging.inbound.apply import KNOWN_FIELDS
from messaging.inbound.events import inbound_events_reprocess
from messaging.media import media_access, media_outgoing_discard, media_outgoing_upload
from messaging.models import (
    AnalyticsEvent,
    InboundEvent,
    Message,
    PhoneNumber,
    SendAttempt,
    Template,
    WebhookEvent,
)
from messaging.outbound.send import (
    message_abandon,
    message_resend,
    message_send,
    phone_number_default,
    phone_number_resume,
)
from messaging.selectors import CONVERSATION_PAGE_SIZE, conversation, message_media_error
from messaging.services import (
    PHONE_NUMBER_FIELDS,
    RATE_LIMIT_MAX_PER_S,
    message_delete,
    messages_delete,
    phone_number_create,
    phone_number_fields_clean,
    phone_number_update,
    phone_numbers_delete,
)
from messaging.templates import (
    SENDABLE,
    template_components_build,
    template_slots,
    templates_sync,
    templates_waba_ids,
)
from messaging.window import whatsapp_window

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


def pretty_json(value: Any) -> str:
    """Indented JSON inside <pre>, escaped: raw events are written by whoever holds the secret."""
    return format_html('<pre class="wharf-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False))


def ticks_html(message: Message) -> str:
    if message.direction != Message.Direction.OUTBOUND:
        return ""
    mark, words = TICKS.get(message.status, ("", message.status))
    return format_html('<span class="wharf-ticks wharf-{}" title="{}">{}</span>', message.status, words, mark)


def conversation_url(contact_id: int) -> str:
    return reverse("admin:messaging_message_conversation", args=[contact_id])


# -- sender numbers ---------------------------------------------------------------------------------


class PhoneNumberForm(forms.ModelForm):
    """Validates with the service's own rules, so that save_model's service call does not refuse."""

    rate_limit_per_s = forms.IntegerField(
        min_value=1,
        max_value=RATE_LIMIT_MAX_PER_S,
        initial=80,
        help_text="Messages per second Wharf sends from this number (Meta allows 80, up to 1,000).",
    )

    class Meta:
        model = PhoneNumber
        fields = PHONE_NUMBER_FIELDS

    def clean(self):
        cleaned_data = super().clean()
        try:
            cleaned_data.update(
                phone_number_fields_clean(
                    {name: cleaned_data[name] for name in PHONE_NUMBER_FIELDS if name in cleaned_data}
                )
            )
        except ValidationError as error:
            self.add_error(None, error)
        return cleaned_data


PausedFilter = set_or_unset_filter(
    title="sending", parameter_name="paused", field="paused_at", yes="Paused", no="Sending"
)


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    form = PhoneNumberForm
    list_display = (
        "display_phone_number",
        "verified_name",
        "phone_number_id",
        "waba_id",
        "rate_limit_per_s",
        "quality_rating",
        "messaging_limit",
        "sending_state",
        "updated_at",
    )
    list_display_links = ("display_phone_number", "phone_number_id")
    list_filter = (PausedFilter, "quality_rating", "waba_id")
    search_fields = ("=phone_number_id", "display_phone_number", "verified_name", "=waba_id")
    readonly_fields = ("paused_at", "paused_reason", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("phone_number_id", "display_phone_number", "verified_name", "waba_id")}),
        (
            "Sending",
            {
                "fields": (
                    "rate_limit_per_s",
                    "quality_rating",
                    "messaging_limit",
                    "paused_at",
                    "paused_reason",
                )
            },
        ),
        ("Activity", {"fields": ("created_at", "updated_at")}),
    )
    actions = ("resume_sending",)

    def has_resume_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_phonenumber")

    @admin.display(description="sending", ordering="paused_at")
    def sending_state(self, phone_number: PhoneNumber) -> str:
        if phone_number.paused_at is None:
            return "sending"
        return format_html(
            '<strong class="wharf-paused" title="{}">paused since {}</strong>',
            phone_number.paused_reason,
            phone_number.paused_at.strftime("%d %b %Y %H:%M UTC"),
        )

    @admin.action(description="Resume sending from the selected paused numbers", permissions=["resume"])
    def resume_sending(self, request, queryset):
        paused = list(queryset.filter(paused_at__isnull=False))
        for phone_number in paused:
            phone_number_resume(phone_number=phone_number, actor=request.user, source=SOURCE)
            key = f"sender-paused:{phone_number.phone_number_id}"
            operator_alert_acknowledge_key(key=key, actor=request.user)
        if paused:
            self.message_user(request, f"Resumed sending from {len(paused)} number(s).", messages.SUCCESS)
        else:
            self.message_user(request, "None of the selected numbers was paused.", messages.WARNING)

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in PHONE_NUMBER_FIELDS if name in form.cleaned_data}
        if change:
            saved = phone_number_update(
                phone_number=PhoneNumber.objects.get(pk=obj.pk), actor=request.user, source=SOURCE, **fields
            )
        else:
            saved = phone_number_create(**fields, actor=request.user, source=SOURCE)
        admin_object_take(obj, saved)

    def delete_model(self, request, obj):
        phone_numbers_delete(phone_numbers=[obj], actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        phone_numbers_delete(phone_numbers=list(queryset), actor=request.user, source=SOURCE)


# -- messages and conversations -----------------------------------------------------------------------


class MessageTypeFilter(admin.SimpleListFilter):
    """Meta's message types, listed rather than read from a table that grows without end."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(kind, kind) for kind in MESSAGE_TYPES]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(type=self.value())
        return queryset


class InDoubtFilter(admin.SimpleListFilter):
    """Messages an operator must decide on: their worker died while Meta may have had them."""

    title = "in doubt"
    parameter_name = "in_doubt"

    def lookups(self, request, model_admin):
        return [("yes", "In doubt")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=Message.Status.IN_DOUBT)
        return queryset


class SendAttemptInline(admin.TabularInline):
    model = SendAttempt
    fields = (
        "started_at",
        "finished_at",
        "worker",
        "outcome",
        "http_status",
        "error_code",
        "error_title",
        "error_details",
        "latency_ms",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "attempts to send"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def failure_text(message: Message) -> str:
    """Meta's code and title, the way operators look them up: `131047: Re-engagement message`."""
    if message.error_code is None and not message.error_title:
        return ""
    code = f"{message.error_code}: " if message.error_code is not None else ""
    return f"{code}{message.error_title}"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are Meta's record: read here, deleted through the service, never edited."""

    list_display = (
        "timestamp",
        "contact_link",
        "direction",
        "type",
        "text_short",
        "status_ticks",
        "failure",
        "media_state",
        "phone_number",
        "conversation_link",
    )
    list_display_links = ("timestamp",)
    list_filter = (
        InDoubtFilter,
        "direction",
        "status",
        MessageTypeFilter,
        "media_state",
        "phone_number",
        ("timestamp", admin.DateFieldListFilter),
    )
    list_select_related = ("contact", "phone_number")
    search_fields = ("=wamid", "text", "contact__phone")
    search_help_text = "A wamid, words of the text, or the contact's phone number in any format."
    show_full_result_count = False
    ordering = ("-timestamp", "-id")
    conversation_page_size = CONVERSATION_PAGE_SIZE
    fieldsets = (
        (
            None,
            {"fields": ("wamid", "direction", "type", "status", "contact_link", "phone_number", "timestamp")},
        ),
        (
            "Content",
            {"fields": ("text", "context_wamid", "target_wamid", "reaction", "edited_at", "revoked_at")},
        ),
        (
            "Media",
            {
                "fields": (
                    "media_link",
                    "media_state",
                    "media_unavailable",
                    "media_id",
                    "media_mime_type",
                    "media_size",
                    "media_sha256",
                    "media_filename",
                    "media_key",
                )
            },
        ),
        (
            "Sending",
            {
                "fields": (
                    "created_by",
                    "idempotency_key",
                    "due_at",
                    "attempts",
                    "claimed_at",
                    "claimed_by",
                )
            },
        ),
        ("Delivery", {"fields": ("sent_at", "delivered_at", "read_at", "played_at", "failed_at")}),
        ("Error", {"fields": ("error_code", "error_title", "error_details")}),
        ("As Meta sent it", {"fields": ("payload_pretty", "created_at", "updated_at")}),
    )

    inlines = (SendAttemptInline,)
    actions = ("resend", "abandon")

    def get_readonly_fields(self, request, obj=None):
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def has_send_permission(self, request) -> bool:
        return request.user.has_perm("messaging.add_message")

    @admin.display(description="failure")
    def failure(self, message: Message) -> str:
        return failure_text(message)

    @admin.action(description="Resend the selected in-doubt messages", permissions=["send"])
    def resend(self, request, queryset):
        self._in_doubt_apply(request, queryset, message_resend, "Queued {} in-doubt message(s) again.")

    @admin.action(description="Abandon the selected in-doubt messages (do not send)", permissions=["send"])
    def abandon(self, request, queryset):
        self._in_doubt_apply(request, queryset, message_abandon, "Abandoned {} in-doubt message(s).")

    def _in_doubt_apply(self, request: HttpRequest, queryset, service, done: str) -> None:
        chosen = list(queryset.filter(status=Message.Status.IN_DOUBT))
        count = 0
        for message in chosen:
            try:
                service(message=message, actor=request.user)
            except ValidationError as error:
                self.message_user(request, f"{message.wamid}: {' '.join(error.messages)}", messages.ERROR)
            else:
                count += 1
        if count:
            self.message_user(request, done.format(count), messages.SUCCESS)
        elif not chosen:
            self.message_user(request, "None of the selected messages is in doubt.", messages.WARNING)

    def get_search_results(self, request, queryset, search_term):
        """A wamid exactly, a phone number by its digits (the contacts' search), else the text."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("wamid."):
            return queryset.filter(wamid=term), False
        digits = term.translate(PHONE_PUNCTUATION).removeprefix("+")
        if digits.isascii() and digits.isdigit():
            return queryset.filter(
                Q(contact__in=Contact.objects.filter(contact_search_q(term))) | Q(text__icontains=term)
            ), False
        return queryset.filter(text__icontains=term), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        message_delete(message=obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        messages_delete(queryset=queryset, actor=request.user, source=SOURCE)

    @admin.display(description="contact", ordering="contact__phone")
    def contact_link(self, message: Message) -> str:
        url = reverse("admin:contacts_contact_change", args=[message.contact_id])
        return format_html('<a href="{}">{}</a>', url, message.contact)

    @admin.display(description="text")
    def text_short(self, message: Message) -> str:
        return Truncator(message.text).chars(80)

    @admin.display(description="status", ordering="status")
    def status_ticks(self, message: Message) -> str:
        return format_html("{} {}", ticks_html(message), message.status)

    @admin.display(description="")
    def conversation_link(self, message: Message) -> str:
        return format_html(
            '<a href="{}#message-{}">conversation</a>', conversation_url(message.contact_id), message.pk
        )

    @admin.display(description="media")
    def media_link(self, message: Message) -> str:
        url, note = media_access(message=message)
        if not url:
            return note or "—"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">open {}</a> (link valid for a few minutes)',
            url,
            message.media_filename or message.media_mime_type or "media",
        )

    @admin.display(description="why unavailable")
    def media_unavailable(self, message: Message) -> str:
        return message_media_error(message=message) or "—"

    @admin.display(description="payload")
    def payload_pretty(self, message: Message) -> str:
        return pretty_json(message.payload)

    # -- the conversation page ------------------------------------------------------------------

    def get_urls(self):
        conversation_path = path(
            "conversation/<int:contact_id>/",
            self.admin_site.admin_view(self.conversation_view),
            name="messaging_message_conversation",
        )
        decide_path = path(
            "<int:message_id>/in-doubt/",
            self.admin_site.admin_view(self.in_doubt_view),
            name="messaging_message_in_doubt",
        )
        return [conversation_path, decide_path, *super().get_urls()]

    def in_doubt_view(self, request: HttpRequest, message_id: int) -> HttpResponse:
        """A conversation's "Resend" / "Abandon" buttons on one in-doubt message."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_send_permission(request):
            raise PermissionDenied
        message = get_object_or_404(Message, pk=message_id)
        services = {"resend": (message_resend, "Queued again."), "abandon": (message_abandon, "Abandoned.")}
        if request.POST.get("decision") not in services:
            return HttpResponse("decision must be resend or abandon", status=400)
        service, done = services[request.POST["decision"]]
        try:
            service(message=message, actor=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(f"{conversation_url(message.contact_id)}#message-{message.pk}")

    def conversation_view(self, request: HttpRequest, contact_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        before = request.GET.get("before")
        if before is not None and not before.isdigit():
            raise Http404
        page = conversation(
            contact=contact, before_id=int(before) if before else None, limit=self.conversation_page_size
        )
        reply_errors: list[str] = []
        if request.method == "POST":
            if not self.has_send_permission(request):
                raise PermissionDenied
            sent, reply_errors = reply_send(request, contact)
            if sent is not None:
                self.message_user(request, "Message queued.", messages.SUCCESS)
                return HttpResponseRedirect(f"{conversation_url(contact.pk)}#message-{sent.pk}")
        for entry in page.entries:
            if entry.message.media_state == Message.MediaState.STORED:
                entry.media_url, entry.media_note = media_access(message=entry.message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Conversation with {contact}",
            "contact": contact,
            "conversation": page,
            "can_view_contact": request.user.has_perm("contacts.view_contact"),
            "reply": reply_context(request, contact, errors=reply_errors),
        }
        return TemplateResponse(request, "admin/messaging/conversation.html", context)


# -- the conversation's reply box ----------------------------------------------------------------------


def reply_sender(request: HttpRequest, contact: Contact) -> PhoneNumber | None:
    """The number chosen (?sender= or the form's), else the send service's default for the contact
    (the number they last wrote to, else the first one not paused)."""
    chosen = request.POST.get("phone_number") or request.GET.get("sender")
    if chosen and chosen.isdigit():
        found = PhoneNumber.objects.filter(pk=int(chosen)).first()
        if found is not None:
            return found
    return phone_number_default(contact=contact)


def reply_context(request: HttpRequest, contact: Contact, *, errors: list[str]) -> dict[str, Any]:
    sender = reply_sender(request, contact)
    window = whatsapp_window(contact, phone_number=sender)
    templates = []
    if sender is not None and sender.waba_id:
        approved = Template.objects.filter(waba_id=sender.waba_id, status=SENDABLE).order_by(
            "name", "language"
        )
        templates = [
            {"template": template, "slots": template_slots(template=template)} for template in approved
        ]
    quoting = request.POST.get("reply_to") or request.GET.get("reply_to") or ""
    return {
        "quoted": Message.objects.filter(contact=contact, wamid=quoting).first() if quoting else None,
        "can_send": request.user.has_perm("messaging.add_message"),
        "window_open": window.is_open,
        "window_closes_at": window.closes_at,
        "senders": list(PhoneNumber.objects.all()),
        "sender": sender,
        "templates": templates,
        "chosen_template": request.POST.get("template", ""),
        "reply_key": request.POST.get("reply_key", "") if errors else uuid.uuid4().hex,
        "errors": errors,
        "posted": request.POST if errors else {},
    }


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
        template = Template.objects.filter(
            pk=int(post["template"]) if post.get("template", "").isdigit() else 0
        ).first()
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
        key = media_outgoing_upload(file=upload, filename=upload.name or "file", content_type=mime_type)
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
            return None, [f"{field}: {text}" for field, texts in error.message_dict.items() for text in texts]
        return None, list(error.messages)
    return message, []


# -- inbound events ---------------------------------------------------------------------------------


class FieldListFilter(admin.SimpleListFilter):
    """The kinds of change an event holds (Meta's `field`), as the parser knows them; the others
    are under "unknown fields"."""

    title = "kind"
    parameter_name = "field"

    def lookups(self, request, model_admin):
        return [(field, field) for field in ("messages", *sorted(KNOWN_FIELDS - {"messages"}))]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(fields__contains=[self.value()])
        return queryset


class HadErrorFilter(admin.SimpleListFilter):
    title = "had an error"
    parameter_name = "had_error"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(last_error="")
        if self.value() == "no":
            return queryset.filter(last_error="")
        return queryset


class WebhookEventInline(admin.TabularInline):
    model = WebhookEvent
    fields = ("position", "field", "event", "known", "waba_id", "phone_number", "occurred_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdmin):
    """Webhook bodies exactly as received: read, filtered, and failed ones sent back to processing."""

    change_form_template = "admin/messaging/inboundevent/change_form.html"
    list_display = (
        "id",
        "received_at",
        "state",
        "kinds",
        "unknown_phone_number",
        "unknown_fields",
        "attempts",
        "error_short",
        "processed_at",
    )
    list_filter = (
        "state",
        FieldListFilter,
        "unknown_phone_number",
        "unknown_fields",
        HadErrorFilter,
        ("received_at", admin.DateFieldListFilter),
    )
    search_fields = ("=body_sha256",)
    search_help_text = "The body's SHA-256."
    show_full_result_count = False
    actions = ("reprocess",)
    inlines = (WebhookEventInline,)
    fieldsets = (
        (None, {"fields": ("state", "kinds", "unknown_phone_number", "unknown_fields", "body_sha256")}),
        (
            "Processing",
            {"fields": ("attempts", "next_attempt_at", "last_error", "received_at", "processed_at")},
        ),
        ("Raw body", {"fields": ("body_pretty",)}),
    )

    def get_readonly_fields(self, request, obj=None):
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def has_reprocess_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_inboundevent")

    @admin.display(description="kind")
    def kinds(self, event: InboundEvent) -> str:
        return ", ".join(event.fields)

    @admin.display(description="last error")
    def error_short(self, event: InboundEvent) -> str:
        return Truncator(event.last_error).chars(100)

    @admin.display(description="body")
    def body_pretty(self, event: InboundEvent) -> str:
        body = bytes(event.body or b"")
        try:
            return pretty_json(json.loads(body))
        except ValueError:
            return format_html(
                '<pre class="wharf-json">{}</pre>', body.decode("utf-8", errors="backslashreplace")
            )

    @admin.action(description="Reprocess the selected failed events", permissions=["reprocess"])
    def reprocess(self, request, queryset):
        self._reprocess(request, list(queryset.values_list("id", flat=True)))

    def _reprocess(self, request: HttpRequest, ids: list[int]) -> None:
        count = inbound_events_reprocess(event_ids=ids, actor=request.user)
        if count:
            self.message_user(request, f"Sent {count} failed event(s) back to processing.", messages.SUCCESS)
        else:
            self.message_user(request, "None of the selected events had failed.", messages.WARNING)

    def get_urls(self):
        reprocess_path = path(
            "<int:event_id>/reprocess/",
            self.admin_site.admin_view(self.reprocess_view),
            name="messaging_inboundevent_reprocess",
        )
        return [reprocess_path, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_reprocess": self.has_reprocess_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def reprocess_view(self, request: HttpRequest, event_id: int) -> HttpResponse:
        """The change page's "Reprocess" button, for one event."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_reprocess_permission(request):
            raise PermissionDenied
        event = get_object_or_404(InboundEvent, pk=event_id)
        self._reprocess(request, [event.pk])
        return HttpResponseRedirect(reverse("admin:messaging_inboundevent_change", args=[event.pk]))


# -- typed webhook events and analytics --------------------------------------------------------------


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "field",
        "event",
        "known",
        "waba_id",
        "phone_number",
        "occurred_at",
        "source",
    )
    list_filter = ("field", "event", "known", "phone_number")
    list_select_related = ("phone_number",)
    search_fields = ("=waba_id", "field", "event")
    show_full_result_count = False
    fields = (
        "field",
        "event",
        "known",
        "waba_id",
        "phone_number",
        "occurred_at",
        "source",
        "position",
        "created_at",
        "value_pretty",
    )
    readonly_fields = fields

    @admin.display(description="inbound event")
    def source(self, event: WebhookEvent) -> str:
        url = reverse("admin:messaging_inboundevent_change", args=[event.inbound_event_id])
        return format_html('<a href="{}">{}</a>', url, event.inbound_event_id)

    @admin.display(description="value")
    def value_pretty(self, event: WebhookEvent) -> str:
        return pretty_json(event.value)


@admin.register(AnalyticsEvent)
class AnalyticsEventAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "kind", "status", "wamid", "message", "contact_id", "phone_number_id")
    list_filter = ("kind", "status", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("=wamid",)
    show_full_result_count = False
    list_select_related = ("message",)
    fields = (
        "kind",
        "status",
        "wamid",
        "message",
        "contact_id",
        "phone_number_id",
        "occurred_at",
        "created_at",
        "data",
    )
    readonly_fields = fields


# -- templates and operator alerts --------------------------------------------------------------------


@admin.register(Template)
class TemplateAdmin(ReadOnlyAdmin):
    """Meta holds the templates: they are read here and synced, never edited."""

    change_list_template = "admin/messaging/template/change_list.html"
    list_display = ("name", "language", "status", "category", "quality_score", "waba_id", "synced_at")
    list_filter = ("status", "category", "quality_score", "waba_id")
    search_fields = ("name", "=meta_id")
    actions = ("sync_now",)
    fields = (
        "name",
        "language",
        "status",
        "category",
        "quality_score",
        "waba_id",
        "meta_id",
        "synced_at",
        "updated_at",
        "components_pretty",
    )
    readonly_fields = fields

    def has_sync_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_template")

    @admin.display(description="components")
    def components_pretty(self, template: Template) -> str:
        return pretty_json(template.components)

    @admin.action(description="Sync the selected templates' WABAs from Meta now", permissions=["sync"])
    def sync_now(self, request, queryset):
        self._sync(request, sorted(set(queryset.values_list("waba_id", flat=True))))

    def _sync(self, request: HttpRequest, waba_ids: list[str]) -> None:
        if not waba_ids:
            self.message_user(request, "No sender number names a WABA to sync.", messages.WARNING)
        for waba_id in waba_ids:
            try:
                count = templates_sync(waba_id=waba_id)
            except GraphError as error:
                self.message_user(request, f"WABA {waba_id}: {error.reason}", messages.ERROR)
            else:
                text = f"WABA {waba_id}: {count} template(s) from Meta."
                self.message_user(request, text, messages.SUCCESS)

    def get_urls(self):
        sync_path = path("sync/", self.admin_site.admin_view(self.sync_view), name="messaging_template_sync")
        return [sync_path, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_sync": self.has_sync_permission(request)}
        return super().changelist_view(request, extra_context)

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        """The list's "Sync now" button: every WABA of the sender numbers."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_sync_permission(request):
            raise PermissionDenied
        self._sync(request, templates_waba_ids())
        return HttpResponseRedirect(reverse("admin:messaging_template_changelist"))
