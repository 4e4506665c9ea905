"""Meta's rules for what a message may hold, checked before anything is queued: the Graph request
body built from an API client's or operator's content, or a ValidationError keyed by field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from core.json_input import json_check
from core.storage import FileMissing, media_head
from messaging.models import PhoneNumber, Template
from messaging.templates import TEXT_TYPES, template_get_approved, template_parameters_expected

# -- Meta's rules ---------------------------------------------------------------------------------

TEXT_MAX = 4096
CAPTION_MAX = 1024
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
TEMPLATE_KIND = "template"
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
MB = 1024 * 1024
# Per Meta's "Supported media types": the types each kind accepts and its largest size.
MEDIA_RULES: dict[str, tuple[frozenset[str], int]] = {
    "image": (frozenset({"image/jpeg", "image/png"}), 5 * MB),
    "video": (frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
    "audio": (frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}), 16 * MB),
    "document": (
        frozenset(
            {
                "text/plain",
                "application/pdf",
                "application/msword",
                "application/vnd.ms-excel",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            }
        ),
        100 * MB,
    ),
    # 100 KB static, 500 KB animated: S3 cannot tell which, so the larger limit is checked here.
    "sticker": (frozenset({"image/webp"}), 500 * 1024),
}
CAPTIONED = ("image", "video", "document")


def media_max_bytes(mime_type: str) -> int:
    """The largest file of this type WhatsApp takes, whatever kind it is sent as; a type no kind
    takes gets the largest limit (sending it is refused anyway, saying why)."""
    base = mime_type.split(";", 1)[0].strip().lower()
    fitting = [size for types, size in MEDIA_RULES.values() if base in types]
    return max(fitting or [size for _, size in MEDIA_RULES.values()])


BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72


def require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ValidationError({field: message})


def text_field(value: Any, field: str, *, max_length: int, required: bool = True) -> str:
    if value is None or value == "":
        require(not required, field, "This field is required.")
        return ""
    require(isinstance(value, str), field, "Must be a string.")
    require(bool(value.strip()) or not required, field, "Must not be blank.")
    require(len(value) <= max_length, field, f"At most {max_length:,} characters (got {len(value):,}).")
    return value


def _object(value: Any, field: str) -> dict:
    require(isinstance(value, dict), field, "Must be an object.")
    return value


@dataclass
class Built:
    """The Graph body's `type`-keyed part and what the row shows of it."""

    body: Any
    text: str = ""
    media_key: str = ""
    media_mime_type: str = ""
    media_size: int | None = None
    media_filename: str = ""
    target_wamid: str = ""


def _text_build(content: dict) -> Built:
    body = text_field(content.get("body"), "text.body", max_length=TEXT_MAX)
    preview = content.get("preview_url", False)
    require(isinstance(preview, bool), "text.preview_url", "Must be true or false.")
    return Built({"body": body, "preview_url": preview}, text=body)


def _media_build(kind: str, content: dict) -> Built:
    types, max_size = MEDIA_RULES[kind]
    key, link = content.get("s3_key"), content.get("link")
    require(
        bool(key) != bool(link), f"{kind}.s3_key", "Give either s3_key (uploaded to S3) or link, not both."
    )
    body: dict[str, Any] = {}
    built = Built(body)
    if kind in CAPTIONED and content.get("caption"):
        body["caption"] = built.text = text_field(
            content["caption"], f"{kind}.caption", max_length=CAPTION_MAX
        )
    if kind == "document" and content.get("filename"):
        body["filename"] = built.media_filename = text_field(
            content["filename"], f"{kind}.filename", max_length=240
        )
    if link:
        require(isinstance(link, str), f"{kind}.link", "Must be a URL.")
        require(urlsplit(link).scheme in ("http", "https"), f"{kind}.link", "Must be an http(s) URL.")
        body["link"] = link
        return built
    require(isinstance(key, str), f"{kind}.s3_key", "Must be a string.")
    prefix = settings.MEDIA_OUTGOING_PREFIX
    require(key.startswith(prefix) and ".." not in key, f"{kind}.s3_key", f"Must be a key under {prefix}.")
    try:
        mime_type, size = media_head(key)
    except FileMissing as error:
        raise ValidationError({f"{kind}.s3_key": str(error)}) from None
    mime_type = mime_type.split(";")[0].strip().lower()
    require(
        mime_type in types,
        f"{kind}.s3_key",
        f"WhatsApp does not take {mime_type or 'untyped files'} as {kind}: "
        f"one of {', '.join(sorted(types))}.",
    )
    require(
        size <= max_size,
        f"{kind}.s3_key",
        f"{size:,} bytes is more than WhatsApp's {max_size:,} for {kind}.",
    )
    built.media_key, built.media_mime_type, built.media_size = key, mime_type, size
    if kind == "document" and not built.media_filename:
        body["filename"] = built.media_filename = key.rsplit("/", 1)[-1]
    return built


