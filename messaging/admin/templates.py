"""Templates, synced from Meta (every hour and on "Sync now"): read-only in the console."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from core.console import ReadOnlyAdmin
from messaging.admin.common import pretty_json
from messaging.graph import GraphError
from messaging.models import (
    Template,
)
from messaging.templates import (
    templates_sync,
    templates_waba_ids,
)


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
