"""Meta's rules for a message body, checked as the Cloud API checks them: 100 naming the parameter,
131009 (Parameter value is not valid) for the content of an interactive message.

Only the shape is checked here; what depends on the sandbox's state (templates, media ids, the
window, the limits) is checked by the endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from devstack.sandbox.errors import GraphApiError, invalid_parameter

KINDS = (
    "text",
    "template",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "interactive",
    "reaction",
    "location",
    "contacts",
)
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
CAPTIONED = ("image", "video", "document")
INTERACTIVE_KINDS = (
    "button",
    "list",
    "cta_url",
    "flow",
    "product",
    "product_list",
    "location_request_message",
    "address_message",
    "call_permission_request",
)
TEXT_MAX = 4096
CAPTION_MAX = 1024
BODY_MAX = 1024
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
ROWS_MAX = 10
SECTIONS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
CALLBACK_MAX = 512


@dataclass(frozen=True)
class CheckedMessage:
    to: str
    wa_id: str
    kind: str
    callback: str  # biz_opaque_callback_data
    template_name: str = ""
    template_language: str = ""
    template_components: tuple = ()


def message_check(body: dict) -> CheckedMessage:
    if body.get("messaging_product") != "whatsapp":
        raise _param("messaging_product", "is required and must be 'whatsapp'")
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise _param("recipient_type", "must be 'individual'")
    to = body.get("to")
    if isinstance(to, int) and not isinstance(to, bool):
        to = str(to)  # Meta takes the number as a JSON number too
    if not isinstance(to, str) or not to.strip():
        raise _param("to", "is required")
    wa_id = re.sub(r"\D", "", to)
    if not 6 <= len(wa_id) <= 15 or re.search(r"[^\d\s+()-]", to):
        raise _param("to", f"must be a phone number in international format; got {to!r}")
    kind = body.get("type", "text")
    if kind not in KINDS:
        raise _param("type", f"must be one of {{{', '.join(KINDS)}}}; got {kind!r}")
    if kind not in body or not isinstance(body[kind], (dict, list)):
        raise _param(kind, "is required for a message of this type")
    context = body.get("context")
    if context is not None and not (isinstance(context, dict) and _text(context.get("message_id"))):
        raise _param("context['message_id']", "is required when context is given")
    callback = body.get("biz_opaque_callback_data", "")
    if not isinstance(callback, str) or len(callback) > CALLBACK_MAX:
        raise _param("biz_opaque_callback_data", f"must be a string of at most {CALLBACK_MAX} characters")
    checked = CheckedMessage(to=to, wa_id=wa_id, kind=kind, callback=callback)
    content = body[kind]
    if kind == "text":
        _text_check(content)
    elif kind in MEDIA_KINDS:
        _media_check(kind, content)
    elif kind == "interactive":
        try:
            _interactive_check(content)
        except GraphApiError as error:
            raise not_valid(error.details) from None
    elif kind == "reaction":
        _reaction_check(content)
    elif kind == "location":
        _location_check(content)
    elif kind == "contacts":
        _contacts_check(content)
    elif kind == "template":
        return _template_check(content, checked)
    return checked


def read_check(body: dict) -> str:
    """A mark-as-read body: `{"messaging_product", "status": "read", "message_id"}`; the wamid."""
    if body.get("messaging_product") != "whatsapp":
        raise _param("messaging_product", "is required and must be 'whatsapp'")
    message_id = body.get("message_id")
    if not _text(message_id) or not message_id.startswith("wamid."):
        raise _param("message_id", "must be the wamid of a message received")
    typing = body.get("typing_indicator")
    if typing is not None and not (isinstance(typing, dict) and typing.get("type") == "text"):
        raise _param("typing_indicator['type']", "must be 'text'")
    return message_id


def not_valid(details: str) -> GraphApiError:
    """Meta's 131009: a value it cannot use, the details saying which and why."""
    return GraphApiError(400, 131009, "(#131009) Parameter value is not valid", details=details)


