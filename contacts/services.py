"""Every write to contacts, whichever door it comes through (API, admin, command, import).

Each write is validated here, runs in one transaction with its AuditLog row, and raises Django's
ValidationError keyed by field, which the API answers as a 400 and the admin shows on the form.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import phonenumbers
import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contacts.models import OPT_OUT_FIELDS, Channel, Contact
from contacts.validators import validate_email
from core.audit import Actor, audit_log_record
from core.models import AuditLog

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
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not _phone_is_valid(number):
        if region is None and not text.startswith("+"):
            raise ValidationError(
                {"phone": "Not a valid phone number: start it with + and the country code."}
            )
        raise ValidationError({"phone": "Not a valid phone number."})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _wa_id_clean(value: str) -> str:
    value = (value or "").strip()
    if value and not _WA_ID.fullmatch(value):
        raise ValidationError({"wa_id": "At most 32 letters, digits, '.', '_' or '-'."})
    return value


def _name_clean(value: str) -> str:
    value = (value or "").strip()
    if len(value) > 200:
        raise ValidationError({"name": "At most 200 characters."})
    return value


def _email_clean(value: str) -> str:
    value = (value or "").strip()
    if value:
        if len(value) > 254:
            raise ValidationError({"email": "Not a valid email address."})
        try:
            validate_email(value)
        except ValidationError as error:
            raise ValidationError({"email": error.messages}) from None
    return value


def _tags_clean(value: Iterable[str]) -> list[str]:
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


def _language_clean(value: str) -> str:
    """A language code as WhatsApp templates name them: "en", "pt_BR" (also accepts "pt-br")."""
    value = (value or "").strip()
    if not value:
        return ""
    match = _LANGUAGE.fullmatch(value)
    if match is None:
        raise ValidationError({"language": 'Not a language code such as "en" or "en_US".'})
    language, region = match.groups()
    return f"{language.lower()}_{region.upper()}" if region else language.lower()


def _attributes_clean(value: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError({"attributes": "Must be a JSON object."})
    return value


_CLEANERS: dict[str, Callable[[Any], Any]] = {
    "phone": phone_normalise,
    "wa_id": _wa_id_clean,
    "name": _name_clean,
    "email": _email_clean,
    "tags": _tags_clean,
    "language": _language_clean,
    "attributes": _attributes_clean,
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


def _unique_violation(error: IntegrityError) -> ValidationError | None:
    constraint = getattr(getattr(error.__cause__, "diag", None), "constraint_name", None) or ""
    if "wa_id" in constraint:
        return ValidationError({"wa_id": WA_ID_TAKEN})
    if "phone" in constraint:
        return ValidationError({"phone": PHONE_TAKEN})
    return None


def _save(contact: Contact, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            contact.save(**kwargs)
    except IntegrityError as error:
        raise (_unique_violation(error) or error) from error


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# -- one contact ----------------------------------------------------------------------------------


@transaction.atomic
def contact_create(
    *,
    phone: str,
    name: str = "",
    email: str = "",
    tags: Iterable[str] = (),
    language: str = "",
    attributes: dict[str, Any] | None = None,
    wa_id: str = "",
    actor: Actor = None,
    source: str,
) -> Contact:
    values = contact_fields_clean(
        phone=phone, wa_id=wa_id, name=name, email=email, tags=tags, language=language, attributes=attributes
    )
    contact_uniques_check(phone=values["phone"], wa_id=values["wa_id"])
    contact = Contact(**values)
    _save(contact)
    audit_log_record(
        actor=actor,
        source=source,
        action="contact.create",
        target=contact,
        changes={name: [None, value] for name, value in values.items() if value},
    )
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, actor: Actor, source: str, **fields: Any) -> Contact:
    """Changes only the fields given; a call that changes nothing writes nothing."""
    unknown = set(fields) - set(CONTACT_FIELDS)
    if unknown:
        raise TypeError(f"contact_update() got fields it cannot change: {', '.join(sorted(unknown))}")
    values = contact_fields_clean(**fields)
    changes = {
        name: [getattr(contact, name), value]
        for name, value in values.items()
        if getattr(contact, name) != value
    }
    if not changes:
        return contact
    contact_uniques_check(
        phone=values.get("phone") if "phone" in changes else None,
        wa_id=values.get("wa_id") if "wa_id" in changes else None,
        exclude_id=contact.pk,
    )
    for name, (_, new) in changes.items():
        setattr(contact, name, new)
    try:
        _save(contact, update_fields=[*changes, "updated_at"])
    except (ValidationError, IntegrityError):
        for name, (old, _) in changes.items():
            setattr(contact, name, old)
        raise
    audit_log_record(actor=actor, source=source, action="contact.update", target=contact, changes=changes)
    return contact


@transaction.atomic
def contact_delete(*, contact: Contact, actor: Actor, source: str) -> None:
    audit_log_record(actor=actor, source=source, action="contact.delete", target=contact)
    contact.delete()


def _opt_source(reason: str, source: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > 64:
        raise ValidationError({"reason": "At most 64 characters."})
    return reason or source


@transaction.atomic
def contact_opt_out(*, contact: Contact, reason: str = "", actor: Actor, source: str) -> Contact:
    """Stops messages to the contact. Opting out again keeps the first time and reason.

    The row is claimed with a conditional UPDATE, so two doors opting out at once (a STOP reply
    and an operator) record one opt-out, the first.
    """
    opt_out_source = _opt_source(reason, source)
    now = timezone.now()
    claimed = Contact.objects.filter(pk=contact.pk, opted_out_at__isnull=True).update(
        opted_out_at=now, opt_out_source=opt_out_source, updated_at=now
    )
    if not claimed:
        contact.refresh_from_db(fields=["opted_out_at", "opt_out_source", "updated_at"])
        return contact
    contact.opted_out_at, contact.opt_out_source, contact.updated_at = now, opt_out_source, now
    audit_log_record(
        actor=actor,
        source=source,
        action="contact.opt_out",
        target=contact,
        changes={
            "opted_out_at": [None, _jsonable(contact.opted_out_at)],
            "opt_out_source": ["", opt_out_source],
        },
    )
    return contact


@transaction.atomic
def contact_opt_in(*, contact: Contact, reason: str = "", actor: Actor, source: str) -> Contact:
    """Records consent, and lifts an opt-out: only call it when the contact asked for messages."""
    opt_in_source = _opt_source(reason, source)
    changes = {
        "opted_in_at": [_jsonable(contact.opted_in_at), _jsonable(now := timezone.now())],
        "opt_in_source": [contact.opt_in_source, opt_in_source],
    }
    contact.opted_in_at, contact.opt_in_source = now, opt_in_source
    if contact.opted_out_at is not None:
        changes["opted_out_at"] = [_jsonable(contact.opted_out_at), None]
        changes["opt_out_source"] = [contact.opt_out_source, ""]
        contact.opted_out_at, contact.opt_out_source = None, ""
    contact.save(
        update_fields=["opted_in_at", "opt_in_source", "opted_out_at", "opt_out_source", "updated_at"]
    )
    audit_log_record(actor=actor, source=source, action="contact.opt_in", target=contact, changes=changes)
    return contact


def _channel_fields(channel: str) -> tuple[str, str]:
    try:
        return OPT_OUT_FIELDS[Channel(channel)]
    except ValueError:
        raise ValidationError({"channel": f"Unknown channel {channel!r}."}) from None


@transaction.atomic
def contact_channel_opt_out(
    *, contact: Contact, channel: str, reason: str = "", actor: Actor, source: str
) -> Contact:
    """Stops one channel's messages to the contact (WhatsApp's is contact_opt_out's).

    Claimed like contact_opt_out, with a conditional UPDATE: the first opt-out is the one kept and
    audited, and a repeat (a second click of the link, SNS delivering a STOP twice) writes nothing.
    """
    if Channel(channel) == Channel.WHATSAPP:
        return contact_opt_out(contact=contact, reason=reason, actor=actor, source=source)
    at_field, source_field = _channel_fields(channel)
    opt_out_source = _opt_source(reason, source)
    now = timezone.now()
    claimed = Contact.objects.filter(pk=contact.pk, **{f"{at_field}__isnull": True}).update(
        **{at_field: now, source_field: opt_out_source, "updated_at": now}
    )
    if not claimed:
        contact.refresh_from_db(fields=[at_field, source_field, "updated_at"])
        return contact
    setattr(contact, at_field, now)
    setattr(contact, source_field, opt_out_source)
    contact.updated_at = now
    audit_log_record(
        actor=actor,
        source=source,
        action=f"contact.{channel}_opt_out",
        target=contact,
        changes={at_field: [None, _jsonable(now)], source_field: ["", opt_out_source]},
    )
    return contact


@transaction.atomic
def contact_channel_opt_in(
    *, contact: Contact, channel: str, reason: str = "", actor: Actor, source: str
) -> Contact:
    """Lifts one channel's opt-out: only call it when the contact asked for that channel's messages."""
    if Channel(channel) == Channel.WHATSAPP:
        return contact_opt_in(contact=contact, reason=reason, actor=actor, source=source)
    at_field, source_field = _channel_fields(channel)
    _opt_source(reason, source)
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    if getattr(contact, at_field) is None:
        return contact
    changes = {
        at_field: [_jsonable(getattr(contact, at_field)), None],
        source_field: [getattr(contact, source_field), ""],
    }
    setattr(contact, at_field, None)
    setattr(contact, source_field, "")
    contact.save(update_fields=[at_field, source_field, "updated_at"])
    audit_log_record(
        actor=actor, source=source, action=f"contact.{channel}_opt_in", target=contact, changes=changes
    )
    return contact


# -- many contacts --------------------------------------------------------------------------------


def _bulk_audit(*, ids: list[int], actor: Actor, source: str, action: str, **changes: Any) -> None:
    audit_log_record(
        actor=actor,
        source=source,
        action=action,
        target_repr=f"{len(ids)} contact{'s' if len(ids) != 1 else ''}",
        changes={**changes, "ids": ids},
    )


def _bulk_update(
    queryset: models.QuerySet[Contact], *, set_sql: str, where_sql: str, params: Sequence[Any]
) -> list[int]:
    """One UPDATE ... RETURNING id over the queryset's rows, whatever their number.

    `where_sql` states the condition on the row itself, so PostgreSQL checks it again on a row
    that a concurrent transaction changed first instead of overwriting that change.
    """
    select_sql, select_params = queryset.order_by().values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE contacts_contact SET {set_sql}, updated_at = now()"
            f" WHERE ({where_sql}) AND id IN ({select_sql}) RETURNING id",
            [*params, *select_params],
        )
        return sorted(id_ for (id_,) in cursor.fetchall())


@transaction.atomic
def contacts_delete(*, queryset: models.QuerySet[Contact], actor: Actor, source: str) -> int:
    ids = sorted(queryset.order_by().select_for_update().values_list("id", flat=True))
    if not ids:
        return 0
    queryset.order_by().delete()
    _bulk_audit(ids=ids, actor=actor, source=source, action="contacts.delete")
    return len(ids)


@transaction.atomic
def contacts_tag(
    *, queryset: models.QuerySet[Contact], tags: Iterable[str], actor: Actor, source: str
) -> int:
    """Appends the tags a contact lacks, in SQL; returns how many contacts gained one."""
    tags = contact_fields_clean(tags=tags)["tags"]
    if not tags:
        raise ValidationError({"tags": "Give at least one tag."})
    ids = _bulk_update(
        queryset,
        set_sql="tags = tags || ARRAY(SELECT t FROM unnest(%s::varchar(64)[]) WITH ORDINALITY AS u(t, n)"
        " WHERE t <> ALL(tags) ORDER BY n)",
        where_sql="NOT tags @> %s::varchar(64)[]",
        params=[tags, tags],
    )
    if ids:
        _bulk_audit(ids=ids, actor=actor, source=source, action="contacts.tag", tags=tags)
    return len(ids)


@transaction.atomic
def contacts_untag(
    *, queryset: models.QuerySet[Contact], tags: Iterable[str], actor: Actor, source: str
) -> int:
    tags = contact_fields_clean(tags=tags)["tags"]
    if not tags:
        raise ValidationError({"tags": "Give at least one tag."})
    ids = _bulk_update(
        queryset,
        set_sql="tags = ARRAY(SELECT t FROM unnest(tags) WITH ORDINALITY AS u(t, n)"
        " WHERE t <> ALL(%s::varchar(64)[]) ORDER BY n)",
        where_sql="tags && %s::varchar(64)[]",
        params=[tags, tags],
    )
    if ids:
        _bulk_audit(ids=ids, actor=actor, source=source, action="contacts.untag", tags=tags)
    return len(ids)


@transaction.atomic
def contacts_opt_out(
    *, queryset: models.QuerySet[Contact], reason: str = "", actor: Actor, source: str
) -> int:
    """Opts out those not opted out yet; returns how many that was."""
    opt_out_source = _opt_source(reason, source)
    ids = _bulk_update(
        queryset,
        set_sql="opted_out_at = now(), opt_out_source = %s",
        where_sql="opted_out_at IS NULL",
        params=[opt_out_source],
    )
    if ids:
        _bulk_audit(
            ids=ids, actor=actor, source=source, action="contacts.opt_out", opt_out_source=opt_out_source
        )
    return len(ids)


@transaction.atomic
def contacts_channel_opt_out(
    *, queryset: models.QuerySet[Contact], channel: str, reason: str = "", actor: Actor, source: str
) -> int:
    """Opts those not opted out yet out of one channel; returns how many that was."""
    if Channel(channel) == Channel.WHATSAPP:
        return contacts_opt_out(queryset=queryset, reason=reason, actor=actor, source=source)
    at_field, source_field = _channel_fields(channel)
    opt_out_source = _opt_source(reason, source)
    ids = _bulk_update(
        queryset,
        set_sql=f"{at_field} = now(), {source_field} = %s",
        where_sql=f"{at_field} IS NULL",
        params=[opt_out_source],
    )
    if ids:
        _bulk_audit(
            ids=ids,
            actor=actor,
            source=source,
            action=f"contacts.{channel}_opt_out",
            **{source_field: opt_out_source},
        )
    return len(ids)


# -- CSV ------------------------------------------------------------------------------------------
#
# Export and import share one layout, so an export imports back unchanged. A cell that a
# spreadsheet would run as a formula (it starts with = + - or @) is written with a leading
# apostrophe, and the import takes one apostrophe off such a cell.

EXPORT_COLUMNS = (
    "phone",
    "wa_id",
    "name",
    "email",
    "tags",
    "language",
    "attributes",
    "opted_out_at",
    "opt_out_source",
    "created_at",
)
IMPORT_COLUMNS = frozenset(CONTACT_FIELDS) | {"opted_out_at", "opt_out_source"}
IGNORED_COLUMNS = frozenset(
    {"id", "created_at", "updated_at", "opted_in_at", "opt_in_source", "is_opted_out"}
)
IMPORT_CHUNK_ROWS = 5000
_TAG_SEPARATOR = re.compile(r"[;|]")
# In the temporary table's order: (column, cleaner, value of an empty cell).
_IMPORT_CLEANERS = (
    ("phone", phone_normalise, ""),
    ("wa_id", _wa_id_clean, ""),
    ("name", _name_clean, ""),
    ("email", _email_clean, ""),
    ("tags", lambda cell: _tags_clean(_TAG_SEPARATOR.split(cell)), []),
    ("language", _language_clean, ""),
)
_json_encode = json.JSONEncoder(ensure_ascii=False).encode
_FORMULA = re.compile(r"'*[=+\-@]")
_FORMULA_ESCAPED = re.compile(r"'+[=+\-@]")


def _cell_escape(value: str) -> str:
    return f"'{value}" if _FORMULA.match(value) else value


def _cell_unescape(value: str) -> str:
    return value[1:] if _FORMULA_ESCAPED.match(value) else value


def _export_row(row: tuple) -> list[str]:
    phone, wa_id, name, email, tags, language, attributes, opted_out_at, opt_out_source, created_at = row
    return [
        phone,
        _cell_escape(wa_id),
        _cell_escape(name),
        _cell_escape(email),
        _cell_escape(";".join(tags)),
        language,
        json.dumps(attributes, ensure_ascii=False, separators=(",", ":")) if attributes else "",
        opted_out_at.isoformat() if opted_out_at else "",
        _cell_escape(opt_out_source),
        created_at.isoformat(),
    ]


def _export_rows(queryset: models.QuerySet[Contact]) -> Iterator[list[str]]:
    for row in queryset.values_list(*EXPORT_COLUMNS).iterator(chunk_size=2000):
        yield _export_row(row)


def contacts_export_csv(*, queryset: models.QuerySet[Contact], out: IO[str]) -> int:
    """Writes the contacts to a text stream as CSV; returns how many it wrote."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    written = 0
    for row in _export_rows(queryset):
        writer.writerow(row)
        written += 1
    return written


