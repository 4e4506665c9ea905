"""Signed webhook bodies as Meta sends them, for the inbound tests."""

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.test import Client

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
