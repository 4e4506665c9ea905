"""Message templates as Meta holds them: synced from `GET /{waba_id}/message_templates` and kept
current between syncs by the template webhooks.

A sync reads every page before it changes anything it did not see: only a complete listing may
mark a template "DELETED" (Meta no longer lists it). Vanished templates stay as rows with that
status rather than being deleted, so the console can still say what an old message used.
Rows are upserted on (waba_id, name, language) with ON CONFLICT, so two syncs of one WABA at once,
or a sync racing a webhook, end with one row per template; a row a webhook touched after this sync
began is not marked vanished by it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from celery import shared_task
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.alerts import operator_alert_raise
from core.audit import Actor, audit_log_record
from core.queues import task_publish
from messaging.graph import (
    GraphAuthError,
    GraphPermanentError,
    GraphRetryableError,
    graph_client,
)
from messaging.models import Template
from messaging.numbers import phone_numbers_waba_ids
from messaging.template_drafts import (
    TemplateDraft,
    template_draft_components,
    template_draft_errors,
    template_draft_from,
)

logger = logging.getLogger(__name__)

FIELDS = "id,name,language,status,category,components,quality_score,rejected_reason"
PAGE_SIZE = 100
MAX_PAGES = 1000  # 100,000 templates: far beyond Meta's 250 per WABA; stops a paging loop
SENDABLE = "APPROVED"
DELETED = "DELETED"
# Template statuses Meta lists; a status webhook's `event` is one of them, or one of the events
# below, which are not statuses: a reinstated template is approved again, a flagged one stays
# approved (with a date it will be disabled unless its quality improves), and for the others
# (UNARCHIVED, LOCKED, UNLOCKED ...) the status is read again from Meta.
STATUSES = frozenset(
    {
        "APPROVED",
        "ARCHIVED",
        "DELETED",
        "DISABLED",
        "IN_APPEAL",
        "LIMIT_EXCEEDED",
        "PAUSED",
        "PENDING",
        "PENDING_DELETION",
        "REJECTED",
    }
)
_STATUS_FOR_EVENT = {"REINSTATED": "APPROVED"}
_EVENTS_KEEPING_STATUS = frozenset({"FLAGGED"})
TEMPLATE_FIELDS = frozenset(
    {
        "message_template_status_update",
        "message_template_quality_update",
        "template_category_update",
        "message_template_components_update",
    }
)


def _quality(value: Any) -> str:
    """Meta sends `quality_score` as {"score": "GREEN", "date": ...}; a bare string is accepted too."""
    if isinstance(value, dict):
        value = value.get("score")
    return str(value or "")[:16].upper()


def _reason(value: Any) -> str:
    """Meta's rejection reason; "NONE" (not rejected) is kept as no reason."""
    reason = str(value or "").upper()[:64]
    return "" if reason == "NONE" else reason


def _row(waba_id: str, item: dict, now) -> Template | None:
    name, language = str(item.get("name") or ""), str(item.get("language") or "")
    if not name or not language:
        logger.warning("Template without a name or language in WABA %s: %r", waba_id, item)
        return None
    components = item.get("components")
    return Template(
        waba_id=waba_id,
        meta_id=str(item.get("id") or "")[:64],
        name=name[:512],
        language=language[:16],
        status=str(item.get("status") or "").upper()[:32],
        category=str(item.get("category") or "").upper()[:32],
        quality_score=_quality(item.get("quality_score")),
        rejected_reason=_reason(item.get("rejected_reason")),
        components=components if isinstance(components, list) else [],
        synced_at=now,
    )


