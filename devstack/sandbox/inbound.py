"""`POST /sandbox/inbound`: a WhatsApp user writes to one of the business's numbers. None of this
exists at Meta: it is how people and tests make the sandbox post what Meta would, a signed
`messages` webhook, to the configured webhook URL.

Body: `{"from": "+447400123456", "text": "Hello", "name": "Ada", "phone_number_id": "..."}`
(`name` and `phone_number_id` optional: the sandbox's own number by default). The user's 24-hour
window with the business opens, as writing opens it at Meta, and the message can be marked read.
Answers `{"wamid", "webhook_status"}`: the id of the message and what the webhook answered; 502
when the webhook could not be reached.
"""

from __future__ import annotations

import time

import httpx
from flask import Blueprint, request

from devstack.sandbox import payloads
from devstack.sandbox.calls import sandbox_outbox
from devstack.sandbox.errors import GraphApiError, invalid_parameter

blueprint = Blueprint("inbound", __name__, url_prefix="/sandbox")

TEXT_MAX = 4096


@blueprint.post("/inbound")
def inbound_post():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid_parameter("Send the message as a JSON object.")
    wa_id = payloads.wa_id_from_phone(str(body.get("from", "")))
    if not wa_id:
        raise invalid_parameter("Param from must be the user's phone number.")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > TEXT_MAX:
        raise invalid_parameter(f"Param text must be 1 to {TEXT_MAX} characters.")
    outbox = sandbox_outbox()
    settings = outbox.settings
    if not settings.webhook_url or not settings.app_secret:
        raise invalid_parameter("Set webhook_url and app_secret (POST /sandbox/config) first.")
    phone_number_id = str(body.get("phone_number_id") or payloads.DEFAULT_PHONE_NUMBER_ID)
    message = payloads.text_message(wa_id=wa_id, text=text)
    webhook = payloads.messages_body(
        messages=[message],
        profile_name=str(body.get("name", "")),
        phone_number_id=phone_number_id,
        display_phone_number=outbox.display_phone_number(phone_number_id),
        waba_id=outbox.waba_id(phone_number_id),
    )
    outbox.configure({"last_inbound": settings.last_inbound | {wa_id: time.time()}})
    outbox.wamid_record(wamid=message["id"], direction="inbound", phone_number_id=phone_number_id)
    try:
        answer = payloads.webhook_post(url=settings.webhook_url, body=webhook, app_secret=settings.app_secret)
    except httpx.HTTPError as error:
        raise GraphApiError(502, 1, f"The webhook could not be reached: {error}") from error
    return {"wamid": message["id"], "webhook_status": answer.status_code}
