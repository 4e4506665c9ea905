"""The page an email's unsubscribe link opens: GET asks, POST (a click, or a mail client's RFC 8058
one-click POST, which carries no CSRF token: the signed link is the authority) opts out."""

from __future__ import annotations

from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from contacts.models import AuditLog, Contact
from contacts.services import contact_channel_opt_out
from messaging.channels.email import unsubscribe_token_read

TEMPLATE = "channels/unsubscribe.html"


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        contact_id, channel = unsubscribe_token_read(token)
    except signing.BadSignature:
        return render(request, TEMPLATE, {"state": "invalid"}, status=400)
    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None:
        return render(request, TEMPLATE, {"state": "unknown"}, status=404)
    if request.method == "POST":
        contact_channel_opt_out(
            contact=contact,
            channel=channel,
            reason="unsubscribe link",
            actor=None,
            source=AuditLog.Source.UNSUBSCRIBE,
        )
        return render(request, TEMPLATE, {"state": "done", "channel": channel})
    state = "already" if contact.is_opted_out_of(channel) else "confirm"
    return render(request, TEMPLATE, {"state": state, "channel": channel})
