"""Message templates: Meta's list endpoint and the sandbox's controls that define them.

- `GET /{version}/{waba_id}/message_templates`: Meta's shape, `{"data": [...], "paging": {"cursors":
  {"before", "after"}, "next"}}`, `limit` (default 25), `after`/`before` cursors, filters `name`
  (part of it), `status`, `category` and `language` (each a comma-separated list but name);
  `next` only when there is more. `fields` picks the fields of each template (Meta's default set
  without it; `quality_score` among the others), `summary` adds `{"summary": {...}}` with those of
  `total_count`, `message_template_count`, `message_template_limit`, `are_translations_complete`
  it names; `quality_score` filters by score (GREEN, YELLOW, RED, UNKNOWN). `GET /{template-id}`
  (media.py) reads one template, with `fields` too.
- `POST /{version}/{waba_id}/message_templates` `{"name", "category", "language", "components",
  "parameter_format"}`: checked as Meta checks it (template_rules.py: Meta's 100/2388xxx errors),
  stored PENDING and answered `{"id", "status": "PENDING", "category"}`. After `template_review_ms`
  (`POST /sandbox/config`; 3000 by default, 0 for tests) it is reviewed: a UTILITY or AUTHENTICATION
  template whose body speaks of a discount, a promo code or a coupon (or "N% off") is REJECTED
  with reason PROMOTIONAL, any other is APPROVED; either way the `message_template_status_update`
  webhook is posted, signed, as the status control below posts it.
- `DELETE /{version}/{waba_id}/message_templates?name=NAME`: every language of that name;
  `&hsm_id=ID` only that one. `{"success": true}`; a name (or id) the WABA does not have is refused.
- `POST /sandbox/templates`: define one template or `{"templates": [...]}`, each `{"name", "language",
  "status" (APPROVED), "category" (UTILITY), "components", "waba_id" (the default WABA), "id"}`; one
  with the same WABA, name and language is replaced. `GET` lists all (`?waba_id=` one WABA's),
  `DELETE` removes all, `DELETE /sandbox/templates/<id>` one (the sandbox starts with Meta's
  sample `hello_world`, en_US, in the default WABA).
- `POST /sandbox/templates/<id>/status` `{"status": "PAUSED", "reason": ..., "other_info": {"title",
  "description"}}` (the last two optional): changes it and posts
  Meta's `message_template_status_update` webhook, signed, to the configured webhook URL.
"""

from __future__ import annotations

import logging
import threading

import httpx
from flask import Blueprint, request

from devstack.sandbox import payloads
from devstack.sandbox.calls import graph_call, sandbox_outbox
from devstack.sandbox.errors import invalid_parameter, template_refused, unknown_object
from devstack.sandbox.outbox import (
    TEMPLATE_LIMIT,
    Outbox,
    SandboxTemplate,
    template_fields,
    template_id_new,
)
from devstack.sandbox.paging import edge_page
from devstack.sandbox.template_rules import template_check, template_review

blueprint = Blueprint("templates", __name__)
logger = logging.getLogger(__name__)