def contacts_export_csv_stream(
    *, queryset: models.QuerySet[Contact], rows_per_chunk: int = 1000
) -> Iterator[str]:
    """The same CSV as pieces of text, for a streaming HTTP response."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for count, row in enumerate(_export_rows(queryset), 1):
        writer.writerow(row)
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    total_rows: int = 0


class _Lines:
    """The file's physical lines as text, counting them and the bytes read, for csv.reader."""

    def __init__(self, file: IO[bytes] | IO[str]):
        self.file = file
        self.number = 0
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.file:
            self.number += 1
            self.bytes_read += len(raw)
            if isinstance(raw, bytes):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    message = f'Line {self.number} is not UTF-8 text: save the file as "CSV UTF-8".'
                    raise ValidationError({"file": message}) from None
            else:
                line = raw
            if self.number == 1:
                line = line.removeprefix("\ufeff")
            yield line


def _records(lines: _Lines) -> Iterator[tuple[int, list[str]]]:
    """The CSV records, each with the line it starts on. Broken quoting stops the whole file:
    past a quote that is never closed, no line can be trusted to be a row."""
    reader = csv.reader(lines, strict=True)
    while True:
        start = lines.number + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ValidationError({"file": f"Line {start}: {error}."}) from None
        yield start, cells


def _header_read(
    records: Iterator[tuple[int, list[str]]],
) -> tuple[int, dict[str, int], list[tuple[int, str]]]:
    """The header's width, its known columns by name, and the others (their values become attributes)."""
    _, header = next(records, (1, None))
    if header is None:
        raise ValidationError({"file": "The file is empty; it needs a header line with a phone column."})
    known: dict[str, int] = {}
    extra: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, title in enumerate(header):
        title = title.strip()
        name = title.lower()
        if not title or name in IGNORED_COLUMNS:
            continue
        if name in seen:
            raise ValidationError({"file": f'The header names the column "{title}" twice.'})
        seen.add(name)
        if name in IMPORT_COLUMNS:
            known[name] = index
        else:
            extra.append((index, title))
    if "phone" not in known:
        raise ValidationError({"file": 'The header line has no "phone" column.'})
    return len(header), known, extra