def _interactive_build(content: dict) -> Built:
    kind = content.get("type")
    require(kind in ("button", "list", "cta_url"), "interactive.type", "One of button, list, cta_url.")
    body_text = text_field(
        _object(content.get("body"), "interactive.body").get("text"), "interactive.body.text", max_length=1024
    )
    if "footer" in content:
        text_field(
            _object(content["footer"], "interactive.footer").get("text"),
            "interactive.footer.text",
            max_length=60,
        )
    if "header" in content:
        header = _object(content["header"], "interactive.header")
        if header.get("type") == "text":
            text_field(header.get("text"), "interactive.header.text", max_length=60)
    action = _object(content.get("action"), "interactive.action")
    if kind == "button":
        buttons = action.get("buttons")
        require(isinstance(buttons, list) and buttons, "interactive.action.buttons", "Give 1 to 3 buttons.")
        require(
            len(buttons) <= BUTTONS_MAX,
            "interactive.action.buttons",
            f"At most {BUTTONS_MAX} reply buttons (got {len(buttons)}).",
        )
        ids = set()
        for index, button in enumerate(buttons):
            field = f"interactive.action.buttons[{index}]"
            reply = _object(_object(button, field).get("reply"), f"{field}.reply")
            text_field(reply.get("title"), f"{field}.reply.title", max_length=BUTTON_TITLE_MAX)
            button_id = text_field(reply.get("id"), f"{field}.reply.id", max_length=256)
            require(button_id not in ids, f"{field}.reply.id", "Button ids must differ.")
            ids.add(button_id)
            button.setdefault("type", "reply")
    elif kind == "list":
        text_field(action.get("button"), "interactive.action.button", max_length=20)
        sections = action.get("sections")
        require(
            isinstance(sections, list) and 0 < len(sections) <= LIST_SECTIONS_MAX,
            "interactive.action.sections",
            f"Give 1 to {LIST_SECTIONS_MAX} sections.",
        )
        rows = 0
        for s_index, section in enumerate(sections):
            field = f"interactive.action.sections[{s_index}]"
            section_rows = _object(section, field).get("rows")
            require(
                isinstance(section_rows, list) and section_rows, f"{field}.rows", "Give at least one row."
            )
            if len(sections) > 1:
                text_field(section.get("title"), f"{field}.title", max_length=24)
            for r_index, row in enumerate(section_rows):
                row_field = f"{field}.rows[{r_index}]"
                _object(row, row_field)
                text_field(row.get("id"), f"{row_field}.id", max_length=200)
                text_field(row.get("title"), f"{row_field}.title", max_length=ROW_TITLE_MAX)
                text_field(
                    row.get("description"),
                    f"{row_field}.description",
                    max_length=ROW_DESCRIPTION_MAX,
                    required=False,
                )
            rows += len(section_rows)
        require(
            rows <= LIST_ROWS_MAX,
            "interactive.action.sections",
            f"At most {LIST_ROWS_MAX} rows in all sections (got {rows}).",
        )
    else:
        parameters = _object(action.get("parameters"), "interactive.action.parameters")
        text_field(
            parameters.get("display_text"), "interactive.action.parameters.display_text", max_length=20
        )
        url = parameters.get("url")
        require(
            isinstance(url, str) and urlsplit(url).scheme in ("http", "https"),
            "interactive.action.parameters.url",
            "Must be an http(s) URL.",
        )
    return Built(content, text=body_text)


def _reaction_build(content: dict) -> Built:
    wamid = text_field(content.get("message_id"), "reaction.message_id", max_length=255)
    emoji = content.get("emoji", "")
    require(isinstance(emoji, str) and len(emoji) <= 16, "reaction.emoji", "One emoji, or empty to remove.")
    return Built({"message_id": wamid, "emoji": emoji}, text=emoji, target_wamid=wamid)


def _location_build(content: dict) -> Built:
    body: dict[str, Any] = {}
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = content.get(name)
        require(
            isinstance(value, int | float) and not isinstance(value, bool) and -bound <= value <= bound,
            f"location.{name}",
            f"A number between -{bound} and {bound}.",
        )
        body[name] = value
    for name in ("name", "address"):
        if content.get(name):
            body[name] = text_field(content[name], f"location.{name}", max_length=1000)
    text = ", ".join(part for part in (body.get("name"), body.get("address")) if part)
    return Built(body, text=text or f"{body['latitude']}, {body['longitude']}")