STATUSES = ("APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "PENDING_DELETION")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
SUMMARY_FIELDS = (
    "total_count",
    "message_template_count",
    "message_template_limit",
    "are_translations_complete",
)


@blueprint.get("/<version:version>/<waba_id>/message_templates")
@blueprint.get("/<waba_id>/message_templates", defaults={"version": ""})
@graph_call("templates")
def templates_list(version: str, waba_id: str):
    fields = template_fields(request.args.get("fields"))
    every = sandbox_outbox().templates_of(waba_id)
    templates = every
    if name := request.args.get("name"):
        templates = [template for template in templates if name.lower() in template.name.lower()]
    if asked := request.args.get("quality_score"):
        wanted = {part.strip().upper() for part in asked.split(",")}
        templates = [template for template in templates if "UNKNOWN" in wanted]  # none rated yet
    for argument in ("status", "category", "language"):
        if asked := request.args.get(argument):
            wanted = {part.strip() for part in asked.split(",")}
            if argument != "language":
                wanted = {part.upper() for part in wanted}
            templates = [template for template in templates if getattr(template, argument) in wanted]
    answer = edge_page(
        templates,
        render=lambda template: template.as_meta(fields),
        endpoint="templates.templates_list",
        version=version,
        waba_id=waba_id,
    )
    if summary := request.args.get("summary"):
        values = {
            "total_count": len(templates),
            "message_template_count": len(every),
            "message_template_limit": TEMPLATE_LIMIT,
            "are_translations_complete": True,
        }
        asked = {part.strip() for part in summary.split(",")}
        answer["summary"] = {key: values[key] for key in SUMMARY_FIELDS if key in asked}
    return answer


@blueprint.post("/<version:version>/<waba_id>/message_templates")
@blueprint.post("/<waba_id>/message_templates", defaults={"version": ""})
@graph_call("templates_create")
def template_create(version: str, waba_id: str):
    checked = template_check(request.get_json(silent=True))
    template = SandboxTemplate(id=template_id_new(), waba_id=waba_id, status="PENDING", **checked)
    outbox = sandbox_outbox()
    if len(outbox.templates_of(waba_id)) >= TEMPLATE_LIMIT:
        raise invalid_parameter(f"A WhatsApp Business Account can have at most {TEMPLATE_LIMIT} templates")
    if not outbox.template_add(template):
        raise template_refused(
            2388024,
            "Message template already exists",
            f"There is already {template.language} content for this template. Create a new template "
            "with a different name and try again.",
        )
    status, reason = template_review(checked)
    timer = threading.Timer(
        outbox.settings.template_review_ms / 1000, _review, args=(outbox, template.id, status, reason)
    )
    timer.daemon = True
    timer.start()
    return {"id": template.id, "status": template.status, "category": template.category}


@blueprint.delete("/<version:version>/<waba_id>/message_templates")
@blueprint.delete("/<waba_id>/message_templates", defaults={"version": ""})
@graph_call("templates_delete")
def templates_delete(version: str, waba_id: str):
    name = request.args.get("name", "")
    if not name:
        raise invalid_parameter("The parameter name is required")
    template_id = request.args.get("hsm_id", "")
    if not sandbox_outbox().templates_delete(waba_id=waba_id, name=name, template_id=template_id):
        raise template_refused(
            None,
            "Message template not found",
            f"There is no message template named {name}"
            + (f" with id {template_id}" if template_id else "")
            + " in this account.",
        )
    return {"success": True}


def _review(outbox: Outbox, template_id: str, status: str, reason: str) -> None:
    """Meta's review, on a timer: gone meanwhile (deleted, a reset), nothing is posted."""
    template = outbox.template_status_set(template_id, status, reason)
    if template is not None:
        _announce(outbox, template, event=status, reason=reason)


def _announce(outbox: Outbox, template: SandboxTemplate, *, event: str, reason: str, other_info=None) -> bool:
    """Posts `message_template_status_update` to the configured webhook URL, signed, off the caller's
    thread; False when no URL is configured."""
    settings = outbox.settings
    if not settings.webhook_url:
        return False
    webhook = payloads.template_status_body(
        waba_id=template.waba_id,
        template_id=template.id,
        name=template.name,
        language=template.language,
        event=event,
        reason=reason,
        other_info=other_info,
    )
    threading.Thread(
        target=_post_quietly, args=(settings.webhook_url, webhook, settings.app_secret), daemon=True
    ).start()
    return True


@blueprint.post("/sandbox/templates")
def templates_define():
    body = request.get_json(silent=True)
    specs = body.get("templates") if isinstance(body, dict) and "templates" in body else [body]
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise invalid_parameter('Send a template object or {"templates": [...]}.')
    templates = [_template(spec) for spec in specs]
    sandbox_outbox().templates_define(templates)
    return {"data": [template.as_meta() | {"waba_id": template.waba_id} for template in templates]}


@blueprint.get("/sandbox/templates")
def templates_show():
    outbox = sandbox_outbox()
    wabas = request.args.get("waba_id")
    templates = outbox.templates_of(wabas) if wabas else outbox.templates_all()
    return {"data": [template.as_meta() | {"waba_id": template.waba_id} for template in templates]}


@blueprint.delete("/sandbox/templates")
def templates_clear():
    sandbox_outbox().templates_clear()
    return {"success": True}


@blueprint.delete("/sandbox/templates/<template_id>")
def template_delete(template_id: str):
    if not sandbox_outbox().template_delete(template_id):
        raise unknown_object(template_id)
    return {"success": True}


@blueprint.post("/sandbox/templates/<template_id>/status")
def template_status_change(template_id: str):
    body = request.get_json(silent=True) or {}
    status = str(body.get("status", "")).upper()
    if status not in STATUSES:
        raise invalid_parameter(f"Param status must be one of {', '.join(STATUSES)}.")
    reason = str(body.get("reason") or "NONE")
    other_info = body.get("other_info") if isinstance(body.get("other_info"), dict) else None
    outbox = sandbox_outbox()
    template = outbox.template_status_set(template_id, status, reason)
    if template is None:
        raise unknown_object(template_id)
    posted = _announce(outbox, template, event=status, reason=reason, other_info=other_info)
    return {"data": template.as_meta(), "webhook": posted}


def _post_quietly(url: str, body: dict, app_secret: str) -> None:
    try:
        payloads.webhook_post(url=url, body=body, app_secret=app_secret)
    except httpx.HTTPError as error:
        logger.info("template status webhook to %s failed: %r", url, error)


def _template(spec: dict) -> SandboxTemplate:
    name, language = spec.get("name"), spec.get("language")
    if not isinstance(name, str) or not name:
        raise invalid_parameter("Param name is required.")
    if isinstance(language, dict):
        language = language.get("code")
    if not isinstance(language, str) or not language:
        raise invalid_parameter("Param language is required.")
    status = str(spec.get("status", "APPROVED")).upper()
    category = str(spec.get("category", "UTILITY")).upper()
    components = spec.get("components", [])
    if status not in STATUSES:
        raise invalid_parameter(f"Param status must be one of {', '.join(STATUSES)}.")
    if category not in CATEGORIES:
        raise invalid_parameter(f"Param category must be one of {', '.join(CATEGORIES)}.")
    if not isinstance(components, list) or not all(isinstance(item, dict) for item in components):
        raise invalid_parameter("Param components must be a list of objects.")
    return SandboxTemplate(
        id=str(spec.get("id") or template_id_new()),
        waba_id=str(spec.get("waba_id") or payloads.DEFAULT_WABA_ID),
        name=name,
        language=language,
        status=status,
        category=category,
        components=components,
        parameter_format=str(spec.get("parameter_format", "POSITIONAL")).upper(),
    )