def _reason(name: str, message: str) -> str:
    """A row's reason from a field and its API message, as in 'phone: not a valid phone number'."""
    return f"{name}: {message[0].lower()}{message[1:].rstrip('.')}"


def _reasons(error: ValidationError) -> str:
    return "; ".join(
        _reason(name, message) for name, messages in error.message_dict.items() for message in messages
    )


def _import_row(line: int, cells: list[str], known: dict[str, int], extra: list[tuple[int, str]]) -> tuple:
    """The row as the temporary table's columns, or ValidationError naming the bad cells."""
    raw = dict.fromkeys(IMPORT_COLUMNS, "")
    for name, index in known.items():
        value = cells[index].strip()
        raw[name] = _cell_unescape(value) if value[:1] == "'" else value
    errors: dict[str, list[ValidationError]] = {}
    values = []
    for name, clean, empty in _IMPORT_CLEANERS:
        value = raw[name]
        if value or name == "phone":
            try:
                value = clean(value)
            except ValidationError as error:
                errors.update(error.error_dict)
        else:
            value = empty
        values.append(value)
    attributes: dict[str, Any] = {}
    if raw["attributes"]:
        try:
            attributes = json.loads(raw["attributes"])
        except ValueError:
            attributes = None
        if not isinstance(attributes, dict):
            errors["attributes"] = [ValidationError("Not a JSON object.")]
            attributes = {}
    for index, title in extra:
        value = cells[index].strip()
        if value:
            attributes[title] = _cell_unescape(value) if value[:1] == "'" else value
    opted_out_at = None
    if raw["opted_out_at"]:
        try:
            opted_out_at = parse_datetime(raw["opted_out_at"])
        except ValueError:
            opted_out_at = None
        if opted_out_at is None:
            errors["opted_out_at"] = [ValidationError("Not a date and time such as 2025-01-31T09:00:00Z.")]
        elif timezone.is_naive(opted_out_at):
            opted_out_at = opted_out_at.replace(tzinfo=UTC)
    if len(raw["opt_out_source"]) > 64:
        errors["opt_out_source"] = [ValidationError("At most 64 characters.")]
    if errors:
        raise ValidationError(errors)
    return (
        line,
        *values,
        _json_encode(attributes) if attributes else "{}",
        opted_out_at,
        (raw["opt_out_source"] or "csv") if opted_out_at else "",
    )


