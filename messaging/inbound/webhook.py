"""Meta's webhook: the subscription handshake (GET) and signed deliveries (POST).

A plain Django view, not DRF: no authentication, throttling or content negotiation stands between
Meta and the one INSERT that makes a delivery durable. Parsing happens later, on a worker.
"""

import hashlib
import hmac
import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from messaging.inbound.events import inbound_event_record
from messaging.models import InboundEvent

logger = logging.getLogger(__name__)

SIGNATURE_PREFIX = "sha256="
# What a delivery that could not be stored is told; Meta redelivers on any 5xx, for days.
DATABASE_RETRY_AFTER_S = 60


def webhook_signature_valid(*, body: bytes, header: str) -> bool:
    """X-Hub-Signature-256: "sha256=" and the hex HMAC-SHA256 of the raw body, keyed with the app secret."""
    secret = settings.WHATSAPP_APP_SECRET
    if not secret:
        logger.error("WHATSAPP_APP_SECRET is not set: every webhook delivery is refused")
        return False
    if not header.startswith(SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    given = header.removeprefix(SIGNATURE_PREFIX).strip().lower()
    return hmac.compare_digest(expected.encode(), given.encode(errors="replace"))


def _too_large() -> JsonResponse:
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    return JsonResponse({"error": f"The body is larger than {limit} bytes."}, status=413)


def _database_unavailable(error: Exception) -> JsonResponse:
    """A 503 that makes Meta deliver the body again: it is not stored (or, if the database went away
    after the INSERT, stored once, and the redelivery finds it)."""
    logger.error("webhook delivery not stored: the database is unavailable (%s)", type(error).__name__)
    response = JsonResponse({"error": "The database is unavailable; deliver this again later."}, status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


@method_decorator(csrf_exempt, name="dispatch")
class WhatsAppWebhookView(View):
    http_method_names = ["get", "post", "head", "options"]

    def get(self, request: HttpRequest) -> HttpResponse:
        expected = settings.WHATSAPP_VERIFY_TOKEN
        token = request.GET.get("hub.verify_token", "")
        if (
            request.GET.get("hub.mode") == "subscribe"
            and expected
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
        logger.warning("webhook verification refused (hub.mode=%r)", request.GET.get("hub.mode", "")[:32])
        return HttpResponse("Forbidden", status=403, content_type="text/plain")

    def post(self, request: HttpRequest) -> HttpResponse:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return _too_large()
        body = request.read(limit + 1)
        if len(body) > limit:
            return _too_large()

        header = request.headers.get("X-Hub-Signature-256", "")
        if not webhook_signature_valid(body=body, header=header):
            logger.warning(
                "webhook delivery refused: %s signature (%d bytes from %s)",
                "invalid" if header else "missing",
                len(body),
                request.META.get("REMOTE_ADDR", "?"),
            )
            return JsonResponse({"error": "Invalid signature."}, status=403)

        try:
            event, _created = inbound_event_record(body=body)
        except (OperationalError, InterfaceError) as error:
            return _database_unavailable(error)
        if event.state == InboundEvent.State.REJECTED:
            return JsonResponse({"error": "The body is not a JSON object."}, status=400)
        return JsonResponse({"status": "ok"})