def templates_sync(*, waba_id: str) -> int:
    """Reads every template of the WABA from Meta and stores them; returns how many Meta listed."""
    if not waba_id:
        raise ValueError("templates_sync needs a WABA id")
    started = timezone.now()
    client = graph_client()
    rows: dict[tuple[str, str], Template] = {}
    params = {"fields": FIELDS, "limit": PAGE_SIZE}
    for page in client.edge_pages(waba_id, "message_templates", params=params, max_pages=MAX_PAGES):
        for item in page:
            row = _row(waba_id, item, started)
            if row is not None:
                rows[(row.name, row.language)] = row
    with transaction.atomic():
        if rows:
            Template.objects.bulk_create(
                list(rows.values()),
                update_conflicts=True,
                unique_fields=["waba_id", "name", "language"],
                update_fields=[
                    "meta_id",
                    "status",
                    "category",
                    "quality_score",
                    "rejected_reason",
                    "components",
                    "synced_at",
                    "updated_at",
                ],
            )
        vanished = (
            Template.objects.filter(waba_id=waba_id, updated_at__lt=started)
            .filter(Q(synced_at__isnull=True) | Q(synced_at__lt=started))
            .exclude(status=DELETED)
            .update(status=DELETED, updated_at=timezone.now())
        )
    logger.info("Synced %d template(s) of WABA %s; %d no longer listed", len(rows), waba_id, vanished)
    return len(rows)


def template_get_approved(*, waba_id: str, name: str, language: str) -> Template | None:
    """The template a send may use: Meta must have approved it (paused, disabled ... are refused)."""
    return Template.objects.filter(waba_id=waba_id, name=name, language=language, status=SENDABLE).first()


def template_webhook_apply(*, field: str, waba_id: str, value: dict) -> Template | None:
    """Applies a template webhook (status, quality, category) to its row, made if unknown; a
    components update is not detailed enough to rebuild the components, so it syncs the WABA.

    Webhooks carry no time of their own per template: the latest one applied wins.
    """
    if field not in TEMPLATE_FIELDS:
        return None
    name = str(value.get("message_template_name") or "")[:512]
    language = str(value.get("message_template_language") or "")[:16]
    meta_id = str(value.get("message_template_id") or "")[:64]
    template = None
    if meta_id:
        template = Template.objects.filter(meta_id=meta_id).filter(Q(waba_id=waba_id) | Q(waba_id="")).first()
    if template is None and name and language and waba_id:
        template, _ = Template.objects.get_or_create(
            waba_id=waba_id, name=name, language=language, defaults={"meta_id": meta_id}
        )
    if template is None:
        logger.warning("Template webhook %s names no template Wharf can find: %r", field, value)
        return None
    changes: dict[str, str] = {}
    if field == "message_template_status_update" and value.get("event"):
        event = str(value["event"]).upper()
        status = _STATUS_FOR_EVENT.get(event, event)
        if status in STATUSES:
            changes["status"] = status
            changes["rejected_reason"] = _reason(value.get("reason")) if status == "REJECTED" else ""
        elif event not in _EVENTS_KEEPING_STATUS and waba_id:
            transaction.on_commit(lambda: _sync_enqueue(waba_id))
        if value.get("message_template_category"):
            changes["category"] = str(value["message_template_category"]).upper()[:32]
    elif field == "message_template_quality_update" and value.get("new_quality_score"):
        changes["quality_score"] = _quality(value["new_quality_score"])
    elif field == "template_category_update" and value.get("new_category"):
        changes["category"] = str(value["new_category"]).upper()[:32]
    elif field == "message_template_components_update" and waba_id:
        transaction.on_commit(lambda: _sync_enqueue(waba_id))
    if meta_id and not template.meta_id:
        changes["meta_id"] = meta_id
    if changes:
        for name_, new in changes.items():
            setattr(template, name_, new)
        template.save(update_fields=[*changes, "updated_at"])
    return template


# -- writing templates at Meta ------------------------------------------------------------------------
#
# Meta holds the template; Wharf's row follows it. A create is sent first and the row stored only
# with Meta's id and answer (PENDING); its review comes back as the status webhook. A delete is
# Meta's first too, then the row is kept, marked DELETED, as a sync marks a vanished template:
# old messages still name it. Meta's own refusals come back as errors on the field they concern.

