"""Canned responses: prepared answers kept per team, inserted into the reply box by their shortcut.

Who sees which: one without a group is everyone's, one with a group its members' (superusers see
all, to manage them); `canned_responses_visible_q` is that rule, for the reply box and the admin.
A body's placeholders ({{first_name|there}}) are the contacts' ones (contacts.placeholders),
filled for the conversation's contact when the reply box lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils.text import slugify

from contacts.models import Contact
from contacts.placeholders import contact_values, placeholders_check, placeholders_render
from core.audit import Actor, audit_log_record
from messaging.models import CannedResponse

CANNED_RESPONSE_FIELDS = ("shortcut", "title", "body", "group")
SHORTCUT_MAX_LENGTH = CannedResponse._meta.get_field("shortcut").max_length
TITLE_MAX_LENGTH = CannedResponse._meta.get_field("title").max_length
SHORTCUT_TAKEN = next(
    constraint.violation_error_message
    for constraint in CannedResponse._meta.constraints
    if constraint.name == "cannedresponse_unique"
)


def canned_responses_visible_q(user: AbstractBaseUser) -> Q:
    """Everyone's canned responses and those of the user's groups; every one for a superuser."""
    if getattr(user, "is_superuser", False):
        return Q()
    return Q(group__isnull=True) | Q(group__in=Group.objects.filter(user=user))


def canned_responses_for(user: AbstractBaseUser) -> QuerySet[CannedResponse]:
    """The canned responses `user` sees, by shortcut (a team's before everyone's of the same name)."""
    return CannedResponse.objects.filter(canned_responses_visible_q(user)).select_related("group")


@dataclass(frozen=True)
class CannedResponseFilled:
    """A canned response as the reply box inserts it: its body filled for one contact."""

    shortcut: str
    title: str
    body: str
    team: str  # the group's name; "" for everyone's


def canned_responses_filled(*, user: AbstractBaseUser, contact: Contact) -> list[CannedResponseFilled]:
    values = contact_values(contact)
    return [
        CannedResponseFilled(
            shortcut=canned.shortcut,
            title=canned.title,
            body=placeholders_render(canned.body, values),
            team=canned.group.name if canned.group is not None else "",
        )
        for canned in canned_responses_for(user)
    ]


def canned_response_fields_clean(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields given, trimmed and checked: a slug for shortcut, a body WhatsApp accepts as a
    text message, only known placeholders. ValidationError names the field."""
    unknown = set(fields) - set(CANNED_RESPONSE_FIELDS)
    if unknown:
        raise TypeError(f"got canned response fields it cannot set: {', '.join(sorted(unknown))}")
    cleaned = {name: value.strip() if isinstance(value, str) else value for name, value in fields.items()}
    errors: dict[str, str] = {}
    if "shortcut" in cleaned:
        shortcut = cleaned["shortcut"].lstrip("/")
        if not shortcut or slugify(shortcut) != shortcut.lower():
            errors["shortcut"] = "Letters, digits, hyphens and underscores only, as in hours or order-status."
        elif len(shortcut) > SHORTCUT_MAX_LENGTH:
            errors["shortcut"] = f"At most {SHORTCUT_MAX_LENGTH} characters."
        cleaned["shortcut"] = shortcut.lower()
    if "title" in cleaned and not cleaned["title"]:
        errors["title"] = "This field is required."
    elif len(cleaned.get("title", "")) > TITLE_MAX_LENGTH:
        errors["title"] = f"At most {TITLE_MAX_LENGTH} characters."
    if "body" in cleaned:
        body = cleaned["body"]
        if not body:
            errors["body"] = "This field is required."
        elif len(body) > CannedResponse.BODY_MAX_LENGTH:
            limit = CannedResponse.BODY_MAX_LENGTH
            errors["body"] = f"At most {limit} characters (WhatsApp's limit for a text message)."
        else:
            try:
                placeholders_check(body, "body")
            except ValidationError as error:
                errors["body"] = error.message_dict["body"][0]
    if errors:
        raise ValidationError(errors)
    return cleaned


def _canned_response_save(canned: CannedResponse, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            canned.save(**kwargs)
    except IntegrityError as error:
        if "cannedresponse_unique" in str(error):
            raise ValidationError({"shortcut": SHORTCUT_TAKEN}) from error
        raise


def _audit_value(value: Any) -> Any:
    return value.name if isinstance(value, Group) else value


@transaction.atomic
def canned_response_create(
    *, shortcut: str, title: str, body: str, group: Group | None, actor: Actor, source: str
) -> CannedResponse:
    values = canned_response_fields_clean(
        {"shortcut": shortcut, "title": title, "body": body, "group": group}
    )
    created_by = actor if actor is not None and actor.is_authenticated else None
    canned = CannedResponse(**values, created_by=created_by)
    _canned_response_save(canned)
    audit_log_record(
        actor=actor,
        source=source,
        action="canned_response.create",
        target=canned,
        changes={name: [None, _audit_value(value)] for name, value in values.items() if value is not None},
    )
    return canned


@transaction.atomic
def canned_response_update(
    *, canned_response: CannedResponse, actor: Actor, source: str, **fields: Any
) -> CannedResponse:
    """Changes only the fields given; a call that changes nothing writes nothing."""
    values = canned_response_fields_clean(fields)
    changes = {
        name: [getattr(canned_response, name), value]
        for name, value in values.items()
        if getattr(canned_response, name) != value
    }
    if not changes:
        return canned_response
    for name, (_, new) in changes.items():
        setattr(canned_response, name, new)
    try:
        _canned_response_save(canned_response, update_fields=[*changes, "updated_at"])
    except ValidationError:
        for name, (old, _) in changes.items():
            setattr(canned_response, name, old)
        raise
    audit_log_record(
        actor=actor,
        source=source,
        action="canned_response.update",
        target=canned_response,
        changes={name: [_audit_value(old), _audit_value(new)] for name, (old, new) in changes.items()},
    )
    return canned_response


@transaction.atomic
def canned_responses_delete(*, canned_responses: Iterable[CannedResponse], actor: Actor, source: str) -> int:
    count = 0
    for canned in canned_responses:
        audit_log_record(actor=actor, source=source, action="canned_response.delete", target=canned)
        canned.delete()
        count += 1
    return count
