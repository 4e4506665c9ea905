"""The sandbox's own controls under `/sandbox/`, for people and tests: none of this exists at Meta.

- `GET /sandbox/health`
- `POST /sandbox/media`: media as a WhatsApp user would send it (any type; the id works for 7 days),
  a multipart `file` or a raw body with its Content-Type; answers with the id and its sha256.
- `POST /sandbox/media/<id>/expire`: the id stops working, as it would after 7 days.
- `GET|POST|DELETE /sandbox/faults`: read, add or clear injected faults. A POST takes
  `{"media_5xx": n}` (the next n media calls answer 500), `{"errors": [{"route", "status", "code",
  "message", "details", "times"}]}`, `{"latency_ms": ms}` and `{"corrupt_downloads": n}`.
- `GET|POST /sandbox/config`: how messages are answered (outbox.OutboundSettings: rate limits,
  pair spacing, undeliverable and failing recipients, the 24-hour window, the webhook URL and
  secret, status delays, the 5xx and dropped-connection faults; `latency_ms` too). Each key given
  replaces that setting; the answer is all of them.
- `GET /sandbox/stats`: what was sent and refused, and the messages marked read (`reads`, and the
  latest wamids in `read_wamids`, those with a typing indicator in `typing_wamids`; `?summary=1`
  leaves out the per-message maps and lists);
  `DELETE /sandbox/stats` zeroes the counts only.
- `GET|POST /sandbox/numbers`, `DELETE /sandbox/numbers/<id>`: the business numbers the sandbox
  knows besides its own (outbox.py's header). A POST registers one, `{"phone_number_id",
  "display_phone_number", "waba_id", "verified_name"}` (all but the first optional: the sandbox's own).
- `POST /sandbox/numbers/<id>/quality`: a number's quality rating, messaging limit or throughput
  changes at Meta, which posts `phone_number_quality_update` (devstack/sandbox/numbers.py).
- `POST /sandbox/received`: `{"wamids": [...], "phone_number_id": ...}` (the number optional): messages
  users sent whose webhook reached Wharf by other means (a test posting Meta's webhook itself), so
  that they can be marked read.
- `POST /sandbox/reset`: settings, counts, limits, templates, numbers' quality and limits, faults
  and scheduled statuses back to how the process started (media, numbers and wamids stay); the SMS
  service's too.
- `POST /sandbox/inbound`: a WhatsApp user writes; posted to Wharf as Meta's signed webhook
  (devstack/sandbox/inbound.py).
- `/sandbox/sms/...`: the SMS service's controls (devstack/sandbox/sms.py).
"""

from __future__ import annotations

from flask import Blueprint, request

from devstack.sandbox.calls import sandbox_outbox, sandbox_state, sandbox_statuses
from devstack.sandbox.errors import invalid_parameter, unknown_object
from devstack.sandbox.media import mime_base
from devstack.sandbox.numbers import sandbox_standings
from devstack.sandbox.outbox import SandboxNumber
from devstack.sandbox.payloads import DEFAULT_DISPLAY_PHONE_NUMBER, DEFAULT_VERIFIED_NAME, DEFAULT_WABA_ID
from devstack.sandbox.sms import sms_outbox
from devstack.sandbox.state import INBOUND_MEDIA_TTL, ErrorFault

blueprint = Blueprint("control", __name__, url_prefix="/sandbox")


@blueprint.get("/health")
def health():
    return {"status": "ok"}


@blueprint.post("/media")
def inbound_media_add():
    upload = request.files.get("file")
    if upload is not None:
        content, mime_type, filename = upload.read(), upload.mimetype, upload.filename or ""
    else:
        content, mime_type = request.get_data(), request.mimetype
        filename = request.args.get("filename", "")
    mime_type = mime_base(request.args.get("type") or request.form.get("type") or mime_type or "")
    if not content or not mime_type:
        raise invalid_parameter("Send the media as a multipart `file` or as the body with its Content-Type.")
    media = sandbox_state().media_add(
        content=content,
        mime_type=mime_type,
        phone_number_id=request.args.get("phone_number_id") or request.form.get("phone_number_id", ""),
        filename=filename,
        ttl=INBOUND_MEDIA_TTL,
    )
    return {
        "id": media.id,
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "file_size": media.file_size,
    }


@blueprint.post("/media/<media_id>/expire")
def inbound_media_expire(media_id: str):
    if not sandbox_state().media_expire(media_id):
        raise unknown_object(media_id)
    return {"success": True}


@blueprint.get("/numbers")
def numbers_show():
    return {"data": [number.as_dict() for number in sandbox_outbox().numbers()]}


