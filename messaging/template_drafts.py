"""A template as the console writes one (`TemplateDraft`), checked here by the rules Meta applies
when it is created, so that a mistake is named on its field before anything is sent, and turned
into the `components` of Meta's `POST /{waba_id}/message_templates`.

Meta's limits (Message Templates reference): a name of lowercase letters, digits and underscores
(512 at most); a body of 1,024 characters whose variables {{1}}, {{2}} ... are numbered in order,
neither first nor last, each with an example; a text header of 60 characters with at most one
variable; a footer of 60 without variables; at most 10 buttons of 25 characters each, the console
offering quick replies, one URL button and one phone number button.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"[a-z0-9_]+")
NAME_MAX = 512
BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_MAX = 60
BUTTON_TEXT_MAX = 25
BUTTONS_MAX = 10
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
URL = re.compile(r"https?://[^/\s]+\S*")
PHONE = re.compile(r"\+\d{6,20}")
# The languages Meta supports for templates: its code and the name it shows.
LANGUAGES = {
    "af": "Afrikaans",
    "sq": "Albanian",
    "ar": "Arabic",
    "az": "Azerbaijani",
    "bn": "Bengali",
    "bg": "Bulgarian",
    "ca": "Catalan",
    "zh_CN": "Chinese (CHN)",
    "zh_HK": "Chinese (HKG)",
    "zh_TW": "Chinese (TAI)",
    "hr": "Croatian",
    "cs": "Czech",
    "da": "Danish",
    "nl": "Dutch",
    "en": "English",
    "en_GB": "English (UK)",
    "en_US": "English (US)",
    "et": "Estonian",
    "fil": "Filipino",
    "fi": "Finnish",
    "fr": "French",
    "ka": "Georgian",
    "de": "German",
    "el": "Greek",
    "gu": "Gujarati",
    "ha": "Hausa",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "ga": "Irish",
    "it": "Italian",
    "ja": "Japanese",
    "kn": "Kannada",
    "kk": "Kazakh",
    "rw_RW": "Kinyarwanda",
    "ko": "Korean",
    "ky_KG": "Kyrgyz (Kyrgyzstan)",
    "lo": "Lao",
    "lv": "Latvian",
    "lt": "Lithuanian",
    "mk": "Macedonian",
    "ms": "Malay",
    "ml": "Malayalam",
    "mr": "Marathi",
    "nb": "Norwegian",
    "fa": "Persian",
    "pl": "Polish",
    "pt_BR": "Portuguese (BR)",
    "pt_PT": "Portuguese (POR)",
    "pa": "Punjabi",
    "ro": "Romanian",
    "ru": "Russian",
    "sr": "Serbian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "es": "Spanish",
    "es_AR": "Spanish (ARG)",
    "es_ES": "Spanish (SPA)",
    "es_MX": "Spanish (MEX)",
    "sw": "Swahili",
    "sv": "Swedish",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "uz": "Uzbek",
    "vi": "Vietnamese",
    "zu": "Zulu",
}


@dataclass(frozen=True)
class TemplateDraft:
    """What the console's form holds; `header_format` "" is no header, `header_example` the
    example of a text header's variable or the handle of a media header's sample."""

    name: str = ""
    category: str = "UTILITY"
    language: str = "en_US"
    header_format: str = ""
    header_text: str = ""
    header_example: str = ""
    body: str = ""
    body_examples: tuple[str, ...] = ()
    footer: str = ""
    quick_replies: tuple[str, ...] = ()
    url_text: str = ""
    url: str = ""
    url_example: str = ""
    phone_text: str = ""
    phone_number: str = ""


def template_placeholders(text: str) -> list[str]:
    """The variables of a text, each once, in the order they first appear."""
    return list(dict.fromkeys(PLACEHOLDER.findall(text or "")))


def template_draft_errors(draft: TemplateDraft) -> dict[str, str]:
    """Each field Meta would refuse, with why, by the form's field names; empty when it may be sent."""
    errors: dict[str, str] = {}
    if not draft.name:
        errors["name"] = "Give the template a name."
    elif not NAME.fullmatch(draft.name) or len(draft.name) > NAME_MAX:
        errors["name"] = "Use only lowercase letters, digits and underscores (order_shipped)."
    if draft.category not in CATEGORIES:
        errors["category"] = f"Choose one of {', '.join(CATEGORIES)}."
    if draft.language not in LANGUAGES:
        errors["language"] = "Choose a language WhatsApp supports."
    if draft.header_format and draft.header_format not in HEADER_FORMATS:
        errors["header_format"] = "Choose none, text, image, video or document."
    elif draft.header_format == "TEXT":
        names = template_placeholders(draft.header_text)
        if not draft.header_text.strip():
            errors["header_text"] = "Write the header's text, or choose no header."
        elif len(draft.header_text) > HEADER_TEXT_MAX:
            errors["header_text"] = _too_long(draft.header_text, HEADER_TEXT_MAX)
        elif names and names != ["1"]:
            errors["header_text"] = "A header takes at most one variable, {{1}}."
        elif names and not draft.header_example.strip():
            errors["header_example"] = "Give an example for the header's {{1}}."
    elif draft.header_format and not draft.header_example.strip():
        errors["header_example"] = (
            f"Give the handle of a sample {draft.header_format.lower()} (Meta asks for one)."
        )
    body_error = _body_error(draft.body)
    if body_error:
        errors["body"] = body_error
    else:
        for number in template_placeholders(draft.body):
            examples = draft.body_examples
            if int(number) > len(examples) or not examples[int(number) - 1].strip():
                errors[f"body_example_{number}"] = f"Give an example for {{{{{number}}}}}."
    if len(draft.footer) > FOOTER_MAX:
        errors["footer"] = _too_long(draft.footer, FOOTER_MAX)
    elif PLACEHOLDER.search(draft.footer):
        errors["footer"] = "A footer cannot have variables."
    errors.update(_buttons_errors(draft))
    return errors


