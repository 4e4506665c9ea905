"""The channels' public doors: the page an email's unsubscribe link opens, where GET asks and POST
(a click, or a mail client's RFC 8058 one-click POST, which carries no CSRF token: the signed link
is the authority) opts out; and the webhook SNS posts inbound SMS to."""

from __future__ import annotations

import base64
import hmac

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from contacts.models import Contact
from contacts.services.contact import contact_channel_opt_out
from core.models import AuditLog
from messaging.channels.email import unsubscribe_token_read
from messaging.channels.inbound import SnsMessageError, sns_message_handle
from messaging.channels.sns import SnsSignatureError

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


@csrf_exempt
@require_http_methods(["POST"])
def sms_webhook(request: HttpRequest) -> JsonResponse:
    """SNS's posts of inbound SMS, authenticated by HTTP basic auth: see messaging/channels/inbound.py."""
    expected = settings.SMS_WEBHOOK_TOKEN
    if not expected:
        return JsonResponse(
            {"detail": "The inbound SMS webhook is off (SMS_WEBHOOK_TOKEN is unset)."}, status=404
        )
    if not hmac.compare_digest(_basic_password(request).encode(), expected.encode()):
        answer = JsonResponse(
            {"authorization": "Basic auth with SMS_WEBHOOK_TOKEN as the password."}, status=401
        )
        answer["WWW-Authenticate"] = 'Basic realm="Wharf inbound SMS", charset="UTF-8"'
        return answer
    if len(request.body) > settings.WEBHOOK_MAX_BODY_BYTES:
        return JsonResponse({"body": "Too large."}, status=413)
    try:
        result = sns_message_handle(
            body=request.body,
            message_type=request.headers.get("x-amz-sns-message-type", ""),
            topic_arn=request.headers.get("x-amz-sns-topic-arn", ""),
        )
    except (SnsMessageError, SnsSignatureError) as error:
        field, _, text = str(error).partition(": ")
        status = 403 if isinstance(error, SnsSignatureError) else 400
        return JsonResponse({field.lower() if text else "body": text or str(error)}, status=status)
    return JsonResponse({"type": result.kind, "opted_out": result.opted_out is not None})


def _basic_password(request: HttpRequest) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return ""
