"""The dashboard page (/admin/dashboard/, `admin:dashboard`): cards with the period's totals and
Chart.js charts, for staff with `dashboard.view_dashboard` and superusers. It reads the daily
counters only (dashboard/selectors.py), so it costs the same at any number of messages; each
chart's data is one json_script element that dashboard/static/dashboard/dashboard.js draws."""

from __future__ import annotations

from datetime import UTC

from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from core.params import int_param
from dashboard.selectors import DEFAULT_PERIOD, PERIODS, dashboard_get
from messaging.models import PhoneNumber

PERMISSION = "dashboard.view_dashboard"
CHARTS = ("messages", "funnel", "failures", "campaigns", "opt_outs", "archival")


def dashboard_view(request: HttpRequest, *, admin_site: AdminSite) -> HttpResponse:
    """?days=7|30|90 (30 otherwise), ?number=<sender number id> (all numbers otherwise)."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    days = int_param(request.GET.get("days"))
    days = days if days in PERIODS else DEFAULT_PERIOD
    numbers = list(PhoneNumber.objects.all())
    number_id = int_param(request.GET.get("number"))
    phone_number = next((number for number in numbers if number.pk == number_id), None)
    dashboard = dashboard_get(
        days=days, phone_number=phone_number, today=timezone.now().astimezone(UTC).date()
    )

    def url(**changes) -> str:
        query = {"days": days, "number": phone_number.pk if phone_number else "", **changes}
        return f"{reverse('admin:dashboard', current_app=admin_site.name)}?{urlencode(query)}"

    context = {
        **admin_site.each_context(request),
        "title": "Dashboard",
        "dashboard": dashboard,
        "cards": dashboard.cards,
        "chart_data": {name: dashboard.charts[name] for name in CHARTS},
        "periods": [
            {"name": f"{count} days", "url": url(days=count), "current": count == days} for count in PERIODS
        ],
        "days": days,
        "numbers": numbers,
        "number_id": phone_number.pk if phone_number else None,
    }
    return TemplateResponse(request, "admin/dashboard/dashboard.html", context)
