"""AWS End User Messaging SMS, as boto3's `pinpoint-sms-voice-v2` client speaks to it: the sandbox.

`POST /sms/` speaks AWS's JSON 1.0 protocol: the operation in `X-Amz-Target`
(`PinpointSMSVoiceV2.SendTextMessage`, the only one here), a JSON body, `{"MessageId": ...}` back,
and errors as `{"__type": "ValidationException", "Message": ..., "Reason": ...}` with AWS's HTTP
status, which botocore turns into ClientError. Requests must be SigV4-signed (any credentials: the
signature is not checked), as boto3's are.

Accepted messages are counted per destination; a destination on the opt-out list (it sent STOP)
gets ConflictException with reason DESTINATION_PHONE_NUMBER_OPTED_OUT, as at AWS. Controls, under
`/sandbox/sms/`:
- `GET|POST /sandbox/sms/config`: `{"webhook_url", "failing": {number: error code},
  "opted_out": [numbers], "keywords": [opt-out keywords]}`; each key given replaces that setting.
- `POST /sandbox/sms/reset`: settings, counts and the opt-out list as the process started.
- `POST /sandbox/sms/inbound` `{"from", "to", "text"}`: an SMS from a phone, posted to the webhook
  URL as SNS posts inbound SMS (a Notification whose Message is AWS's inbound SMS JSON; basic auth
  when the URL holds credentials); an opt-out keyword also puts the number on the opt-out list.
  Answers the post's HTTP status.
- `GET /sandbox/sns/cert.pem`: the certificate of the key that signs those posts, as SNS signs its
  messages; `POST /sandbox/sns/sign` signs any SNS message (for tests of other message types).
Counts show in `GET /sandbox/stats` under "sms"; `DELETE /sandbox/stats` and `/sandbox/reset` clear them.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import Counter, deque
from datetime import UTC, datetime

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from flask import Blueprint, Response, current_app, request

TARGET_PREFIX = "PinpointSMSVoiceV2."
OPTED_OUT_REASON = "DESTINATION_PHONE_NUMBER_OPTED_OUT"
DEFAULT_KEYWORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET", "OPTOUT")
ERROR_STATUS = {
    "ValidationException": 400,
    "ConflictException": 400,
    "ThrottlingException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 400,
    "ResourceNotFoundException": 400,
    "UnknownOperationException": 400,
    "SerializationException": 400,
    "MissingAuthenticationTokenException": 403,
    "InternalServerException": 500,
}
MESSAGES_KEPT = 10_000
# The topic the sandbox publishes inbound SMS to; `make run` lets Wharf accept only it.
INBOUND_TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:wharf-sandbox-inbound-sms"
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_E164 = re.compile(r"\+[1-9]\d{1,14}")

blueprint = Blueprint("sms", __name__)


class AwsError(Exception):
    def __init__(self, code: str, message: str, **fields: str):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields

    def response(self) -> Response:
        body = {"__type": self.code, "Message": self.message, **self.fields}
        return _json(body, status=ERROR_STATUS.get(self.code, 400))


class SnsSigner:
    """Signs messages as SNS does (SignatureVersion 2, SHA256withRSA) with a key made at start-up,
    whose self-signed certificate `GET /sandbox/sns/cert.pem` serves."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.sandbox.local")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now.replace(year=now.year + 10))
            .sign(self._key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict, *, cert_url: str) -> dict:
        fields = NOTIFICATION_FIELDS if message.get("Type") == "Notification" else CONFIRMATION_FIELDS
        text = "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None)
        signature = self._key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
        return message | {
            "SignatureVersion": "2",
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": cert_url,
        }


