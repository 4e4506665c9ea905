"""Raw inbound events (with their reprocessing), typed webhook events and analytics rows: read-only."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from core.console import ReadOnlyAdmin
from messaging.admin.common import pretty_json
from messaging.inbound.apply import KNOWN_FIELDS
from messaging.inbound.events import inbound_events_reprocess
from messaging.models import (
    AnalyticsEvent,
    InboundEvent,
    WebhookEvent,
)


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
        raw = body.decode("utf-8", errors="backslashreplace")
        try:
            return pretty_json(json.loads(body), fallback=raw)
        except (ValueError, RecursionError):
            return format_html('<pre class="wharf-json">{}</pre>', raw)

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
