"""The audit log and operator alerts, read-only: services write them."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from core.alerts import operator_alert_acknowledge
from core.console import ReadOnlyAdmin, set_or_unset_filter
from core.models import AuditLog, OperatorAlert


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Read-only: the log is written by the services and nowhere else."""

    list_display = ("created_at", "action", "target_repr", "actor", "source")
    list_filter = ("source", "action", ("created_at", admin.DateFieldListFilter))
    search_fields = ("target_repr",)
    list_select_related = ("actor", "target_type")
    show_full_result_count = False


AlertOpenFilter = set_or_unset_filter(
    title="state",
    parameter_name="open",
    field="acknowledged_at",
    yes="Open",
    no="Acknowledged",
    yes_when_set=False,
)


@admin.register(OperatorAlert)
class OperatorAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "level", "text", "key", "acknowledged_at", "acknowledged_by")
    list_filter = (AlertOpenFilter, "level")
    search_fields = ("=key", "text")
    fields = ("key", "level", "text", "created_at", "acknowledged_at", "acknowledged_by")
    readonly_fields = fields
    actions = ("acknowledge",)

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.has_perm("core.change_operatoralert")

    @admin.action(description="Acknowledge the selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        alerts = list(queryset.filter(acknowledged_at__isnull=True))
        for alert in alerts:
            operator_alert_acknowledge(alert=alert, actor=request.user)
        self.message_user(request, f"Acknowledged {len(alerts)} alert(s).", messages.SUCCESS)

    def get_urls(self):
        acknowledge_path = path(
            "<int:alert_id>/acknowledge/",
            self.admin_site.admin_view(self.acknowledge_view),
            name="core_operatoralert_acknowledge",
        )
        return [acknowledge_path, *super().get_urls()]

    def acknowledge_view(self, request: HttpRequest, alert_id: int) -> HttpResponse:
        """The banner's "Acknowledge" button; back to the page it was on."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_acknowledge_permission(request):
            raise PermissionDenied
        alert = get_object_or_404(OperatorAlert, pk=alert_id)
        operator_alert_acknowledge(alert=alert, actor=request.user)
        next_url = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = reverse("admin:index")
        return HttpResponseRedirect(next_url)
