"""Contact fields cleaned and checked before any write: one rule per field, errors keyed by field."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from contacts.models import Contact
from contacts.validators import validate_email
from core.json_input import json_check

PHONE_TAKEN = "A contact with this phone number already exists."
WA_ID_TAKEN = "A contact with this WhatsApp id already exists."
CONTACT_FIELDS = ("phone", "wa_id", "name", "email", "tags", "language", "attributes")

# -- validation -----------------------------------------------------------------------------------

_LANGUAGE = re.compile(r"([A-Za-z]{2,3})(?:[_-]([A-Za-z]{2}|[0-9]{3}))?")
_WA_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")


def _phone_is_valid(number: phonenumbers.PhoneNumber) -> bool:
    """phonenumbers.is_valid_number, in half the time for most numbers (imports check them all).

    is_valid_number first finds the number's region by testing the country code's regions in
    turn, main region first, then tests the number again against the region found. When the main
    region does not claim numbers by their leading digits, a number valid there is the one the
    search would return, so testing it once settles it; any other number takes the long way.
    """
    region = phonenumbers.region_code_for_country_code(number.country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(number.country_code, region)
    if (
        metadata is not None
        and metadata.leading_digits is None
        and phonenumbers.is_valid_number_for_region(number, region)
    ):
        return True
    return phonenumbers.is_valid_number(number)


def phone_normalise(raw: str) -> str:
    """E.164 for any way people write a number; without a default region it must start with +."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError({"phone": "This field is required."})
    region = settings.PHONE_DEFAULT_REGION
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as error:
        number, problem = None, _PHONE_PARSE_PROBLEMS.get(error.error_type, "not a phone number")
    if number is None or not _phone_is_valid(number):
        if region is None and not text.startswith("+"):
            raise ValidationError(
                {"phone": "Not a valid phone number: start it with + and the country code."}
            )
        if number is not None:
            problem = _phone_problem(number)
        raise ValidationError({"phone": f"Not a valid phone number: {problem}."})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_PHONE_PARSE_PROBLEMS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "its country code is not one in use",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}
_PHONE_LENGTH_PROBLEMS = {
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "the wrong length",
}


def _phone_problem(number: phonenumbers.PhoneNumber) -> str:
    """Why the phone library refuses a number it could read, as the end of a sentence."""
    code = number.country_code
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == phonenumbers.ValidationResult.INVALID_COUNTRY_CODE:
        return f"+{code} is not a country code in use"
    where = f"+{code} ({phonenumbers.region_code_for_country_code(code)})"
    if reason in _PHONE_LENGTH_PROBLEMS:
        return f"{_PHONE_LENGTH_PROBLEMS[reason]} for {where}"
    return f"the length fits {where} but no number range in use there starts with these digits"


def wa_id_clean(value: str) -> str:
    value = (value or "").strip()
    if value and not _WA_ID.fullmatch(value):
        raise ValidationError({"wa_id": "At most 32 letters, digits, '.', '_' or '-'."})
    return value


def name_clean(value: str) -> str:
    value = (value or "").strip()
    if len(value) > 200:
        raise ValidationError({"name": "At most 200 characters."})
    return value


def email_clean(value: str) -> str:
    value = (value or "").strip()
    if value:
        if len(value) > 254:
            raise ValidationError({"email": "Not a valid email address."})
        try:
            validate_email(value)
        except ValidationError as error:
            raise ValidationError({"email": error.messages}) from None
    return value


def tags_clean(value: Iterable[str]) -> list[str]:
    """Stripped, without blanks or repeats, in their first order. ';' and '|' separate tags in CSV."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError({"tags": "Must be a list of strings."})
    tags: dict[str, None] = {}
    for tag in value:
        if not isinstance(tag, str):
            raise ValidationError({"tags": "Must be a list of strings."})
        tag = tag.strip()
        if len(tag) > 64:
            raise ValidationError({"tags": f"At most 64 characters each: {tag[:20]}… is longer."})
        if ";" in tag or "|" in tag:
            raise ValidationError({"tags": "A tag cannot contain ';' or '|'."})
        if tag:
            tags[tag] = None
    return list(tags)


def language_clean(value: str) -> str:
    """A language code as WhatsApp templates name them: "en", "pt_BR" (also accepts "pt-br")."""
    value = (value or "").strip()
    if not value:
        return ""
    match = _LANGUAGE.fullmatch(value)
    if match is None:
        raise ValidationError({"language": 'Not a language code such as "en" or "en_US".'})
    language, region = match.groups()
    return f"{language.lower()}_{region.upper()}" if region else language.lower()


def attributes_clean(value: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError({"attributes": "Must be a JSON object."})
    json_check(value, field="attributes")
    return value


_CLEANERS: dict[str, Callable[[Any], Any]] = {
    "phone": phone_normalise,
    "wa_id": wa_id_clean,
    "name": name_clean,
    "email": email_clean,
    "tags": tags_clean,
    "language": language_clean,
    "attributes": attributes_clean,
}


def contact_fields_clean(**fields: Any) -> dict[str, Any]:
    """The normalised values of the given contact fields, or one ValidationError naming every bad one."""
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[ValidationError]] = {}
    for name, value in fields.items():
        try:
            cleaned[name] = _CLEANERS[name](value)
        except ValidationError as error:
            errors.update(error.error_dict)
    if errors:
        raise ValidationError(errors)
    return cleaned


def contact_uniques_check(
    *, phone: str | None = None, wa_id: str | None = None, exclude_id: int | None = None
):
    """Names the field when another contact holds the phone or WhatsApp id (the constraint decides races)."""
    others = Contact.objects.exclude(id=exclude_id) if exclude_id is not None else Contact.objects.all()
    errors = {}
    if phone and others.filter(phone=phone).exists():
        errors["phone"] = PHONE_TAKEN
    if wa_id and others.filter(wa_id=wa_id).exists():
        errors["wa_id"] = WA_ID_TAKEN
    if errors:
        raise ValidationError(errors)


def unique_violation(error: IntegrityError) -> ValidationError | None:
    constraint = getattr(getattr(error.__cause__, "diag", None), "constraint_name", None) or ""
    if "wa_id" in constraint:
        return ValidationError({"wa_id": WA_ID_TAKEN})
    if "phone" in constraint:
        return ValidationError({"phone": PHONE_TAKEN})
    return None


def contact_save(contact: Contact, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            contact.save(**kwargs)
    except IntegrityError as error:
        raise (unique_violation(error) or error) from error


def jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
