"""Meta's send endpoint: `POST /{version}/{phone_number_id}/messages`, a message or a mark-as-read.

The body (JSON, or form-encoded with JSON values as the Graph API takes it) is checked as Meta
checks it (validation.py), then against what the sandbox holds (its numbers, templates, the
limits, the window: outbox.py); an accepted message is answered with its wamid and its statuses
are posted later (statuses.py). A dropped-connection fault closes the socket after the message
was accepted, so the client never learns the wamid of a message that was sent.

What Meta finds only while delivering fails the accepted message later, in a `failed` status, as
at Meta: a medium given by `link` is fetched off the request (a link that does not answer 200
with a type and size WhatsApp takes for that kind fails with 131053, Media upload error; what was
fetched, type, size and sha256, is kept with the send in the stats), and a reaction to a message
the number never sent or received fails with 131009. A mark-as-read is refused at once unless its
wamid is of a message the number received.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from flask import Blueprint, current_app, request

from devstack.sandbox.calls import (
    graph_call,
    phone_number_check,
    sandbox_outbox,
    sandbox_state,
    sandbox_statuses,
)
from devstack.sandbox.errors import GraphApiError, invalid_parameter
from devstack.sandbox.media import UPLOAD_LIMITS, mime_base
from devstack.sandbox.outbox import ERROR_DOCS, FAILED_TITLES, Accepted, Outbox
from devstack.sandbox.statuses import StatusDispatcher, StatusPlan
from devstack.sandbox.validation import (
    MEDIA_KINDS,
    message_check,
    not_valid,
    read_check,
    template_parameters_check,
)

blueprint = Blueprint("messages", __name__)


@blueprint.post("/<version:version>/<phone_number_id>/messages")
@blueprint.post("/<phone_number_id>/messages", defaults={"version": ""})
@graph_call("messages")
def messages_send(version: str, phone_number_id: str):
    arrived = time.monotonic()
    outbox = sandbox_outbox()
    body = _request_body()
    if not isinstance(body, dict):
        raise invalid_parameter("Send the message as a JSON object.")
    phone_number_check(phone_number_id)
    outbox.fault_5xx()
    if body.get("status") == "read":
        wamid = read_check(body)
        known = outbox.wamid_known(wamid)
        if (
            known is None
            or known.direction != "inbound"
            or known.phone_number_id not in ("", phone_number_id)
        ):
            raise invalid_parameter(
                "Param message_id must be the wamid of a message this number received.",
                details=f"Message {wamid} was not received by phone number {phone_number_id}.",
            )
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
    )
    statuses = sandbox_statuses()
    if link:
        _link_fetchers().submit(
            _link_deliver, outbox, statuses, phone_number_id, accepted, checked.callback, checked.kind, link
        )
    else:
        failure = None
        if checked.kind == "reaction" and outbox.wamid_known(body["reaction"]["message_id"]) is None:
            failure = not_valid(
                f"The message reacted to ({body['reaction']['message_id']}) was neither sent nor received "
                "by this number, or is over 30 days old."
            )
        _statuses_schedule(outbox, statuses, phone_number_id, accepted, checked.callback, failure=failure)
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


def _request_body() -> object:
    """The JSON body, or a form-encoded one with each value read as the Graph API reads it: JSON
    objects, arrays and booleans as such, anything else as a string."""
    if not request.form:
        return request.get_json(silent=True, force=True)
    body: dict = {}
    for key, value in request.form.items():
        body[key] = value
        if value[:1] in ("{", "[") or value in ("true", "false"):
            with contextlib.suppress(ValueError):
                body[key] = json.loads(value)
    return body


def _link_fetchers() -> ThreadPoolExecutor:
    return current_app.extensions["sandbox_link_fetchers"]


def _link_deliver(
    outbox: Outbox,
    statuses: StatusDispatcher,
    phone_number_id: str,
    accepted: Accepted,
    callback: str,
    kind: str,
    link: str,
) -> None:
    """Fetch an accepted message's medium as Meta does to deliver it, then schedule its statuses:
    the usual ones, or a failed status with 131053 when the link cannot be used."""
    failure = None
    try:
        outbox.media_record(wamid=accepted.wamid, media=_media_fetch(kind, link))
    except GraphApiError as error:
        failure = error
    _statuses_schedule(outbox, statuses, phone_number_id, accepted, callback, failure=failure)


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


def _statuses_schedule(
    outbox: Outbox,
    statuses: StatusDispatcher,
    phone_number_id: str,
    accepted: Accepted,
    callback: str,
    *,
    failure: GraphApiError | None = None,
) -> None:
    """Plan an accepted message's statuses: sent, delivered, read at their delays, or one failed
    status with `failure`'s code (or the code `fail_after_accept` names for the recipient)."""
    settings = outbox.settings
    if not settings.statuses or not settings.webhook_url:
        return
    delays = settings.status_delays_ms
    failed_code = settings.fail_after_accept.get(accepted.wa_id)
    errors = None
    if failure is not None or failed_code is not None:
        code = failure.code if failure is not None else failed_code
        details = (
            failure.details
            if failure is not None
            else f"The sandbox fails messages to {accepted.wa_id} with {failed_code}."
        )
        steps = [("failed", (delays.get("sent") or 0) / 1000)]
        title = FAILED_TITLES.get(code, "Message failed to send")
        errors = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": details},
                "href": ERROR_DOCS,
            }
        ]
    else:
        steps = []
        for name in ("sent", "delivered", "read"):
            if delays.get(name) is None:
                break
            steps.append((name, delays[name] / 1000))
    statuses.schedule(
        StatusPlan(
            url=settings.webhook_url,
            app_secret=settings.app_secret,
            phone_number_id=phone_number_id,
            display_phone_number=outbox.display_phone_number(phone_number_id),
            waba_id=outbox.waba_id(phone_number_id),
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
