"""The operator's tools in every admin page's header (templates/admin/base_site.html): available for
automatic assignment or away, browser notifications, and the unread count in the title."""

from django import template
from django.urls import reverse

from messaging.conversations import operator_available

register = template.Library()

POLL_INTERVAL_MS = 5000
POLL_INTERVAL_HIDDEN_MS = 15000  # a tab in the background still notifies, a little later


@register.inclusion_tag("admin/messaging/operator_tools.html", takes_context=True)
def operator_tools(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if (
        user is None
        or not user.is_active
        or not user.is_staff
        or not user.has_perm("messaging.view_conversation")
    ):
        return {"shown": False}
    return {
        "shown": True,
        "user_id": user.pk,
        "available": operator_available(user=user),
        "availability_url": reverse("admin:messaging_conversation_availability"),
        "notifications_url": reverse("admin:messaging_conversation_notifications"),
        "csrf_token": context.get("csrf_token"),
        "poll_interval_ms": POLL_INTERVAL_MS,
        "poll_interval_hidden_ms": POLL_INTERVAL_HIDDEN_MS,
    }
