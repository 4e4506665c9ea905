"""Inbound SMS, as AWS End User Messaging SMS publishes them to an SNS topic that posts to
/webhooks/sms/: a reply that is an opt-out keyword opts the sender out of SMS.

Two checks, both in constant time or cryptography: HTTP basic auth, which SNS supports for HTTPS
subscriptions (subscribe `https://sns:<SMS_WEBHOOK_TOKEN>@<host>/webhooks/sms/`; the secret travels
in the Authorization header, never in a path or query string that access logs keep), and SNS's own
signature on the message (sns.py; SMS_SNS_VERIFY_SIGNATURES), which proves AWS sent it. Raw message
delivery carries no signature, so it is taken only with signatures off. Only the topics named in
SMS_SNS_TOPIC_ARNS are accepted (none when it is empty: any AWS account can make a topic and sign
with SNS's key), read from the signed message (raw delivery: SNS's `x-amz-sns-topic-arn` header).
A signed message whose `Timestamp` is older than SMS_SNS_MAX_AGE_S (or more than CLOCK_SKEW ahead)
is refused, so a captured post cannot be replayed later; SNS's own retries of a delivery stay
within an hour, the default.

Within that hour SNS delivers at least once and opting out twice records one opt-out, so a repeat is
harmless (no table of MessageIds is kept). A subscription's confirmation is not followed
automatically: operators get an alert with its link.
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from contacts.models import Channel, Contact
from contacts.services.cleaning import phone_normalise
from contacts.services.contact import contact_channel_opt_out
from core.alerts import operator_alert_raise
from core.models import AuditLog
from messaging.channels.sns import SnsSignatureError, sns_signature_verify

logger = logging.getLogger(__name__)


SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# How far ahead of this server's clock a message's Timestamp may be.
CLOCK_SKEW = timedelta(minutes=5)


class SnsMessageError(ValueError):
    """The body is not an SNS message this endpoint takes; the text names what is wrong."""


@dataclass(frozen=True)
class SmsInboundResult:
    kind: str  # the SNS message type
    opted_out: Contact | None = None


def sms_keyword_is_opt_out(text: str) -> bool:
    return text.strip().upper() in {word.strip().upper() for word in settings.SMS_OPT_OUT_KEYWORDS}


def sns_message_handle(*, body: bytes, message_type: str = "", topic_arn: str = "") -> SmsInboundResult:
    """Handles one SNS post: a subscription confirmation, or a notification of an inbound SMS
    (raw message delivery on or off; then `topic_arn` is SNS's header, the body having none)."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise SnsMessageError("The body is not JSON.") from None
    if not isinstance(payload, dict):
        raise SnsMessageError("The body is not a JSON object.")
    raw = "originationNumber" in payload  # raw message delivery: the body is the inbound SMS itself
    kind = "Notification" if raw else str(payload.get("Type") or message_type)
    if kind not in SNS_TYPES:
        raise SnsMessageError(f"Type: {kind!r} is not an SNS message type.")
    if settings.SMS_SNS_VERIFY_SIGNATURES:
        if raw:
            raise SnsSignatureError(
                "Signature: raw message delivery is unsigned; turn it off for this subscription."
            )
        sns_signature_verify(payload)
    _topic_check(topic_arn if raw else payload.get("TopicArn"))
    if raw:
        return SmsInboundResult(kind=kind, opted_out=sms_inbound_record(message=payload))
    _timestamp_check(payload.get("Timestamp"))
    if kind == "SubscriptionConfirmation":
        topic, url = str(payload.get("TopicArn", "")), str(payload.get("SubscribeURL", ""))
        operator_alert_raise(
            key=f"sns-subscription:{topic}"[:128],
            level="warning",
            text=f"Confirm the SNS subscription of {topic} to Wharf's inbound SMS webhook: open {url}",
        )
        return SmsInboundResult(kind=kind)
    if kind == "UnsubscribeConfirmation":
        logger.warning("SNS unsubscribed the inbound SMS webhook from %s", payload.get("TopicArn"))
        return SmsInboundResult(kind=kind)
    try:
        message = json.loads(payload.get("Message") or "")
    except (TypeError, ValueError):
        raise SnsMessageError("Message: not the JSON of an inbound SMS.") from None
    if not isinstance(message, dict):
        raise SnsMessageError("Message: not the JSON of an inbound SMS.")
    return SmsInboundResult(kind=kind, opted_out=sms_inbound_record(message=message))


def _topic_check(topic: object) -> None:
    if not settings.SMS_SNS_TOPIC_ARNS:
        raise SnsMessageError("TopicArn: SMS_SNS_TOPIC_ARNS names no topic, so none is accepted.")
    if topic not in settings.SMS_SNS_TOPIC_ARNS:
        raise SnsMessageError(f"TopicArn: {topic!r} is not one of SMS_SNS_TOPIC_ARNS.")


def _timestamp_check(value: object) -> None:
    """Refuses a message SNS did not send within the last SMS_SNS_MAX_AGE_S: a replay."""
    try:
        sent = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SnsMessageError("Timestamp: not an ISO 8601 time such as 2026-01-31T09:00:00.000Z.") from None
    if timezone.is_naive(sent):
        raise SnsMessageError("Timestamp: has no time zone.")
    now = timezone.now()
    if sent < now - timedelta(seconds=settings.SMS_SNS_MAX_AGE_S):
        raise SnsMessageError(f"Timestamp: {value} is older than SMS_SNS_MAX_AGE_S; a replay is refused.")
    if sent > now + CLOCK_SKEW:
        raise SnsMessageError(f"Timestamp: {value} is in the future.")


def sms_inbound_record(*, message: dict) -> Contact | None:
    """An inbound SMS ({"originationNumber", "messageBody", ...}): the contact it opted out, if any."""
    origin, text = message.get("originationNumber"), message.get("messageBody")
    if not isinstance(origin, str) or not isinstance(text, str):
        raise SnsMessageError("Message: originationNumber and messageBody must be strings.")
    if not sms_keyword_is_opt_out(text):
        return None
    phones = {origin.strip()}  # AWS gives E.164, as contacts keep it; normalised too, in case
    with suppress(ValidationError):
        phones.add(phone_normalise(origin))
    contact = Contact.objects.filter(phone__in=phones).first()
    if contact is None:
        logger.info("an opt-out SMS came from a number no contact has")
        return None
    return contact_channel_opt_out(
        contact=contact,
        channel=Channel.SMS,
        reason=f"SMS {text.strip().upper()}"[:64],
        actor=None,
        source=AuditLog.Source.WEBHOOK,
    )
