"""SMS to one contact through AWS End User Messaging SMS (boto3's `pinpoint-sms-voice-v2`).

SMS_ENDPOINT_URL aims the client at the sandbox (devstack/sandbox/sms.py) under `make run` and in
tests; unset, at AWS in AWS_REGION with the usual credential chain. botocore's own retries are off:
whether and when to try again is the caller's decision, made from the ChannelError, so a message
whose answer was lost is never sent again behind its back.

AWS answers a destination on the account's opt-out list (it replied STOP) with ConflictException,
reason DESTINATION_PHONE_NUMBER_OPTED_OUT: the contact is then opted out of SMS here too.
"""

from __future__ import annotations

import logging

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from django.conf import settings

from contacts.models import Channel, Contact
from contacts.services.contact import contact_channel_opt_out
from core.aws import aws_client
from core.models import AuditLog
from messaging.channels.errors import ChannelError, contact_reachable_check

logger = logging.getLogger(__name__)

OPTED_OUT_REASON = "DESTINATION_PHONE_NUMBER_OPTED_OUT"
MESSAGE_TYPES = ("TRANSACTIONAL", "PROMOTIONAL")
# AWS error codes worth another try later (5xx are too, whatever their code).
RETRYABLE_CODES = {"ThrottlingException", "ServiceQuotaExceededException", "InternalServerException"}


def sms_client():
    """The process's client for AWS End User Messaging SMS, at SMS_ENDPOINT_URL when set (else AWS
    in AWS_REGION), with SMS_HTTP_TIMEOUT_S and one attempt per call."""
    return aws_client(
        "pinpoint-sms-voice-v2",
        endpoint_url=settings.SMS_ENDPOINT_URL,
        timeout_s=settings.SMS_HTTP_TIMEOUT_S,
        total_attempts=1,
    )


def sms_send(*, contact: Contact, text: str, reference: str, message_type: str | None = None) -> str:
    """Sends one SMS to contact.phone; returns AWS's MessageId.

    `message_type` is TRANSACTIONAL or PROMOTIONAL (default SMS_MESSAGE_TYPE); the origination
    identity (a phone number, sender id or pool) is SMS_ORIGINATION_IDENTITY, else AWS's choice.
    """
    contact_reachable_check(contact=contact, channel=Channel.SMS)
    message_type = (message_type or settings.SMS_MESSAGE_TYPE).upper()
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"message_type must be one of {', '.join(MESSAGE_TYPES)}, not {message_type!r}")
    if not text.strip():
        raise ChannelError(code="invalid", title="The SMS is empty.", retryable=False)
    request = {
        "DestinationPhoneNumber": contact.phone,
        "MessageBody": text,
        "MessageType": message_type,
        "Context": {"reference": str(reference)},
    }
    if settings.SMS_ORIGINATION_IDENTITY:
        request["OriginationIdentity"] = settings.SMS_ORIGINATION_IDENTITY
    if settings.SMS_CONFIGURATION_SET:
        request["ConfigurationSetName"] = settings.SMS_CONFIGURATION_SET
    try:
        answer = sms_client().send_text_message(**request)
    except ClientError as error:
        channel_error = _client_error(error)
        if channel_error.code == OPTED_OUT_REASON:
            _opt_out_follow(contact)
        raise channel_error from error
    except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as error:
        # Refused or unresolved: nothing left. Closed or timed out while waiting: it may have.
        left = not isinstance(error, EndpointConnectionError)
        raise ChannelError(
            code="timeout" if isinstance(error, ReadTimeoutError) else "connection",
            title="AWS End User Messaging SMS did not answer.",
            detail=str(error),
            retryable=True,
            request_left=left,
        ) from error
    except BotoCoreError as error:
        raise ChannelError(
            code="connection",
            title="The SMS could not be sent.",
            detail=str(error),
            retryable=True,
            request_left=True,
        ) from error
    return answer["MessageId"]


def _client_error(error: ClientError) -> ChannelError:
    code = error.response.get("Error", {}).get("Code", "") or "UnknownError"
    message = error.response.get("Error", {}).get("Message", "")
    reason = error.response.get("Reason", "") or ""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if reason == OPTED_OUT_REASON:
        return ChannelError(
            code=OPTED_OUT_REASON,
            title="The phone number opted out of SMS (it replied STOP).",
            detail=message,
            retryable=False,
        )
    return ChannelError(
        code=code,
        title=f"AWS End User Messaging SMS refused the message ({code}{f', {reason}' if reason else ''}).",
        detail=message,
        retryable=code in RETRYABLE_CODES or status >= 500,
    )


def _opt_out_follow(contact: Contact) -> None:
    """AWS's opt-out list said this number replied STOP: ours says so too."""
    contact_channel_opt_out(
        contact=contact,
        channel=Channel.SMS,
        reason="provider opt-out list",
        actor=None,
        source=AuditLog.Source.SYSTEM,
    )
