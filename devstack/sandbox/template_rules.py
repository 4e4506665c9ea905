"""What Meta checks when a template is created (`POST /{waba_id}/message_templates`), and how the
sandbox reviews one afterwards.

Refusals are Meta's: HTTP 400, code 100 "Invalid parameter" with `error_user_title` and
`error_user_msg`, and the subcode Meta gives the rule — 2388040 a text over its limit (body 1024,
header text 60, footer 60, button text 25), 2388043 variables without examples, 2388047 a header
in a format it does not have, 2388299 a body that starts or ends with a variable, 2388024 a name
that already has content in that language (templates.py checks that one, it needs the store).
A malformed request (no name, an unknown category, a body missing, too many buttons) is the
plain `(#100) Param ...` answer the Graph API gives any parameter.

The review is deterministic so that a test or a person can cause a rejection on purpose: a
UTILITY or AUTHENTICATION template whose body speaks of a discount, a promo code or a coupon
(or "N% off") is REJECTED with Meta's reason PROMOTIONAL; every other template is APPROVED.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from devstack.sandbox.errors import invalid_parameter, template_refused

NAME = re.compile(r"[a-z0-9_]+")
NAME_MAX = 512
LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_MAX = 60
BUTTON_TEXT_MAX = 25
BUTTONS_MAX = 10
BUTTON_LIMITS = {"URL": 2, "PHONE_NUMBER": 1, "QUICK_REPLY": 10}
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
ENDS_WITH_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z0-9_]+\s*\}\}$")
PROMOTIONAL = re.compile(r"\b(discounts?|promo|coupons?)\b|\d+\s*% off", re.IGNORECASE)


def template_check(body: Any) -> dict:
    """The request's template, `{"name", "language", "category", "components", "parameter_format"}`,
    or Meta's error for the first rule it breaks."""
    if not isinstance(body, dict):
        raise invalid_parameter("The request body must be a JSON object.")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise invalid_parameter("The parameter name is required")
    if not NAME.fullmatch(name) or len(name) > NAME_MAX:
        raise template_refused(
            None,
            "Invalid template name",
            "Template names can only contain lowercase letters, numbers and underscores, up to "
            f"{NAME_MAX} characters.",
        )
    language = body.get("language")
    if not isinstance(language, str) or not language:
        raise invalid_parameter("The parameter language is required")
    if not LANGUAGE.fullmatch(language):
        raise invalid_parameter(f"Param language must be a supported language code, not {language!r}")
    category = str(body.get("category") or "").upper()
    if category not in CATEGORIES:
        raise invalid_parameter(f"Param category must be one of {{{', '.join(CATEGORIES)}}}")
    parameter_format = str(body.get("parameter_format") or "POSITIONAL").upper()
    if parameter_format not in ("POSITIONAL", "NAMED"):
        raise invalid_parameter("Param parameter_format must be one of {POSITIONAL, NAMED}")
    components = body.get("components")
    if not isinstance(components, list) or not all(isinstance(item, dict) for item in components):
        raise invalid_parameter("Param components must be an array of objects")
    kinds = [str(item.get("type") or "").upper() for item in components]
    if kinds.count("BODY") != 1:
        raise invalid_parameter("Param components must have exactly one component of type BODY")
    for kind in ("HEADER", "FOOTER", "BUTTONS"):
        if kinds.count(kind) > 1:
            raise invalid_parameter(f"Param components must have at most one component of type {kind}")
    for kind, component in zip(kinds, components, strict=True):
        _component_check(kind, component, parameter_format)
    return {
        "name": name,
        "language": language,
        "category": category,
        "components": components,
        "parameter_format": parameter_format,
    }


def template_review(template: dict) -> tuple[str, str]:
    """(status, reason) after Meta's review: see the module's docstring."""
    body = next(item for item in template["components"] if str(item.get("type")).upper() == "BODY")
    if template["category"] != "MARKETING" and PROMOTIONAL.search(str(body.get("text") or "")):
        return "REJECTED", "PROMOTIONAL"
    return "APPROVED", "NONE"