# Rows arrive validated (lengths included), by binary COPY, which wants plain types.
_IMPORT_TABLE = """
    CREATE TEMPORARY TABLE contact_import (
        line integer NOT NULL,
        phone text NOT NULL,
        wa_id text NOT NULL,
        name text NOT NULL,
        email text NOT NULL,
        tags text[] NOT NULL,
        language text NOT NULL,
        attributes text NOT NULL,
        opted_out_at timestamptz,
        opt_out_source text NOT NULL
    ) ON COMMIT DROP
"""
_IMPORT_COPY = "COPY contact_import FROM STDIN (FORMAT BINARY)"
_IMPORT_TYPES = ["int4", "text", "text", "text", "text", "text[]", "text", "text", "timestamptz", "text"]
# A WhatsApp id held by another number would break the unique constraint (the partial index
# answers this only when the query repeats its condition, c.wa_id <> '').
_IMPORT_WA_ID_TAKEN = """
    SELECT FROM contacts_contact AS c
    WHERE i.wa_id <> '' AND c.wa_id <> '' AND c.wa_id = i.wa_id AND c.phone IS DISTINCT FROM i.phone
"""
# One statement per chunk. A row whose WhatsApp id another number holds is refused. Empty
# cells never overwrite; tags are a union and attributes a merge; an import may opt a contact
# out, never back in. A row the file would not change is left alone: neither written nor counted.
_IMPORT_UPSERT = f"""
    WITH upserted AS (
        INSERT INTO contacts_contact AS c (
            phone, wa_id, name, email, tags, language, attributes, opted_in_at, opt_in_source,
            opted_out_at, opt_out_source, created_at, updated_at
        )
        SELECT phone, wa_id, name, email, tags, language, attributes::jsonb, NULL, '',
               opted_out_at, opt_out_source, now(), now()
        FROM contact_import AS i
        WHERE NOT EXISTS ({_IMPORT_WA_ID_TAKEN})
        ON CONFLICT (phone) DO UPDATE SET
            wa_id = COALESCE(NULLIF(EXCLUDED.wa_id, ''), c.wa_id),
            name = COALESCE(NULLIF(EXCLUDED.name, ''), c.name),
            email = COALESCE(NULLIF(EXCLUDED.email, ''), c.email),
            language = COALESCE(NULLIF(EXCLUDED.language, ''), c.language),
            tags = c.tags || ARRAY(
                SELECT t FROM unnest(EXCLUDED.tags) WITH ORDINALITY AS u(t, n)
                WHERE t <> ALL(c.tags) ORDER BY n
            ),
            attributes = c.attributes || EXCLUDED.attributes,
            opted_out_at = COALESCE(c.opted_out_at, EXCLUDED.opted_out_at),
            opt_out_source = CASE WHEN c.opted_out_at IS NULL AND EXCLUDED.opted_out_at IS NOT NULL
                                  THEN EXCLUDED.opt_out_source ELSE c.opt_out_source END,
            updated_at = now()
        WHERE (EXCLUDED.wa_id <> '' AND EXCLUDED.wa_id <> c.wa_id)
           OR (EXCLUDED.name <> '' AND EXCLUDED.name <> c.name)
           OR (EXCLUDED.email <> '' AND EXCLUDED.email <> c.email)
           OR (EXCLUDED.language <> '' AND EXCLUDED.language <> c.language)
           OR NOT c.tags @> EXCLUDED.tags
           OR c.attributes || EXCLUDED.attributes <> c.attributes
           OR (c.opted_out_at IS NULL AND EXCLUDED.opted_out_at IS NOT NULL)
        RETURNING xmax = 0 AS created
    )
    SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created),
           ARRAY(SELECT line FROM contact_import AS i WHERE EXISTS ({_IMPORT_WA_ID_TAKEN}) ORDER BY line)
    FROM upserted
"""