def _contacts_build(content: Any) -> Built:
    cards = content.get("contacts") if isinstance(content, dict) else content
    require(isinstance(cards, list) and cards, "contacts", "Give a list of one or more contact cards.")
    names = []
    for index, card in enumerate(cards):
        name = _object(_object(card, f"contacts[{index}]").get("name"), f"contacts[{index}].name")
        names.append(
            text_field(name.get("formatted_name"), f"contacts[{index}].name.formatted_name", max_length=500)
        )
    return Built(cards, text=", ".join(names))


def _template_parameter_check(want: str, parameter: dict, field: str, *, where: str) -> None:
    """A parameter of the type the template's component takes: a text (or currency, date and
    time) for a placeholder, the medium's link or id for a media header, coordinates for a
    location header."""
    got = str(parameter.get("type", "")).lower()
    if want == "text":
        require(got in TEXT_TYPES, field, f"{where} wants a text parameter here, got {got or 'none'}.")
        return
    require(got == want, field, f"{where} wants a {want} parameter, got {got or 'none'}.")
    value = _object(parameter.get(want), f"{field}.{want}")
    if want == "location":
        for name, bound in (("latitude", 90), ("longitude", 180)):
            number = value.get(name)
            require(
                isinstance(number, int | float)
                and not isinstance(number, bool)
                and -bound <= number <= bound,
                f"{field}.location.{name}",
                f"A number between -{bound} and {bound}.",
            )
        return
    require(bool(value.get("link") or value.get("id")), f"{field}.{want}", "Give the medium's link or id.")


def _template_find(*, waba_id: str, name: str, language: str) -> Template:
    template = template_get_approved(waba_id=waba_id, name=name, language=language)
    if template is not None:
        return template
    found = Template.objects.filter(waba_id=waba_id, name=name, language=language).first()
    if found is None:
        raise ValidationError({"template.name": f"No template {name} ({language}) in WABA {waba_id}."})
    raise ValidationError(
        {"template.name": f"Template {name} ({language}) is {found.status or 'not approved'}, not APPROVED."}
    )


def template_build(content: dict, *, phone_number: PhoneNumber) -> Built:
    name = text_field(content.get("name"), "template.name", max_length=512)
    language = content.get("language")
    code = language.get("code") if isinstance(language, dict) else language
    code = text_field(code, "template.language", max_length=16)
    components = content.get("components", [])
    require(isinstance(components, list), "template.components", "Must be a list.")
    template = _template_find(waba_id=phone_number.waba_id, name=name, language=code)
    expected = template_parameters_expected(template.components)
    given: dict[str, list[tuple[str, dict]]] = {}
    for index, component in enumerate(components):
        field = f"template.components[{index}]"
        _object(component, field)
        kind = str(component.get("type", "")).lower()
        require(kind in ("header", "body", "button"), f"{field}.type", "One of header, body, button.")
        parameters = component.get("parameters", [])
        require(isinstance(parameters, list), f"{field}.parameters", "Must be a list.")
        key = f"button.{component.get('index', 0)}" if kind == "button" else kind
        for p_index, parameter in enumerate(parameters):
            require(
                isinstance(parameter, dict) and "type" in parameter,
                f"{field}.parameters[{p_index}]",
                'Each parameter is an object with a "type".',
            )
            given.setdefault(key, []).append((f"{field}.parameters[{p_index}]", parameter))
    for key in sorted(set(expected) | set(given)):
        want, got = expected.get(key, []), given.get(key, [])
        require(
            len(want) == len(got),
            "template.components",
            f"Template {name} ({code}) wants {len(want)} parameter{'s' if len(want) != 1 else ''} "
            f"in its {key}, got {len(got)}.",
        )
        for want_type, (field, parameter) in zip(want, got, strict=True):
            _template_parameter_check(want_type, parameter, field, where=f"Template {name} ({code})'s {key}")
    body = {"name": name, "language": {"code": code}}
    if components:
        body["components"] = components
    body_text = next(
        (
            c.get("text", "")
            for c in template.components
            if isinstance(c, dict) and str(c.get("type")).upper() == "BODY"
        ),
        "",
    )
    return Built(body, text=body_text or name)


def content_build(kind: str, content: Any, *, phone_number: PhoneNumber) -> Built:
    json_check(content, field=kind)
    if kind == "contacts":
        return _contacts_build(content)
    _object(content, kind)
    if kind == "text":
        return _text_build(content)
    if kind == TEMPLATE_KIND:
        return template_build(content, phone_number=phone_number)
    if kind in MEDIA_KINDS:
        return _media_build(kind, content)
    if kind == "interactive":
        return _interactive_build(content)
    if kind == "reaction":
        return _reaction_build(content)
    return _location_build(content)
