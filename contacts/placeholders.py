"""Placeholders filled from a contact, one syntax wherever text is written for a contact (campaigns'
template parameters, subjects and bodies; canned responses): {{name}}, {{first_name}}, {{phone}},
{{email}}, {{wa_id}}, {{language}}, {{attributes.KEY}}, with a default after "|" ({{first_name|there}})."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

from contacts.models import Contact

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|([^}]*))?\}\}")
PLACEHOLDER_FIELDS = ("name", "first_name", "phone", "email", "wa_id", "language")


def contact_values(contact: Contact) -> dict[str, Any]:
    return {
        "name": contact.name,
        "phone": contact.phone,
        "email": contact.email,
        "wa_id": contact.wa_id,
        "language": contact.language,
        "attributes": contact.attributes,
    }


def _found(path: str, contact: dict[str, Any]) -> Any:
    if path == "first_name":  # the first word of the name
        words = str(contact.get("name") or "").split()
        return words[0] if words else ""
    if path.startswith("attributes."):
        found: Any = contact.get("attributes") or {}
        for part in path.split(".")[1:]:
            found = found.get(part) if isinstance(found, dict) else None
        return found
    return contact.get(path)


def placeholders_render(text: str, contact: dict[str, Any]) -> str:
    """The placeholders of `text` filled from the contact's values (`contact_values`); after "|" a
    default for an empty value."""

    def value(match: re.Match) -> str:
        found = _found(match.group(1), contact)
        text = "" if found is None else str(found)
        return text if text.strip() else (match.group(2) or "")

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