@blueprint.post("/numbers")
def number_register():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid_parameter("Send the number as a JSON object.")
    phone_number_id = str(body.get("phone_number_id") or "").strip()
    if not phone_number_id or "/" in phone_number_id:
        raise invalid_parameter("Param phone_number_id must be the number's id.")
    number = SandboxNumber(
        phone_number_id=phone_number_id,
        display_phone_number=str(body.get("display_phone_number") or DEFAULT_DISPLAY_PHONE_NUMBER),
        waba_id=str(body.get("waba_id") or DEFAULT_WABA_ID),
        verified_name=str(body.get("verified_name") or DEFAULT_VERIFIED_NAME),
    )
    return sandbox_outbox().number_register(number).as_dict()


@blueprint.delete("/numbers/<phone_number_id>")
def number_forget(phone_number_id: str):
    if not sandbox_outbox().number_forget(phone_number_id):
        raise unknown_object(phone_number_id, method="delete")
    return {"success": True}


@blueprint.post("/received")
def received_record():
    body = request.get_json(silent=True)
    wamids = body.get("wamids") if isinstance(body, dict) else None
    if not isinstance(wamids, list) or not all(isinstance(wamid, str) and wamid for wamid in wamids):
        raise invalid_parameter('Send {"wamids": [...]}, the ids of the messages received.')
    phone_number_id = str(body.get("phone_number_id") or "")
    outbox = sandbox_outbox()
    for wamid in wamids:
        outbox.wamid_record(wamid=wamid, direction="inbound", phone_number_id=phone_number_id)
    return {"success": True}


@blueprint.get("/faults")
def faults_show():
    return sandbox_state().faults_snapshot()


@blueprint.post("/faults")
def faults_add():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid_parameter("Send the faults as a JSON object.")
    try:
        errors = [_error_fault(spec) for spec in body.get("errors", [])]
        if media_5xx := int(body.get("media_5xx", 0)):
            errors.append(ErrorFault("media", 500, 1, "An unknown error occurred", times=media_5xx))
        latency_ms = int(body["latency_ms"]) if "latency_ms" in body else None
        corrupt_downloads = int(body.get("corrupt_downloads", 0))
    except (TypeError, ValueError, KeyError) as error:
        raise invalid_parameter(f"Invalid fault: {error}") from None
    sandbox_state().faults_add(errors=errors, latency_ms=latency_ms, corrupt_downloads=corrupt_downloads)
    return sandbox_state().faults_snapshot()


@blueprint.delete("/faults")
def faults_clear():
    sandbox_state().faults_clear()
    return sandbox_state().faults_snapshot()


@blueprint.get("/config")
def config_show():
    return _config()


@blueprint.post("/config")
def config_change():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid_parameter("Send the settings as a JSON object.")
    changes = dict(body)
    latency_ms = changes.pop("latency_ms", None)
    if latency_ms is not None:
        try:
            latency_ms = int(latency_ms)
        except (TypeError, ValueError):
            raise invalid_parameter("Invalid sandbox setting 'latency_ms': an integer") from None
    sandbox_outbox().configure(changes)
    if latency_ms is not None:
        sandbox_state().faults_add(errors=[], latency_ms=latency_ms, corrupt_downloads=0)
    return _config()


def _config() -> dict:
    """The settings, the app secret only as whether there is one."""
    settings = sandbox_outbox().settings.as_dict()
    settings["app_secret"] = "<set>" if settings["app_secret"] else ""
    return settings | {"latency_ms": sandbox_state().faults.latency_ms}


@blueprint.get("/stats")
def stats_show():
    summary = request.args.get("summary", "") not in ("", "0", "false")
    stats = sandbox_outbox().stats(summary=summary)
    return stats | {"webhooks": sandbox_statuses().snapshot(), "sms": sms_outbox().stats(summary=summary)}


@blueprint.delete("/stats")
def stats_clear():
    sandbox_outbox().counters_reset()
    sms_outbox().counters_reset()
    return stats_show()


@blueprint.post("/reset")
def reset():
    sandbox_outbox().reset()
    sandbox_standings().reset()
    sandbox_statuses().reset()
    sandbox_state().faults_clear()
    sms_outbox().reset()
    return {"success": True}


def _error_fault(spec: dict) -> ErrorFault:
    return ErrorFault(
        route=str(spec.get("route", "*")),
        status=int(spec["status"]),
        code=int(spec["code"]),
        message=str(spec.get("message") or "An unknown error occurred"),
        details=str(spec.get("details", "")),
        error_type=str(spec.get("type", "OAuthException")),
        times=int(spec.get("times", 1)),
    )