def _import_load(cursor: psycopg.Cursor, rows: list[tuple]) -> None:
    cursor.execute("TRUNCATE contact_import")
    with cursor.copy(_IMPORT_COPY) as copy:
        copy.set_types(_IMPORT_TYPES)
        for row in rows:
            copy.write_row(row)


def _import_rows(
    records: Iterator[tuple[int, list[str]]], header: tuple, result: ImportResult
) -> Iterator[tuple]:
    """The file's good rows, each with its line first; the bad ones go to result.errors."""
    width, known, extra = header
    seen_phones: dict[str, int] = {}
    seen_wa_ids: dict[str, str] = {}
    for start, cells in records:
        if not "".join(cells).strip():
            continue
        result.total_rows += 1
        if len(cells) > width:
            reason = f"{len(cells)} cells but the header has {width} (quote a value that holds a comma)"
            result.errors.append(RowError(start, reason))
            continue
        if len(cells) < width:
            cells += [""] * (width - len(cells))
        try:
            row = _import_row(start, cells, known, extra)
        except ValidationError as error:
            result.errors.append(RowError(start, _reasons(error)))
            continue
        phone, wa_id = row[1], row[2]
        if phone in seen_phones:
            result.errors.append(RowError(start, f"phone: {phone} is already on line {seen_phones[phone]}"))
            continue
        if wa_id and seen_wa_ids.setdefault(wa_id, phone) != phone:
            result.errors.append(RowError(start, f"wa_id: {wa_id} is already used by {seen_wa_ids[wa_id]}"))
            continue
        seen_phones[phone] = start
        yield row


