"""The operators' console for messaging: sender numbers, messages and conversations, the raw
inbound events with their reprocessing, typed webhook events and analytics rows.

Writes go through messaging.services and messaging.inbound; raw events and analytics are read-only.
"""

from __future__ import annotations

import json
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

from contacts.models import AuditLog, Contact
from contacts.selectors import contact_search_q
from messaging.inbound import inbound_events_reprocess
from messaging.media import media_presigned_url
from messaging.models import AnalyticsEvent, InboundEvent, Message, PhoneNumber, WebhookEvent
from messaging.parsing import KNOWN_FIELDS
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
        "updated_at",
    )
    list_display_links = ("display_phone_number", "phone_number_id")
    list_filter = ("quality_rating", "waba_id")
    search_fields = ("=phone_number_id", "display_phone_number", "verified_name", "=waba_id")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("phone_number_id", "display_phone_number", "verified_name", "waba_id")}),
        ("Sending", {"fields": ("rate_limit_per_s", "quality_rating", "messaging_limit")}),
        ("Activity", {"fields": ("created_at", "updated_at")}),
    )

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in PHONE_NUMBER_FIELDS if name in form.cleaned_data}
        if change:
            saved = phone_number_update(
                phone_number=PhoneNumber.objects.get(pk=obj.pk), actor=request.user, source=SOURCE, **fields
            )
        else:
            saved = phone_number_create(**fields, actor=request.user, source=SOURCE)
        # The admin goes on with `obj` (messages, history, redirect): make it the saved row.
        for field in PhoneNumber._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

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
        "media_state",
        "phone_number",
        "conversation_link",
    )
    list_display_links = ("timestamp",)
    list_filter = (
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
        ("Delivery", {"fields": ("sent_at", "delivered_at", "read_at", "played_at", "failed_at")}),
        ("Error", {"fields": ("error_code", "error_title", "error_details")}),
        ("As Meta sent it", {"fields": ("payload_pretty", "created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

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
        url = media_presigned_url(message=message)
        if not url:
            return "—"
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
        return [conversation_path, *super().get_urls()]

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
        for entry in page.entries:
            if entry.message.media_state == Message.MediaState.STORED:
                entry.media_url = media_presigned_url(message=entry.message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Conversation with {contact}",
            "contact": contact,
            "conversation": page,
            "can_view_contact": request.user.has_perm("contacts.view_contact"),
        }
        return TemplateResponse(request, "admin/messaging/conversation.html", context)


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
class InboundEventAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

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


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
