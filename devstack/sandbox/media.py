"""Meta's media endpoints: upload, retrieve the URL, download with the token, delete; and
`GET /{id}` for a template's or a phone number's id too (numbers.py), as the Graph API reads any
object by its id. Like Meta's,
each answers with or without the version in the path.

The download URL mimics Meta's lookaside URL: it carries the media id, an expiry five minutes
ahead and a hash over both, and it still wants the bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import Blueprint, Response, current_app, request, url_for

from devstack.sandbox.calls import graph_call, phone_number_check, sandbox_outbox, sandbox_state
from devstack.sandbox.errors import GraphApiError, invalid_parameter, unknown_object
from devstack.sandbox.numbers import number_as_meta, number_fields
from devstack.sandbox.outbox import template_fields
from devstack.sandbox.state import UPLOADED_MEDIA_TTL

blueprint = Blueprint("media", __name__)

DOWNLOAD_URL_TTL_S = 300

_MB = 1024 * 1024
# The types Meta accepts for upload, with its size limit for each.
UPLOAD_LIMITS = {
    "audio/aac": 16 * _MB,
    "audio/amr": 16 * _MB,
    "audio/mpeg": 16 * _MB,
    "audio/mp4": 16 * _MB,
    "audio/ogg": 16 * _MB,
    "text/plain": 100 * _MB,
    "application/pdf": 100 * _MB,
    "application/msword": 100 * _MB,
    "application/vnd.ms-excel": 100 * _MB,
    "application/vnd.ms-powerpoint": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": 100 * _MB,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": 100 * _MB,
    "image/jpeg": 5 * _MB,
    "image/png": 5 * _MB,
    "image/webp": 500 * 1024,
    "video/3gpp": 16 * _MB,
    "video/mp4": 16 * _MB,
}


@blueprint.post("/<version:version>/<phone_number_id>/media")
@blueprint.post("/<phone_number_id>/media", defaults={"version": ""})
@graph_call("media_upload")
def media_upload(version: str, phone_number_id: str):
    phone_number_check(phone_number_id)
    if request.form.get("messaging_product") != "whatsapp":
        raise invalid_parameter("The parameter messaging_product is required.")
    upload = request.files.get("file")
    if upload is None:
        raise invalid_parameter("The parameter file is required.")
    mime_type = mime_base(request.form.get("type") or upload.mimetype or "")
    if mime_type not in UPLOAD_LIMITS:
        raise invalid_parameter(
            f"Param file must be a file with one of the following types: {', '.join(UPLOAD_LIMITS)}. "
            f"Received file of type '{mime_type}'."
        )
    content = upload.read()
    if len(content) > UPLOAD_LIMITS[mime_type]:
        raise GraphApiError(
            400,
            131053,
            "(#131053) Media upload error",
            details=f"File of {len(content)} bytes is over the {UPLOAD_LIMITS[mime_type]} bytes allowed "
            f"for {mime_type}.",
        )
    media = sandbox_state().media_add(
        content=content,
        mime_type=mime_type,
        phone_number_id=phone_number_id,
        filename=upload.filename or "",
        ttl=UPLOADED_MEDIA_TTL,
    )
    return {"id": media.id}


@blueprint.get("/<version:version>/<media_id>")
@blueprint.get("/<media_id>", defaults={"version": ""})
@graph_call("media_info")
def media_info(version: str, media_id: str):
    media = sandbox_state().media_get(media_id)
    if media is None and (template := sandbox_outbox().template_get(media_id)) is not None:
        return template.as_meta(template_fields(request.args.get("fields")))
    if media is None and sandbox_outbox().number_known(media_id):
        return number_as_meta(media_id, number_fields(request.args.get("fields")))
    owner = request.args.get("phone_number_id")
    if media is None or (owner and owner != media.phone_number_id):
        raise unknown_object(media_id)
    expires = int(time.time()) + DOWNLOAD_URL_TTL_S
    url = url_for(
        "media.media_download",
        mid=media.id,
        ext=expires,
        hash=_url_hash(media.id, expires),
        _external=True,
    )
    return {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "file_size": media.file_size,
        "id": media.id,
    }


@blueprint.delete("/<version:version>/<media_id>")
@blueprint.delete("/<media_id>", defaults={"version": ""})
@graph_call("media_delete")
def media_delete(version: str, media_id: str):
    if not sandbox_state().media_delete(media_id):
        raise unknown_object(media_id)
    return {"success": True}


@blueprint.get("/whatsapp_business/attachments/")
@graph_call("media_download")
def media_download():
    media_id = request.args.get("mid", "")
    expires = request.args.get("ext", "")
    given_hash = request.args.get("hash", "")
    valid = expires.isdigit() and hmac.compare_digest(given_hash, _url_hash(media_id, int(expires)))
    if not valid or int(expires) < time.time():
        raise GraphApiError(404, 100, "The media URL is invalid or has expired; ask for a new one.")
    state = sandbox_state()
    media = state.media_get(media_id)
    if media is None:
        raise unknown_object(media_id)
    content = media.content
    if state.corrupt_take():
        content = bytes([content[0] ^ 0xFF]) + content[1:] if content else b"\x00"
    return Response(content, mimetype=media.mime_type)


def mime_base(mime_type: str) -> str:
    """`audio/ogg; codecs=opus` → `audio/ogg`."""
    return mime_type.split(";", 1)[0].strip().lower()


def _url_hash(media_id: str, expires: int) -> str:
    key = current_app.extensions["sandbox_url_key"]
    return hmac.new(key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]