def _body_error(body: str) -> str:
    if not body.strip():
        return "Write the message's body."
    if len(body) > BODY_MAX:
        return _too_long(body, BODY_MAX)
    names = template_placeholders(body)
    if names != [str(number) for number in range(1, len(names) + 1)]:
        return "Number the variables {{1}}, {{2}} … in the order they first appear."
    stripped = body.strip()
    if names and (PLACEHOLDER.match(stripped) or re.search(r"\}\}$", stripped)):
        return "A variable cannot be the first or last thing in the body: add text before or after it."
    return ""


def _buttons_errors(draft: TemplateDraft) -> dict[str, str]:
    errors: dict[str, str] = {}
    count = (
        len(draft.quick_replies)
        + bool(draft.url_text or draft.url)
        + bool(draft.phone_text or draft.phone_number)
    )
    if count > BUTTONS_MAX:
        errors["quick_replies"] = f"A template has at most {BUTTONS_MAX} buttons in all."
    elif any(len(text) > BUTTON_TEXT_MAX for text in draft.quick_replies):
        errors["quick_replies"] = f"A button's text has at most {BUTTON_TEXT_MAX} characters."
    if draft.url_text or draft.url:
        if not draft.url_text.strip() or len(draft.url_text) > BUTTON_TEXT_MAX:
            errors["url_text"] = f"Give the button a text of at most {BUTTON_TEXT_MAX} characters."
        names = template_placeholders(draft.url)
        if not URL.fullmatch(draft.url):
            errors["url"] = "Give an http or https address."
        elif names and (names != ["1"] or not draft.url.endswith("}}")):
            errors["url"] = "An address may end with one variable, {{1}}, and have no other."
        elif names and not draft.url_example.strip():
            errors["url_example"] = "Give an example for the address's {{1}}."
    if draft.phone_text or draft.phone_number:
        if not draft.phone_text.strip() or len(draft.phone_text) > BUTTON_TEXT_MAX:
            errors["phone_text"] = f"Give the button a text of at most {BUTTON_TEXT_MAX} characters."
        if not PHONE.fullmatch(draft.phone_number):
            errors["phone_number"] = "Give the number in international form: + and digits."
    return errors


def _too_long(text: str, limit: int) -> str:
    return f"At most {limit} characters; this has {len(text)}."


def template_draft_components(draft: TemplateDraft) -> list[dict]:
    """Meta's `components` for the create request, examples included."""
    components: list[dict] = []
    if draft.header_format == "TEXT":
        header: dict[str, Any] = {"type": "HEADER", "format": "TEXT", "text": draft.header_text}
        if template_placeholders(draft.header_text):
            header["example"] = {"header_text": [draft.header_example]}
        components.append(header)
    elif draft.header_format:
        example = {"header_handle": [draft.header_example]}
        components.append({"type": "HEADER", "format": draft.header_format, "example": example})
    body: dict[str, Any] = {"type": "BODY", "text": draft.body}
    count = len(template_placeholders(draft.body))
    if count:
        body["example"] = {"body_text": [list(draft.body_examples[:count])]}
    components.append(body)
    if draft.footer:
        components.append({"type": "FOOTER", "text": draft.footer})
    buttons: list[dict] = [{"type": "QUICK_REPLY", "text": text} for text in draft.quick_replies]
    if draft.url:
        button = {"type": "URL", "text": draft.url_text, "url": draft.url}
        if template_placeholders(draft.url):
            button["example"] = [draft.url_example]
        buttons.append(button)
    if draft.phone_number:
        buttons.append({"type": "PHONE_NUMBER", "text": draft.phone_text, "phone_number": draft.phone_number})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    return components


def template_draft_from(*, name: str, category: str, language: str, components: Any) -> TemplateDraft:
    """The draft of a template's stored components (a duplicate starts from it): what the console
    cannot write (a location header, other button kinds) is left out."""
    values: dict[str, Any] = {"name": name, "category": category, "language": language}
    quick_replies: list[str] = []
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type") or "").upper()
        example = component.get("example") if isinstance(component.get("example"), dict) else {}
        if kind == "HEADER" and str(component.get("format") or "TEXT").upper() in HEADER_FORMATS:
            values["header_format"] = str(component.get("format") or "TEXT").upper()
            values["header_text"] = str(component.get("text") or "")
            given = example.get("header_text") or example.get("header_handle") or [""]
            values["header_example"] = str(given[0]) if isinstance(given, list) and given else ""
        elif kind == "BODY":
            values["body"] = str(component.get("text") or "")
            rows = example.get("body_text")
            row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], list) else []
            values["body_examples"] = tuple(str(value) for value in row)
        elif kind == "FOOTER":
            values["footer"] = str(component.get("text") or "")
        elif kind == "BUTTONS":
            for button in component.get("buttons") or []:
                if not isinstance(button, dict):
                    continue
                button_type = str(button.get("type") or "").upper()
                if button_type == "QUICK_REPLY":
                    quick_replies.append(str(button.get("text") or ""))
                elif button_type == "URL" and "url" not in values:
                    values["url_text"], values["url"] = (
                        str(button.get("text") or ""),
                        str(button.get("url") or ""),
                    )
                    given = button.get("example")
                    values["url_example"] = str(given[0]) if isinstance(given, list) and given else ""
                elif button_type == "PHONE_NUMBER" and "phone_number" not in values:
                    values["phone_text"] = str(button.get("text") or "")
                    values["phone_number"] = str(button.get("phone_number") or "")
    return TemplateDraft(**values, quick_replies=tuple(quick_replies))
