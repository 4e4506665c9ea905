"""Placeholders in a campaign's template parameters, subject and body, filled from each contact:
{{name}}, {{phone}}, {{email}}, {{wa_id}}, {{language}}, {{attributes.KEY}}, with a default after "|"."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

from contacts.models import Contact

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|([^}]*))?\}\}")
PLACEHOLDER_FIELDS = ("name", "phone", "email", "wa_id", "language")


def contact_values(contact: Contact) -> dict[str, Any]:
    return {
        "name": contact.name,
        "phone": contact.phone,
        "email": contact.email,
        "wa_id": contact.wa_id,
        "language": contact.language,
        "attributes": contact.attributes,
    }


def placeholders_render(text: str, contact: dict[str, Any]) -> str:
    """{{name}}, {{phone}}, {{email}}, {{wa_id}}, {{language}} and {{attributes.KEY}} from the
    contact; after "|" a default for an empty value."""

    def value(match: re.Match) -> str:
        path, default = match.group(1), match.group(2)
        if path.startswith("attributes."):
            found: Any = contact.get("attributes") or {}
            for part in path.split(".")[1:]:
                found = found.get(part) if isinstance(found, dict) else None
        else:
            found = contact.get(path)
        text = "" if found is None else str(found)
        return text if text.strip() else (default or "")

    return _PLACEHOLDER.sub(value, text)


def placeholders_check(text: str, field: str) -> None:
    for match in _PLACEHOLDER.finditer(text):
        path = match.group(1)
        attribute = path.startswith("attributes.") and len(path) > len("attributes.")
        if path not in PLACEHOLDER_FIELDS and not attribute:
            known = ", ".join(PLACEHOLDER_FIELDS)
            raise ValidationError(
                {field: f"Unknown placeholder {{{{{path}}}}}: one of {known} or attributes.KEY."}
            )