def _param(name: str, problem: str) -> GraphApiError:
    return invalid_parameter(f"Param {name} {problem}.", details=f"Param {name} {problem}.")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _object(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise _param(name, "must be an object")
    return value


def _max_length(value: Any, name: str, limit: int, *, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value.strip()):
        raise _param(name, "is required" if required else "must be a string")
    if len(value) > limit:
        raise _param(name, f"must be at most {limit} characters long; got {len(value)}")


def _text_check(content: Any) -> None:
    text = _object(content, "text")
    _max_length(text.get("body"), "text['body']", TEXT_MAX)
    if "preview_url" in text and not isinstance(text["preview_url"], bool):
        raise _param("text['preview_url']", "must be true or false")


def _media_check(kind: str, content: Any) -> None:
    media = _object(content, kind)
    has_id, has_link = _text(media.get("id")), _text(media.get("link"))
    if has_id == has_link:
        raise _param(f"{kind}['id'] or {kind}['link']", "is required, and only one of them")
    if has_link and not re.match(r"^https?://\S+$", media["link"]):
        raise _param(f"{kind}['link']", "must be an http or https URL")
    if "caption" in media:
        if kind not in CAPTIONED:
            raise _param(f"{kind}['caption']", f"is not allowed for {kind} messages")
        _max_length(media["caption"], f"{kind}['caption']", CAPTION_MAX, required=False)
    if "filename" in media and kind != "document":
        raise _param(f"{kind}['filename']", "is only for documents")


def _interactive_check(content: Any) -> None:
    interactive = _object(content, "interactive")
    kind = interactive.get("type")
    if kind not in INTERACTIVE_KINDS:
        raise _param("interactive['type']", f"must be one of {{{', '.join(INTERACTIVE_KINDS)}}}")
    action = _object(interactive.get("action"), "interactive['action']")
    if kind not in ("button", "list", "cta_url"):
        return
    body = _object(interactive.get("body"), "interactive['body']")
    _max_length(body.get("text"), "interactive['body']['text']", BODY_MAX)
    if kind == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= BUTTONS_MAX:
            raise _param("interactive['action']['buttons']", f"must have 1 to {BUTTONS_MAX} buttons")
        titles = set()
        for index, button in enumerate(buttons):
            name = f"interactive['action']['buttons'][{index}]"
            reply = _object(_object(button, name).get("reply"), f"{name}['reply']")
            if button.get("type") != "reply":
                raise _param(f"{name}['type']", "must be 'reply'")
            _max_length(reply.get("id"), f"{name}['reply']['id']", 256)
            _max_length(reply.get("title"), f"{name}['reply']['title']", BUTTON_TITLE_MAX)
            if reply["title"] in titles:
                raise _param(f"{name}['reply']['title']", "must be unique among the buttons")
            titles.add(reply["title"])
    elif kind == "list":
        _max_length(action.get("button"), "interactive['action']['button']", BUTTON_TITLE_MAX)
        sections = action.get("sections")
        if not isinstance(sections, list) or not 1 <= len(sections) <= SECTIONS_MAX:
            raise _param("interactive['action']['sections']", f"must have 1 to {SECTIONS_MAX} sections")
        rows = 0
        for index, section in enumerate(sections):
            name = f"interactive['action']['sections'][{index}]"
            section_rows = _object(section, name).get("rows")
            if not isinstance(section_rows, list) or not section_rows:
                raise _param(f"{name}['rows']", "must have at least one row")
            if len(sections) > 1:
                _max_length(section.get("title"), f"{name}['title']", ROW_TITLE_MAX)
            for row_index, row in enumerate(section_rows):
                row_name = f"{name}['rows'][{row_index}]"
                _max_length(_object(row, row_name).get("id"), f"{row_name}['id']", ROW_ID_MAX)
                _max_length(row.get("title"), f"{row_name}['title']", ROW_TITLE_MAX)
                _max_length(
                    row.get("description"), f"{row_name}['description']", ROW_DESCRIPTION_MAX, required=False
                )
            rows += len(section_rows)
        if rows > ROWS_MAX:
            raise _param(
                "interactive['action']['sections']", f"must have at most {ROWS_MAX} rows in all; got {rows}"
            )
    elif kind == "cta_url":
        parameters = _object(action.get("parameters"), "interactive['action']['parameters']")
        _max_length(parameters.get("display_text"), "interactive['action']['parameters']['display_text']", 20)
        if not re.match(r"^https?://\S+$", str(parameters.get("url", ""))):
            raise _param("interactive['action']['parameters']['url']", "must be an http or https URL")


def _reaction_check(content: Any) -> None:
    reaction = _object(content, "reaction")
    if not _text(reaction.get("message_id")):
        raise _param("reaction['message_id']", "is required")
    if not isinstance(reaction.get("emoji"), str):
        raise _param("reaction['emoji']", "is required (empty to remove the reaction)")


def _location_check(content: Any) -> None:
    location = _object(content, "location")
    for name, limit in (("latitude", 90), ("longitude", 180)):
        value = location.get(name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _param(f"location['{name}']", "is required and must be a number") from None
        if isinstance(value, bool) or not -limit <= number <= limit:
            raise _param(f"location['{name}']", f"must be between -{limit} and {limit}")


def _contacts_check(content: Any) -> None:
    if not isinstance(content, list) or not content:
        raise _param("contacts", "must be a non-empty list")
    for index, contact in enumerate(content):
        name = _object(_object(contact, f"contacts[{index}]").get("name"), f"contacts[{index}]['name']")
        if not _text(name.get("formatted_name")):
            raise _param(f"contacts[{index}]['name']['formatted_name']", "is required")


def _template_check(content: Any, checked: CheckedMessage) -> CheckedMessage:
    template = _object(content, "template")
    if not _text(template.get("name")):
        raise _param("template['name']", "is required")
    language = _object(template.get("language"), "template['language']")
    if not _text(language.get("code")):
        raise _param("template['language']['code']", "is required")
    components = template.get("components", [])
    if not isinstance(components, list):
        raise _param("template['components']", "must be a list")
    for index, component in enumerate(components):
        name = f"template['components'][{index}]"
        if _object(component, name).get("type") not in ("header", "body", "button", "footer"):
            raise _param(f"{name}['type']", "must be one of {header, body, button}")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list):
            raise _param(f"{name}['parameters']", "must be a list")
        for parameter_index, parameter in enumerate(parameters):
            parameter_name = f"{name}['parameters'][{parameter_index}]"
            kind = _object(parameter, parameter_name).get("type")
            if not _text(kind):
                raise _param(f"{parameter_name}['type']", "is required")
            if kind == "text":
                _max_length(parameter.get("text"), f"{parameter_name}['text']", 32768)
    return CheckedMessage(
        to=checked.to,
        wa_id=checked.wa_id,
        kind=checked.kind,
        callback=checked.callback,
        template_name=template["name"],
        template_language=language["code"],
        template_components=tuple(components),
    )


PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def template_parameters_check(components_defined: list[dict], components_sent: tuple) -> None:
    """The parameters sent fit the template: 132000 for a wrong count, 132012 for a wrong kind of header."""
    for kind in ("HEADER", "BODY"):
        defined = next(
            (item for item in components_defined if str(item.get("type", "")).upper() == kind), None
        )
        sent = next((item for item in components_sent if str(item.get("type", "")).upper() == kind), None)
        parameters = (sent or {}).get("parameters", [])
        header_format = str((defined or {}).get("format", "TEXT")).upper()
        if kind == "HEADER" and defined is not None and header_format in ("IMAGE", "VIDEO", "DOCUMENT"):
            wanted = header_format.lower()
            if len(parameters) != 1 or parameters[0].get("type") != wanted:
                raise GraphApiError(
                    400,
                    132012,
                    "(#132012) Parameter format does not match format in the created template",
                    details=f"header: the template wants one {wanted} parameter.",
                )
            continue
        expected = len(set(PLACEHOLDER.findall(str((defined or {}).get("text", "")))))
        if len(parameters) != expected:
            raise GraphApiError(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                details=f"{kind.lower()}: number of localizable_params ({len(parameters)}) does not match "
                f"the expected number of params ({expected})",
            )