def _component_check(kind: str, component: dict, parameter_format: str) -> None:
    example = component.get("example") if isinstance(component.get("example"), dict) else {}
    text = component.get("text")
    if kind == "HEADER":
        header_format = str(component.get("format") or "").upper()
        if header_format not in HEADER_FORMATS:
            raise template_refused(
                2388047,
                "Message header format is incorrect",
                f"The header format must be one of {', '.join(HEADER_FORMATS)}.",
            )
        if header_format == "TEXT":
            _text_check(text, HEADER_TEXT_MAX, "header")
            names = _placeholders(text, parameter_format, "header")
            if len(names) > 1:
                raise invalid_parameter("Param components[HEADER]['text'] can have at most one variable")
            if names and not _filled(example.get("header_text"), 1):
                _examples_missing("header")
        elif header_format != "LOCATION" and not _filled(example.get("header_handle"), 1):
            _examples_missing("header")
    elif kind == "BODY":
        _text_check(text, BODY_MAX, "body")
        names = _placeholders(text, parameter_format, "body")
        if names:
            stripped = str(text).strip()
            if PLACEHOLDER.match(stripped) or ENDS_WITH_PLACEHOLDER.search(stripped):
                raise template_refused(
                    2388299,
                    "Variables can't be at the start or end of the template",
                    "Variables can't be at the start or end of the template. Add text before the "
                    "first variable and after the last one.",
                )
            given = example.get("body_text")
            rows = given[0] if isinstance(given, list) and given and isinstance(given[0], list) else None
            if parameter_format == "NAMED":
                named = example.get("body_text_named_params")
                rows = [item.get("example") for item in named if isinstance(item, dict)] if named else None
            if not _filled(rows, len(names)):
                _examples_missing("body")
    elif kind == "FOOTER":
        _text_check(text, FOOTER_MAX, "footer")
        if PLACEHOLDER.search(str(text)):
            raise invalid_parameter("Param components[FOOTER]['text'] cannot have variables")
    elif kind == "BUTTONS":
        _buttons_check(component.get("buttons"))
    else:
        raise invalid_parameter(
            f"Param components[]['type'] must be one of HEADER, BODY, FOOTER, BUTTONS, not {kind!r}"
        )


def _buttons_check(buttons: Any) -> None:
    if not isinstance(buttons, list) or not buttons or not all(isinstance(item, dict) for item in buttons):
        raise invalid_parameter("Param components[BUTTONS]['buttons'] must be a non-empty array of objects")
    if len(buttons) > BUTTONS_MAX:
        raise invalid_parameter(
            f"Param components[BUTTONS]['buttons'] must have at most {BUTTONS_MAX} elements"
        )
    kinds = [str(button.get("type") or "").upper() for button in buttons]
    for kind, limit in BUTTON_LIMITS.items():
        if kinds.count(kind) > limit:
            raise invalid_parameter(f"A template can have at most {limit} buttons of type {kind}")
    for kind, button in zip(kinds, buttons, strict=True):
        if kind not in BUTTON_LIMITS:
            raise invalid_parameter(f"Param buttons[]['type'] must be one of {', '.join(BUTTON_LIMITS)}")
        _text_check(button.get("text"), BUTTON_TEXT_MAX, "button")
        if kind == "URL":
            url = button.get("url")
            if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
                raise invalid_parameter("Param buttons[]['url'] must be an http or https URL")
            if PLACEHOLDER.search(url) and not _filled(button.get("example"), 1):
                _examples_missing("URL button")
        if kind == "PHONE_NUMBER" and not re.fullmatch(r"\+?\d{6,20}", str(button.get("phone_number") or "")):
            raise invalid_parameter("Param buttons[]['phone_number'] must be a phone number")


def _text_check(text: Any, limit: int, where: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise invalid_parameter(f"Param components[{where.upper()}]['text'] is required")
    if len(text) > limit:
        raise template_refused(
            2388040,
            "Message template character limit exceeded",
            f"The {where} text has {len(text)} characters; it can have at most {limit}.",
        )


def _placeholders(text: Any, parameter_format: str, where: str) -> list[str]:
    names = list(dict.fromkeys(PLACEHOLDER.findall(str(text or ""))))
    if parameter_format == "POSITIONAL" and names != [str(n) for n in range(1, len(names) + 1)]:
        raise invalid_parameter(
            f"Param components[{where.upper()}]['text'] must number its variables "
            "{{1}}, {{2}} ... in order"
        )
    return names


def _filled(values: Any, count: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) >= count
        and all(isinstance(value, str) and value.strip() for value in values[:count])
    )


def _examples_missing(where: str) -> NoReturn:
    raise template_refused(
        2388043,
        "Message template variables missing sample information",
        f"Add a sample for every variable of the {where}, so that reviewers can see how the "
        "template is used.",
    )
