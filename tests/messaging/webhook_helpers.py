"""Signed webhook bodies as Meta sends them, for the inbound tests."""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.test import Client

from config.celery import app as celery_app
from core.aws import sqs_client
from core.queues import QueueState
from tests.platform.conftest import receive_all

WEBHOOK_URL = "/webhooks/whatsapp/"
PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"


def sign(body: bytes, secret: str | None = None) -> str:
    key = (secret if secret is not None else settings.WHATSAPP_APP_SECRET).encode()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def webhook_post(client: Client, body: bytes, *, signature: str | None = "sign"):
    """POST a raw body; signature="sign" signs it with the app secret, None sends no header."""
    headers = {}
    if signature is not None:
        headers["X-Hub-Signature-256"] = sign(body) if signature == "sign" else signature
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", headers=headers)


def envelope(value: dict[str, Any], *, field: str = "messages") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field}]}],
    }


def text_message(
    *,
    wamid: str,
    text: str,
    wa_id: str = "447700900123",
    name: str = "Ada Lovelace",
    timestamp: int = 1767225600,
) -> dict[str, Any]:
    """A text message from a user, as in Meta's "messages" webhook reference."""
    return envelope(
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": str(timestamp),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
    )


def text_body(**kwargs: Any) -> bytes:
    return json.dumps(text_message(**kwargs)).encode()


def status_body(*, wamid: str, status: str, timestamp: int, wa_id: str = "447700900123", error=None) -> bytes:
    """A status of an outbound message, as in Meta's "messages" webhook reference; `error` is a
    (code, title) for a failed one."""
    update: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": wa_id,
    }
    if error is not None:
        code, title = error
        update["errors"] = [{"code": code, "title": title, "message": title}]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": [update],
    }
    return json.dumps(envelope(value)).encode()


def _pools_forget() -> None:
    """Drop the app's pools; the next publish looks them up again in kombu's registry, which keys
    them by broker URL and transport options, so each configuration keeps pools of its own."""
    celery_app._pool = None
    if (amqp := celery_app.__dict__.get("amqp")) is not None:
        amqp._producer_pool = None


@contextmanager
def celery_publishing_to(*, queue_prefix: str, broker_url: str | None = None) -> Iterator[None]:
    """Make the app publish (as the webhook's wake does) to the queues named with `queue_prefix`,
    on another SQS server if `broker_url` is given; the app's own settings come back afterwards."""
    conf = celery_app.conf
    saved = conf.broker_url, conf.broker_transport_options
    conf.broker_url = broker_url or saved[0]
    conf.broker_transport_options = {**saved[1], "queue_name_prefix": queue_prefix}
    _pools_forget()
    try:
        yield
    finally:
        conf.broker_url, conf.broker_transport_options = saved
        _pools_forget()


def queue_depth(state: QueueState) -> int:
    attributes = sqs_client().get_queue_attributes(
        QueueUrl=state.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def queued_tasks(state: QueueState) -> list[tuple[str, list, dict]]:
    """(task name, args, kwargs) of every message in a queue, consumed, decoded from kombu's envelope."""
    tasks = []
    for message in receive_all(state.url):
        envelope = json.loads(base64.b64decode(message["Body"]))
        args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        tasks.append((envelope["headers"]["task"], args, kwargs))
    return tasks