class SmsOutbox:
    """What the SMS service holds: settings, counts, the opt-out list, the last messages."""

    def __init__(self, webhook_url: str = "") -> None:
        self._lock = threading.Lock()
        self._initial_webhook_url = webhook_url
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.webhook_url = self._initial_webhook_url
            self.failing: dict[str, str] = {}
            self.opted_out: set[str] = set()
            self.keywords = set(DEFAULT_KEYWORDS)
        self.counters_reset()

    def counters_reset(self) -> None:
        with self._lock:
            self.accepted: Counter[str] = Counter()
            self.refused: Counter[str] = Counter()
            self.inbound_count = 0
            self.messages: deque[dict] = deque(maxlen=MESSAGES_KEPT)

    def configure(self, changes: dict) -> None:
        with self._lock:
            for key, value in changes.items():
                if key == "webhook_url" and isinstance(value, str):
                    self.webhook_url = value
                elif key == "failing" and isinstance(value, dict):
                    unknown = [code for code in value.values() if code not in ERROR_STATUS]
                    if unknown:
                        raise AwsError(
                            "ValidationException", f"Unknown error code {unknown[0]!r} in 'failing'."
                        )
                    self.failing = {str(number): str(code) for number, code in value.items()}
                elif key == "opted_out" and isinstance(value, list):
                    self.opted_out = {str(number) for number in value}
                elif key == "keywords" and isinstance(value, list):
                    self.keywords = {str(word).upper() for word in value}
                else:
                    raise AwsError("ValidationException", f"Invalid SMS sandbox setting {key!r}.")

    def settings(self) -> dict:
        """The settings, a password in the webhook URL shown only as being there."""
        with self._lock:
            return {
                "webhook_url": re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1<set>@", self.webhook_url),
                "failing": dict(self.failing),
                "opted_out": sorted(self.opted_out),
                "keywords": sorted(self.keywords),
            }

    def send(self, body: dict) -> str:
        to = body.get("DestinationPhoneNumber")
        text = body.get("MessageBody")
        if not isinstance(to, str) or not _E164.fullmatch(to):
            raise AwsError(
                "ValidationException",
                "DestinationPhoneNumber must be a phone number in E.164 format.",
                Reason="INVALID_PARAMETER",
            )
        if not isinstance(text, str) or not 1 <= len(text) <= 1600:
            raise AwsError(
                "ValidationException",
                "MessageBody must have 1 to 1600 characters.",
                Reason="INVALID_PARAMETER",
            )
        if body.get("MessageType", "TRANSACTIONAL") not in ("TRANSACTIONAL", "PROMOTIONAL"):
            raise AwsError("ValidationException", "Invalid MessageType.", Reason="INVALID_PARAMETER")
        with self._lock:
            if to in self.opted_out:
                self.refused[OPTED_OUT_REASON] += 1
                raise AwsError(
                    "ConflictException",
                    f"The destination phone number {to} is opted out.",
                    Reason=OPTED_OUT_REASON,
                    ResourceType="opt-out-list",
                    ResourceId="Default",
                )
            if code := self.failing.get(to):
                self.refused[code] += 1
                raise AwsError(code, f"The sandbox fails messages to {to} with {code}.")
            message_id = str(uuid.uuid4())
            self.accepted[to] += 1
            self.messages.append(
                {
                    "message_id": message_id,
                    "to": to,
                    "body": text,
                    "type": body.get("MessageType", "TRANSACTIONAL"),
                    "origination": body.get("OriginationIdentity", ""),
                    "context": body.get("Context") or {},
                }
            )
        return message_id

    def inbound(self, *, origin: str, destination: str, text: str) -> dict:
        """The SNS notification for an SMS from `origin`; an opt-out keyword opts the number out."""
        keyword = text.strip().upper()
        with self._lock:
            self.inbound_count += 1
            if keyword in self.keywords:
                self.opted_out.add(origin)
        message = {
            "originationNumber": origin,
            "destinationNumber": destination,
            "messageKeyword": f"KEYWORD_{keyword}" if keyword in self.keywords else "",
            "messageBody": text,
            "inboundMessageId": str(uuid.uuid4()),
            "previousPublishedMessageId": "",
        }
        return {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": INBOUND_TOPIC_ARN,
            "Message": json.dumps(message),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "UnsubscribeURL": "",
        }

    def stats(self, *, summary: bool = False) -> dict:
        with self._lock:
            stats = {
                "accepted": sum(self.accepted.values()),
                "by_destination": dict(self.accepted),
                "refused": dict(self.refused),
                "inbound": self.inbound_count,
            }
            if not summary:
                stats["messages"] = list(self.messages)
            return stats


def sms_outbox() -> SmsOutbox:
    return current_app.extensions["sandbox_sms"]


def sns_signer() -> SnsSigner:
    return current_app.extensions["sandbox_sns_signer"]


def _signed(message: dict) -> dict:
    return sns_signer().sign(message, cert_url=f"{request.host_url}sandbox/sns/cert.pem")


def _json(body: dict, *, status: int = 200) -> Response:
    answer = Response(json.dumps(body), status=status, content_type="application/x-amz-json-1.0")
    answer.headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return answer


@blueprint.post("/sms")
@blueprint.post("/sms/")
def sms_call():
    try:
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token")
        target = request.headers.get("X-Amz-Target", "")
        if target != f"{TARGET_PREFIX}SendTextMessage":
            raise AwsError(
                "UnknownOperationException", f"The sandbox does not know the operation {target!r}."
            )
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            raise AwsError("SerializationException", "The body is not JSON.") from None
        if not isinstance(body, dict):
            raise AwsError("SerializationException", "The body is not a JSON object.")
        return _json({"MessageId": sms_outbox().send(body)})
    except AwsError as error:
        return error.response()


@blueprint.get("/sandbox/sms/config")
def sms_config_show():
    return sms_outbox().settings()


@blueprint.post("/sandbox/sms/config")
def sms_config_change():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return AwsError("ValidationException", "Send the settings as a JSON object.").response()
    try:
        sms_outbox().configure(body)
    except AwsError as error:
        return error.response()
    return sms_outbox().settings()


@blueprint.post("/sandbox/sms/reset")
def sms_reset():
    sms_outbox().reset()
    return sms_outbox().settings()


@blueprint.post("/sandbox/sms/inbound")
def sms_inbound():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not all(isinstance(body.get(key), str) for key in ("from", "text")):
        return AwsError("ValidationException", 'Send {"from": "+...", "text": "..."} as JSON.').response()
    outbox = sms_outbox()
    notification = _signed(
        outbox.inbound(origin=body["from"], destination=str(body.get("to", "")), text=body["text"])
    )
    url = outbox.webhook_url
    if not url:
        return {"posted": False, "notification": notification}
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",  # as SNS posts it
        "x-amz-sns-message-type": "Notification",
        "x-amz-sns-message-id": notification["MessageId"],
        "x-amz-sns-topic-arn": notification["TopicArn"],
    }
    try:
        response = httpx.post(url, content=json.dumps(notification), headers=headers, timeout=10)
    except httpx.HTTPError as error:
        return {"posted": False, "error": repr(error), "notification": notification}, 502
    return {"posted": True, "status": response.status_code, "notification": notification}


@blueprint.get("/sandbox/sns/cert.pem")
def sns_certificate():
    return Response(sns_signer().certificate_pem, content_type="application/x-pem-file")


@blueprint.post("/sandbox/sns/sign")
def sns_sign():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("Type"), str):
        return AwsError("ValidationException", "Send an SNS message with its Type as JSON.").response()
    return _signed(body)