@transaction.atomic
def contacts_import_csv(
    *,
    file: IO[bytes] | IO[str],
    actor: Actor,
    source: str,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Imports a CSV of contacts in one pass and one transaction: every good row, or nothing.

    The header line must have a `phone` column; phone, wa_id, name, email, tags (separated by
    ";" or "|"), language, attributes (a JSON object), opted_out_at and opt_out_source are read as
    such, the export's other columns are skipped, and any other column becomes an attribute (a
    string; empty cells are left out). Each bad row is reported by the number of the physical
    line it starts on (the header is line 1) and is skipped; the others are upserted on phone,
    so importing a file twice changes nothing the second time. A phone number that appears again
    later in the file is reported and the first row with it wins. A file that is not UTF-8, or
    has no phone column, raises ValidationError and imports nothing.

    `progress` is called with the number of bytes (characters for a text stream) read since its
    last call.
    """
    result = ImportResult()
    lines = _Lines(file)
    records = _records(lines)
    rows = _import_rows(records, _header_read(records), result)
    reported = 0

    def next_chunk() -> list[tuple]:
        nonlocal reported
        chunk = list(itertools.islice(rows, IMPORT_CHUNK_ROWS))
        if progress is not None and lines.bytes_read > reported:
            progress(lines.bytes_read - reported)
            reported = lines.bytes_read
        return chunk

    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own, for COPY and pipeline mode
        cursor.execute(_IMPORT_TABLE)
        # Compiling the upsert (JIT) would take longer than running it, for each chunk.
        cursor.execute("SET LOCAL jit = off")
        chunk = next_chunk()
        while chunk:
            _import_load(cursor, chunk)
            # In pipeline mode the upsert is sent without waiting for its answer, so PostgreSQL
            # works on this chunk while Python validates the next: they cost about the same.
            with cursor.connection.pipeline() if psycopg.Pipeline.is_supported() else nullcontext():
                cursor.execute(_IMPORT_UPSERT)
                following = next_chunk()
                created, updated, refused = cursor.fetchone()
            result.created += created
            result.updated += updated
            result.unchanged += len(chunk) - len(refused) - created - updated
            result.errors.extend(RowError(line, _reason("wa_id", WA_ID_TAKEN)) for line in refused)
            chunk = following
        cursor.execute("DROP TABLE contact_import")
    result.errors.sort(key=lambda error: error.line)
    audit_log_record(
        actor=actor,
        source=source,
        action="contacts.import",
        target_repr=str(getattr(file, "name", "") or "CSV import"),
        changes={
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "errors": len(result.errors),
            "total_rows": result.total_rows,
        },
    )
    return result


# -- contacts from WhatsApp -------------------------------------------------------------------------

WHATSAPP_PROFILE_NAME = "whatsapp_profile_name"
WHATSAPP_USERNAME = "whatsapp_username"


def _phone_from_wa_id(wa_id: str) -> str | None:
    """The E.164 number a WhatsApp id spells, or None when phonenumbers does not accept it."""
    if not wa_id.isdigit():
        return None
    try:
        return phone_normalise("+" + wa_id)
    except ValidationError:
        return None


def _whatsapp_contact_find(*, wa_id: str, user_id: str, phone: str | None) -> Contact | None:
    """By WhatsApp id, else business-scoped user id, else the phone number of a contact that has no
    WhatsApp id yet (an imported one, which gains its wa_id)."""
    condition = models.Q(pk__in=[])
    if wa_id:
        condition |= models.Q(wa_id=wa_id)
    if user_id:
        condition |= models.Q(user_id=user_id)
    if phone:
        condition |= models.Q(phone=phone, wa_id="")
    found = list(Contact.objects.filter(condition)[:3])
    for matches in (
        lambda contact: wa_id and contact.wa_id == wa_id,
        lambda contact: user_id and contact.user_id == user_id,
        lambda contact: phone and contact.phone == phone,
    ):
        for contact in found:
            if matches(contact):
                return contact
    return None


def _whatsapp_changes(
    contact: Contact, *, wa_id: str, user_id: str, phone: str | None, profile_name: str, username: str
) -> dict[str, Any]:
    """What Meta's word changes: ids the contact lacks, and the profile name and username. The name
    follows the profile name while it is empty or still the last one WhatsApp gave."""
    changes: dict[str, Any] = {}
    if wa_id and not contact.wa_id:
        changes["wa_id"] = wa_id
    if user_id and not contact.user_id:
        changes["user_id"] = user_id
    if phone and contact.phone is None and (wa_id == contact.wa_id or "wa_id" in changes):
        changes["phone"] = phone
    attributes = dict(contact.attributes or {})
    if profile_name and attributes.get(WHATSAPP_PROFILE_NAME) != profile_name:
        if not contact.name or contact.name == attributes.get(WHATSAPP_PROFILE_NAME):
            changes["name"] = profile_name
        attributes[WHATSAPP_PROFILE_NAME] = profile_name
    if username and attributes.get(WHATSAPP_USERNAME) != username:
        attributes[WHATSAPP_USERNAME] = username
    if attributes != (contact.attributes or {}):
        changes["attributes"] = attributes
    return changes


def contact_upsert_whatsapp(
    *,
    wa_id: str,
    user_id: str = "",
    profile_name: str = "",
    username: str = "",
    inbound_at: datetime | None,
) -> Contact:
    """The contact a webhook names, made if new, with what Meta says about it kept current.

    Found by WhatsApp id, else by business-scoped user id (newer payloads may carry only that),
    else by the phone number the WhatsApp id spells. A new contact's phone is that number, or
    none when phonenumbers rejects it: the contact is kept all the same. Meta's profile name is
    kept in attributes["whatsapp_profile_name"] and becomes the name unless an operator gave
    another. `last_inbound_at` only moves forward. Creations and identity changes are audited
    (source "webhook"); the inbound time is not. Two workers naming the same new contact make one:
    the loser of the insert finds the winner's row.
    """
    wa_id, user_id = (wa_id or "").strip(), (user_id or "").strip()
    profile_name, username = _name_clean(profile_name[:200]), (username or "").strip()[:128]
    if not wa_id and not user_id:
        raise ValueError("contact_upsert_whatsapp() needs a wa_id or a user_id")
    if len(wa_id) > 32 or len(user_id) > 128:
        raise ValueError("contact_upsert_whatsapp() got an id longer than Meta's")
    phone = _phone_from_wa_id(wa_id)
    ids = {
        "wa_id": wa_id,
        "user_id": user_id,
        "phone": phone,
        "profile_name": profile_name,
        "username": username,
    }
    for _ in range(3):
        contact = _whatsapp_contact_find(wa_id=wa_id, user_id=user_id, phone=phone)
        try:
            if contact is None:
                with transaction.atomic():
                    return _whatsapp_contact_create(**ids, inbound_at=inbound_at)
            if _whatsapp_changes(contact, **ids):
                with transaction.atomic():
                    contact = _whatsapp_contact_update(contact.pk, **ids)
        except (IntegrityError, Contact.DoesNotExist):
            continue  # another worker took an id or the phone first, or deleted the contact: look again
        if inbound_at is not None and (
            contact.last_inbound_at is None or contact.last_inbound_at < inbound_at
        ):
            Contact.objects.filter(pk=contact.pk).filter(
                models.Q(last_inbound_at__isnull=True) | models.Q(last_inbound_at__lt=inbound_at)
            ).update(last_inbound_at=inbound_at, updated_at=timezone.now())
            contact.last_inbound_at = inbound_at
        return contact
    raise IntegrityError(f"could not upsert the WhatsApp contact {wa_id or user_id}")


def _whatsapp_contact_update(pk: int, **ids: Any) -> Contact:
    contact = Contact.objects.select_for_update().get(pk=pk)
    changes = _whatsapp_changes(contact, **ids)
    # An id or number another contact holds stays with it (merging two contacts is an operator's call).
    for name in ("phone", "user_id"):
        if name in changes and Contact.objects.filter(**{name: changes[name]}).exists():
            del changes[name]
    if changes:
        audit = {name: [_jsonable(getattr(contact, name)), value] for name, value in changes.items()}
        for name, value in changes.items():
            setattr(contact, name, value)
        contact.save(update_fields=[*changes, "updated_at"])
        audit_log_record(
            actor=None, source=AuditLog.Source.WEBHOOK, action="contact.update", target=contact, changes=audit
        )
    return contact


def _whatsapp_contact_create(
    *,
    wa_id: str,
    user_id: str,
    phone: str | None,
    profile_name: str,
    username: str,
    inbound_at: datetime | None,
) -> Contact:
    """A new contact, without a phone when another contact holds the number under another wa_id."""
    if phone and Contact.objects.filter(phone=phone).exists():
        phone = None
    attributes = {
        name: value
        for name, value in ((WHATSAPP_PROFILE_NAME, profile_name), (WHATSAPP_USERNAME, username))
        if value
    }
    contact = Contact.objects.create(
        phone=phone,
        wa_id=wa_id,
        user_id=user_id,
        name=profile_name,
        attributes=attributes,
        last_inbound_at=inbound_at,
    )
    audit_log_record(
        actor=None,
        source=AuditLog.Source.WEBHOOK,
        action="contact.create",
        target=contact,
        changes={
            name: [None, value]
            for name, value in (
                ("phone", phone),
                ("wa_id", wa_id),
                ("user_id", user_id),
                ("name", profile_name),
            )
            if value
        },
    )
    return contact
