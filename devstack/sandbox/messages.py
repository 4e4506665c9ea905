"""Meta's send endpoint: `POST /{version}/{phone_number_id}/messages`, a message or a mark-as-read.

The body is checked as Meta checks it (validation.py), then against what the sandbox holds
(templates, the limits, the window: outbox.py); an accepted message is answered with its wamid and
its statuses are posted later (statuses.py). A dropped-connection fault closes the socket after the
message was accepted, so the client never learns the wamid of a message that was sent.

A medium given by `link` is fetched over HTTP before the message is accepted, as Meta fetches it to
deliver it; a link that does not answer 200 with a type and size WhatsApp takes for that kind is
answered 131053 (Media upload error), and what was fetched (type, size, sha256) is kept with the
accepted send in the stats.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time

import httpx
from flask import Blueprint, current_app, request

from devstack.sandbox.calls import graph_call, sandbox_state
from devstack.sandbox.errors import GraphApiError, invalid_parameter
from devstack.sandbox.media import UPLOAD_LIMITS, mime_base
from devstack.sandbox.outbox import ERROR_DOCS, FAILED_TITLES, Outbox
from devstack.sandbox.statuses import StatusDispatcher, StatusPlan
from devstack.sandbox.validation import MEDIA_KINDS, message_check, read_check, template_parameters_check

blueprint = Blueprint("messages", __name__)


def sandbox_outbox() -> Outbox:
    return current_app.extensions["sandbox_outbox"]


def sandbox_statuses() -> StatusDispatcher:
    return current_app.extensions["sandbox_statuses"]


@blueprint.post("/<version:version>/<phone_number_id>/messages")
@graph_call("messages")
def messages_send(version: str, phone_number_id: str):
    arrived = time.monotonic()
    outbox = sandbox_outbox()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid_parameter("Send the message as a JSON object.")
    outbox.fault_5xx()
    if body.get("status") == "read":
        wamid = read_check(body)
        outbox.read_record(wamid=wamid, typing="typing_indicator" in body)
        return {"success": True}
    checked = message_check(body)
    media_id = body[checked.kind].get("id") if checked.kind in MEDIA_KINDS else None
    if media_id and sandbox_state().media_get(media_id) is None:
        raise invalid_parameter(
            f"Param {checked.kind}['id'] is not a media id this number uploaded (or it expired).",
            details=f"Unknown media id {media_id}.",
        )
    link = body[checked.kind].get("link") if checked.kind in MEDIA_KINDS else None
    media = _media_fetch(checked.kind, link) if link else None
    category = "service"
    if checked.kind == "template":
        template = outbox.template_find(
            phone_number_id=phone_number_id, name=checked.template_name, language=checked.template_language
        )
        if template is None or template.status not in ("APPROVED", "PAUSED", "DISABLED"):
            raise GraphApiError(
                404,
                132001,
                "(#132001) Template name does not exist in the translation",
                details=f"template name ({checked.template_name}) does not exist in "
                f"{checked.template_language}",
            )
        if template.status == "PAUSED":
            raise GraphApiError(400, 132015, "(#132015) Template is paused", details=template.name)
        if template.status == "DISABLED":
            raise GraphApiError(400, 132016, "(#132016) Template is disabled", details=template.name)
        template_parameters_check(template.components, checked.template_components)
        category = template.category.lower()
    accepted = outbox.admit(
        phone_number_id=phone_number_id,
        wa_id=checked.wa_id,
        to=checked.to,
        kind=checked.kind,
        callback=checked.callback,
        category=category,
        arrived=arrived,
        media=media,
    )
    _statuses_schedule(outbox, phone_number_id, accepted, checked.callback)
    answer: dict = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": checked.to, "wa_id": accepted.wa_id}],
        "messages": [{"id": accepted.wamid}],
    }
    if checked.kind == "template":
        answer["messages"][0]["message_status"] = "accepted"
    if accepted.drop:
        _connection_drop()
    return answer


LINK_FETCH_TIMEOUT_S = 20
# The types each kind takes (sticker: webp only); sizes are UPLOAD_LIMITS'.
_LINK_TYPES = {
    "image": ("image/jpeg", "image/png"),
    "video": ("video/",),
    "audio": ("audio/",),
    "document": ("text/", "application/"),
    "sticker": ("image/webp",),
}


def _media_fetch(kind: str, link: str) -> dict:
    """GET a medium's link as Meta would; 131053 when it cannot be used."""

    def refused(details: str) -> GraphApiError:
        return GraphApiError(400, 131053, "(#131053) Media upload error", details=details)

    digest, size = hashlib.sha256(), 0
    try:
        with httpx.stream("GET", link, timeout=LINK_FETCH_TIMEOUT_S, follow_redirects=True) as answer:
            if answer.status_code != 200:
                raise refused(
                    f"Downloading the media from {link.split('?')[0]} answered {answer.status_code}."
                )
            mime_type = mime_base(answer.headers.get("content-type", ""))
            limit = UPLOAD_LIMITS.get(mime_type)
            if limit is None or not mime_type.startswith(_LINK_TYPES[kind]):
                raise refused(f"Media of type {mime_type or 'unknown'} cannot be sent as {kind}.")
            for chunk in answer.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise refused(f"The media is over the {limit} bytes allowed for {mime_type}.")
                digest.update(chunk)
    except httpx.HTTPError as error:
        raise refused(f"Downloading the media failed: {type(error).__name__}.") from None
    return {"mime_type": mime_type, "size": size, "sha256": digest.hexdigest()}


def _statuses_schedule(outbox: Outbox, phone_number_id: str, accepted, callback: str) -> None:
    settings = outbox.settings
    if not settings.statuses or not settings.webhook_url:
        return
    delays = settings.status_delays_ms
    failed_code = settings.fail_after_accept.get(accepted.wa_id)
    errors = None
    if failed_code is not None:
        steps = [("failed", (delays.get("sent") or 0) / 1000)]
        title = FAILED_TITLES.get(failed_code, "Message failed to send")
        errors = [
            {
                "code": failed_code,
                "title": title,
                "message": title,
                "error_data": {
                    "details": f"The sandbox fails messages to {accepted.wa_id} with {failed_code}."
                },
                "href": ERROR_DOCS,
            }
        ]
    else:
        steps = []
        for name in ("sent", "delivered", "read"):
            if delays.get(name) is None:
                break
            steps.append((name, delays[name] / 1000))
    sandbox_statuses().schedule(
        StatusPlan(
            url=settings.webhook_url,
            app_secret=settings.app_secret,
            phone_number_id=phone_number_id,
            display_phone_number=settings.display_phone_number(phone_number_id),
            waba_id=settings.waba_id(phone_number_id),
            wamid=accepted.wamid,
            recipient_id=accepted.wa_id,
            steps=steps,
            callback=callback,
            conversation=accepted.conversation,
            pricing=accepted.pricing,
            errors=errors,
            batch_max=settings.status_batch_max,
        )
    )


def _connection_drop() -> None:
    """Shut the client's connection without an answer; the server then finds the pipe broken and moves on."""
    connection = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
