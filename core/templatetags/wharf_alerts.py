"""The open operator alerts as a banner on every admin page (templates/admin/base_site.html)."""

from django import template

from core.alerts import operator_alerts_open

register = template.Library()


@register.inclusion_tag("admin/core/operator_alerts.html", takes_context=True)
def operator_alerts_banner(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_active or not user.is_staff:
        return {"alerts": []}
    return {
        "alerts": operator_alerts_open(),
        "can_acknowledge": user.has_perm("core.change_operatoralert"),
        "next": request.get_full_path(),
        "csrf_token": context.get("csrf_token"),
    }
