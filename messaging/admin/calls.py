"""WhatsApp calls: read-only, only those of the sender numbers the operator sees, missed ones marked."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from contacts.models import Contact
from contacts.selectors import contact_search_q
from core.console import ReadOnlyAdmin
from messaging.admin.common import conversation_url, pretty_json
from messaging.calls import call_duration_text
from messaging.conversations import conversations_visible_q
from messaging.models import Call


class CallStatusFilter(admin.SimpleListFilter):
    """The states of messaging.models.Call (a computed column: Django lists no choices for it)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Call.Status.choices

    def queryset(self, request, queryset):
        if self.value() in Call.Status.values:
            return queryset.filter(status=self.value())
        return queryset


class MissedFilter(admin.SimpleListFilter):
    title = "missed"
    parameter_name = "missed"

    def lookups(self, request, model_admin):
        return [("yes", "Missed"), ("no", "Not missed")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(missed=self.value() == "yes")
        return queryset


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    """Calls are Meta's record, written by the `calls` webhooks (messaging/calls.py)."""

    list_display = ("started_at", "contact_link", "phone_number", "direction", "status_html", "duration")
    list_display_links = ("started_at",)
    list_filter = (
        "direction",
        CallStatusFilter,
        MissedFilter,
        ("phone_number", admin.RelatedOnlyFieldListFilter),
        ("started_at", admin.DateFieldListFilter),
    )
    list_select_related = ("contact", "phone_number")
    search_fields = ("contact__name",)
    search_help_text = "The contact's name or phone number (in any format)."
    show_full_result_count = False
    ordering = ("-started_at", "-id")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "call_id",
                    "contact_link",
                    "phone_number",
                    "conversation_link",
                    "direction",
                    "status_html",
                    "from_number",
                    "to_number",
                )
            },
        ),
        ("Times", {"fields": ("started_at", "connected_at", "ended_at", "duration", "rejected_at")}),
        ("Meta's end", {"fields": ("end_status", "error_code", "error_title", "error_details")}),
        ("The latest event, as Meta sent it", {"fields": ("payload_pretty", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        """Only calls of the sender numbers the operator sees, as in the inbox."""
        return super().get_queryset(request).filter(conversations_visible_q(request.user))

    def get_readonly_fields(self, request, obj=None):
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def get_search_results(self, request, queryset, search_term):
        """The contacts' own search: names, and phone numbers by their digits."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(contact__in=Contact.objects.filter(contact_search_q(term))), False

    @admin.display(description="contact", ordering="contact__name")
    def contact_link(self, call: Call) -> str:
        url = reverse("admin:contacts_contact_change", args=[call.contact_id])
        return format_html('<a href="{}">{}</a>', url, call.contact)

    @admin.display(description="conversation")
    def conversation_link(self, call: Call) -> str:
        url = conversation_url(call.contact_id)
        if call.phone_number_id is not None:
            url += f"?sender={call.phone_number_id}"
        return format_html('<a href="{}">open</a>', url)

    @admin.display(description="status", ordering="status")
    def status_html(self, call: Call) -> str:
        if call.missed:
            return format_html(
                '<strong class="wharf-call-missed" style="color: var(--error-fg)" title="{}">{}</strong>',
                "missed call",
                call.status,
            )
        return call.status

    @admin.display(description="duration", ordering="duration_s")
    def duration(self, call: Call) -> str:
        return call_duration_text(call.duration_s)

    @admin.display(description="payload")
    def payload_pretty(self, call: Call) -> str:
        return pretty_json(call.payload)