_FIELD_OF_SUBCODE = {2388024: "language", 2388043: "body", 2388299: "body", 2388047: "header_format"}


def template_create(*, waba_id: str, draft: TemplateDraft, actor: Actor, source: str) -> Template:
    """Checks the draft by Meta's rules, submits it to Meta and stores it as Meta answered (PENDING).
    Raises ValidationError by field: ours before sending, or Meta's words when it refuses."""
    errors = template_draft_errors(draft)
    if not waba_id:
        errors["waba_id"] = "Choose the WhatsApp Business Account the template belongs to."
    if errors:
        raise ValidationError(errors)
    components = template_draft_components(draft)
    request = {"name": draft.name, "category": draft.category, "language": draft.language}
    request |= {"parameter_format": "POSITIONAL", "components": components}
    try:
        answer = graph_client().request("POST", f"{_graph_id(waba_id)}/message_templates", json=request)
    except GraphPermanentError as error:
        field = _FIELD_OF_SUBCODE.get(error.subcode or 0, "__all__") if error.code == 100 else "__all__"
        raise ValidationError(
            {field: f"Meta refused the template: {error.details or error.title}"}
        ) from error
    values = {
        "meta_id": str(answer.get("id") or "")[:64],
        "status": str(answer.get("status") or "PENDING").upper()[:32],
        "category": str(answer.get("category") or draft.category).upper()[:32],
        "quality_score": "",
        "rejected_reason": "",
        "components": components,
        "synced_at": None,
    }
    with transaction.atomic():
        template, _ = Template.objects.update_or_create(
            waba_id=waba_id, name=draft.name, language=draft.language, defaults=values
        )
        audit_log_record(
            actor=actor,
            source=source,
            action="template.create",
            target=template,
            changes={"meta_id": [None, template.meta_id], "status": [None, template.status]},
        )
    return template


def template_delete(*, template: Template, actor: Actor, source: str) -> Template:
    """Deletes this language of the template at Meta (`hsm_id`, not every language of the name),
    then marks the row DELETED. One Meta no longer has is only marked."""
    if not template.meta_id:
        raise ValidationError("This template has no Meta id yet: sync the templates first.")
    params = {"name": template.name, "hsm_id": template.meta_id}
    try:
        graph_client().request("DELETE", f"{_graph_id(template.waba_id)}/message_templates", params=params)
    except GraphPermanentError as error:
        if _still_listed(template):
            raise ValidationError(f"Meta refused the delete: {error.details or error.title}") from error
    with transaction.atomic():
        old = template.status
        template.status = DELETED
        template.save(update_fields=["status", "updated_at"])
        audit_log_record(
            actor=actor,
            source=source,
            action="template.delete",
            target=template,
            changes={"status": [old, DELETED]},
        )
    return template


def _still_listed(template: Template) -> bool:
    """Whether Meta still has the template (a delete it refused was not a delete of one already gone)."""
    try:
        graph_client().object_read(template.meta_id, fields="id")
    except GraphAuthError:
        return True
    except GraphPermanentError:
        return False
    return True


def template_duplicate(*, template: Template, language: str) -> TemplateDraft:
    """A new draft of the template in another language, to be translated and then created; nothing is
    written until it is."""
    return template_draft_from(
        name=template.name, category=template.category, language=language, components=template.components
    )


def _graph_id(value: str) -> str:
    if not re.fullmatch(r"[0-9A-Za-z_]+", value or ""):
        raise ValidationError({"waba_id": f"{value!r} is not a Graph API id."})
    return value


def _sync_enqueue(waba_id: str) -> None:
    """After the webhook's commit; a broker that is down loses only this sync (beat runs hourly)."""
    task_publish(
        templates_sync_task,
        args=(waba_id,),
        what=f"a template sync of WABA {waba_id}",
        fallback="the hourly sync",
    )


@shared_task(
    name="messaging.templates_sync",
    autoretry_for=(GraphRetryableError,),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def templates_sync_task(waba_id: str | None = None) -> int:
    """Without a WABA id (beat), one task per WABA of the sender numbers. A token Meta refuses
    raises an operator alert instead of retrying: people must fix it."""
    if not waba_id:
        waba_ids = phone_numbers_waba_ids()
        for each in waba_ids:
            templates_sync_task.delay(each)
        return len(waba_ids)
    try:
        return templates_sync(waba_id=waba_id)
    except GraphAuthError as error:
        operator_alert_raise(
            key=f"templates-sync-auth:{waba_id}",
            text=f"Templates of WABA {waba_id} cannot be synced: Meta refused the access token "
            f"({error.reason}).",
        )
        return 0


# -- the parameters a template takes ------------------------------------------------------------------
#
# Per Meta's "Message templates" reference: a header is TEXT (its {{placeholders}} are text
# parameters), IMAGE, VIDEO or DOCUMENT (one parameter of that type carrying the medium's `link`
# or `id`), or LOCATION (one `location` parameter, {"latitude", "longitude", "name", "address"},
# given at send time: a location is not a medium). The body's placeholders are text parameters
# (Meta also takes `currency` and `date_time` there); a URL button's placeholder is one text
# parameter of a `button` component with `sub_type` url and the button's index.

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
MEDIA_HEADER_FORMATS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
LOCATION_FORMAT = "LOCATION"
LOCATION_FIELDS = ("latitude", "longitude", "name", "address")
TEXT_TYPES = frozenset({"text", "currency", "date_time"})  # what a text placeholder may be given


@dataclass(frozen=True)
class TemplateParameter:
    """One parameter a send of the template must carry."""

    component: str  # "header", "body" or "button"
    type: str  # "text", "image", "video", "document" or "location"
    name: str = ""  # the placeholder ("1", "customer_name") of a text parameter
    index: int = 0  # the button's position, for URL buttons

    @property
    def key(self) -> str:
        """The component it belongs to: "header", "body", "button.0" ..."""
        return f"button.{self.index}" if self.component == "button" else self.component


def template_parameters(components: Any) -> list[TemplateParameter]:
    """The parameters a template's stored components take, in Meta's order (header, body, buttons).
    The one reading of a template's components: sends check against it, the console's form and
    the components it builds follow it."""
    found: list[TemplateParameter] = []
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type") or "").upper()
        if kind == "HEADER":
            header_format = str(component.get("format") or "TEXT").upper()
            if header_format in MEDIA_HEADER_FORMATS or header_format == LOCATION_FORMAT:
                found.append(TemplateParameter("header", header_format.lower()))
            else:
                found += [
                    TemplateParameter("header", "text", n) for n in _placeholders(component.get("text"))
                ]
        elif kind == "BODY":
            found += [TemplateParameter("body", "text", n) for n in _placeholders(component.get("text"))]
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                if isinstance(button, dict) and str(button.get("type") or "").upper() == "URL":
                    names = _placeholders(button.get("url"))
                    found += [TemplateParameter("button", "text", name, index) for name in names]
    return found


def template_parameters_expected(components: Any) -> dict[str, list[str]]:
    """The parameter types each component of the template wants, by component key ("header",
    "body", "button.0"); a component that takes none is absent."""
    expected: dict[str, list[str]] = {}
    for parameter in template_parameters(components):
        expected.setdefault(parameter.key, []).append(parameter.type)
    return expected


def _placeholders(text: Any) -> list[str]:
    seen: list[str] = []
    for name in _PLACEHOLDER.findall(str(text or "")):
        if name not in seen:
            seen.append(name)
    return seen


# -- filling a template in (the console's form) ---------------------------------------------------------


@dataclass(frozen=True)
class TemplateSlot:
    """One value the console asks for: a text placeholder, a media header's link, or one field of
    a location header ("LOCATION.latitude")."""

    component: str  # "header", "body" or "button"
    placeholder: str  # "1", "customer_name", the media format, or LOCATION.<field>
    index: int = 0  # the button's position, for URL buttons
    example: str = ""

    @property
    def key(self) -> str:
        return f"{self.component}-{self.index}-{self.placeholder}"

    @property
    def label(self) -> str:
        if self.component == "header" and self.placeholder in MEDIA_HEADER_FORMATS:
            return f"header {self.placeholder.lower()} link"
        if self.placeholder.startswith(f"{LOCATION_FORMAT}."):
            return f"header location {self.placeholder.split('.', 1)[1]}"
        where = f"button {self.index + 1}" if self.component == "button" else self.component
        return f"{where} {{{{{self.placeholder}}}}}"


def _slots(parameter: TemplateParameter) -> list[TemplateSlot]:
    if parameter.type == "location":
        return [TemplateSlot("header", f"{LOCATION_FORMAT}.{field}") for field in LOCATION_FIELDS]
    if parameter.type != "text":
        return [TemplateSlot("header", parameter.type.upper())]
    return [TemplateSlot(parameter.component, parameter.name, parameter.index)]


def _examples(components: Any) -> dict[tuple[str, int, str], str]:
    """Meta's example values of a template's text placeholders, by (component, button index,
    placeholder): `header_text` / `body_text` (positional), `*_named_params` (named), and a URL
    button's `example` (the whole example URL)."""
    found: dict[tuple[str, int, str], str] = {}
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type") or "").lower()
        example = component.get("example") if isinstance(component.get("example"), dict) else {}
        if kind in ("header", "body"):
            names = _placeholders(component.get("text"))
            given = example.get(f"{kind}_text")
            if given and isinstance(given[0], list):  # the body's: one list per example
                given = given[0]
            for name, value in zip(names, given if isinstance(given, list) else [], strict=False):
                found[(kind, 0, name)] = str(value)
            for named in example.get(f"{kind}_text_named_params") or []:
                if isinstance(named, dict) and named.get("param_name"):
                    found[(kind, 0, str(named["param_name"]))] = str(named.get("example") or "")
        elif kind == "buttons":
            for index, button in enumerate(component.get("buttons") or []):
                if not isinstance(button, dict) or not isinstance(button.get("example"), list):
                    continue
                for name in _placeholders(button.get("url")):
                    found[("button", index, name)] = str(button["example"][0]) if button["example"] else ""
    return found


def template_slots(*, template: Template) -> list[TemplateSlot]:
    """The values a send of this template must be given, in Meta's order (header, body, buttons),
    each with Meta's example value when the template has one."""
    examples = _examples(template.components)
    return [
        replace(slot, example=examples.get((slot.component, slot.index, slot.placeholder), ""))
        for parameter in template_parameters(template.components)
        for slot in _slots(parameter)
    ]


def template_slot_values(*, template: Template, parameters: Any) -> dict[str, str]:
    """The slots' values (by `TemplateSlot.key`) of parameters stored by component key
    ({"body": ["{{name}}", ...], "header": [{"type": "image", "image": {"link": ...}}]}), the
    shape campaigns keep; what is missing is absent."""
    parameters = parameters if isinstance(parameters, dict) else {}
    values: dict[str, str] = {}
    taken: dict[str, int] = {}
    for parameter in template_parameters(template.components):
        position = taken.get(parameter.key, 0)
        taken[parameter.key] = position + 1
        items = parameters.get(parameter.key)
        item = items[position] if isinstance(items, list) and position < len(items) else None
        slots = _slots(parameter)
        if parameter.type == "location":
            location = item.get("location") if isinstance(item, dict) else None
            for slot, field in zip(slots, LOCATION_FIELDS, strict=True):
                if isinstance(location, dict) and location.get(field) is not None:
                    values[slot.key] = str(location[field])
        elif parameter.type != "text":
            media = item.get(parameter.type) if isinstance(item, dict) else None
            if isinstance(media, dict) and media.get("link"):
                values[slots[0].key] = str(media["link"])
        elif isinstance(item, str | int | float):
            values[slots[0].key] = str(item)
    return values


def template_parameters_from_slots(*, template: Template, values: dict[str, str]) -> dict[str, list[Any]]:
    """Parameters by component key (the shape `template_slot_values` reads) from the slots' values:
    a text as it is (its placeholders filled per contact at send time), a medium as its link."""
    parameters: dict[str, list[Any]] = {}
    for parameter in template_parameters(template.components):
        parameters.setdefault(parameter.key, []).append(_parameter_value(parameter, values))
    return parameters


def _parameter_value(parameter: TemplateParameter, values: dict[str, str]) -> Any:
    """One parameter from its slots' values: a location, a medium by its link, or a text as it is."""
    slots = _slots(parameter)
    if parameter.type == "location":
        location: dict[str, Any] = {}
        for slot, field in zip(slots, LOCATION_FIELDS, strict=True):
            value = values.get(slot.key, "")
            location[field] = _number(value) if field in ("latitude", "longitude") else value
        return {"type": "location", "location": location}
    if parameter.type != "text":
        return {"type": parameter.type, parameter.type: {"link": values.get(slots[0].key, "")}}
    return values.get(slots[0].key, "")


def template_fill(*, components: Any, values: dict[str, list[Any]]) -> dict[str, Any]:
    """A template's parts as a recipient reads them, its text placeholders replaced by the values
    given by component key (a placeholder without a value stays as it is): a preview."""

    def filled(text: Any, given: Any) -> str:
        text = str(text or "")
        given = given if isinstance(given, list) else []
        for position, name in enumerate(_placeholders(text)):
            value = given[position] if position < len(given) else None
            if isinstance(value, str | int | float) and str(value).strip():
                text = re.sub(r"\{\{\s*" + re.escape(name) + r"\s*\}\}", lambda _m, v=str(value): v, text)
        return text

    parts: dict[str, Any] = {"header": "", "media": "", "body": "", "footer": "", "buttons": []}
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type") or "").upper()
        if kind == "HEADER":
            header_format = str(component.get("format") or "TEXT").upper()
            if header_format == "TEXT":
                parts["header"] = filled(component.get("text"), values.get("header"))
            else:
                parts["media"] = header_format.lower()
        elif kind == "BODY":
            parts["body"] = filled(component.get("text"), values.get("body"))
        elif kind == "FOOTER":
            parts["footer"] = str(component.get("text") or "")
        elif kind == "BUTTONS":
            parts["buttons"] = [
                str(button.get("text") or "")
                for button in component.get("buttons") or []
                if isinstance(button, dict)
            ]
    return parts


def _number(value: str) -> float | str:
    """A coordinate typed into the form; what is not a number is passed on for the send to refuse."""
    try:
        return float(value)
    except ValueError:
        return value


def template_components_build(*, template: Template, values: dict[str, str]) -> list[dict]:
    """Meta's `components` for a send, from the slots' values keyed by `TemplateSlot.key`."""
    parameters: dict[str, list[dict]] = {}
    for parameter in template_parameters(template.components):
        given = _parameter_value(parameter, values)
        if parameter.type == "text":
            given = {"type": "text", "text": given}
            if not parameter.name.isdigit():
                given["parameter_name"] = parameter.name
        parameters.setdefault(parameter.key, []).append(given)
    components: list[dict] = []
    for key, given in parameters.items():
        if key.startswith("button."):
            index = key.split(".", 1)[1]
            components.append({"type": "button", "sub_type": "url", "index": index, "parameters": given})
        else:
            components.append({"type": key, "parameters": given})
    return components
