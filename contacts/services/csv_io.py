"""Contacts to and from CSV: a streamed export, and an import that validates every row, reports
the ones it refuses by line, and upserts the rest in chunks through COPY."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC
from typing import IO, Any

import psycopg
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contacts.models import Contact
from contacts.services.cleaning import (
    CONTACT_FIELDS,
    WA_ID_TAKEN,
    email_clean,
    language_clean,
    name_clean,
    phone_normalise,
    tags_clean,
    wa_id_clean,
)
from core.audit import Actor, audit_log_record
from core.json_input import NESTED_TOO_DEEP, json_check, text_problem, text_storable
from core.spreadsheets import cell_escape, cell_unescape

#
# Export and import share one layout, so an export imports back unchanged. A cell that a
# spreadsheet would run as a formula is written escaped, and the import unescapes it
# (core.spreadsheets).

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
REFUSED_REASON_COLUMN = "error"
IMPORT_COLUMNS = frozenset(CONTACT_FIELDS) | {"opted_out_at", "opt_out_source"}
# `error` is the reason column of the refused rows' file, so that file imports back once fixed.
IGNORED_COLUMNS = frozenset(
    {"id", "created_at", "updated_at", "opted_in_at", "opt_in_source", "is_opted_out", REFUSED_REASON_COLUMN}
)
IMPORT_CHUNK_ROWS = 5000
_TAG_SEPARATOR = re.compile(r"[;|]")
# In the temporary table's order: (column, cleaner, value of an empty cell).
_IMPORT_CLEANERS = (
    ("phone", phone_normalise, ""),
    ("wa_id", wa_id_clean, ""),
    ("name", name_clean, ""),
    ("email", email_clean, ""),
    ("tags", lambda cell: tags_clean(_TAG_SEPARATOR.split(cell)), []),
    ("language", language_clean, ""),
)
_json_encode = json.JSONEncoder(ensure_ascii=False).encode


def _export_row(row: tuple) -> list[str]:
    phone, wa_id, name, email, tags, language, attributes, opted_out_at, opt_out_source, created_at = row
    return [
        phone,
        cell_escape(wa_id),
        cell_escape(name),
        cell_escape(email),
        cell_escape(";".join(tags)),
        language,
        json.dumps(attributes, ensure_ascii=False, separators=(",", ":")) if attributes else "",
        opted_out_at.isoformat() if opted_out_at else "",
        cell_escape(opt_out_source),
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
    """A refused row: the line it starts on, why, and its cells as the file has them."""

    line: int
    reason: str
    cells: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    total_rows: int = 0
    header: list[str] = field(default_factory=list)


def _cell_rewrite(cell: str) -> str:
    """The cell as the import reads it, written as the export would write it."""
    return cell_escape(cell_unescape(text_storable(cell)))


def import_refused_csv(*, result: ImportResult, out: IO[str]) -> int:
    """Writes the refused rows as CSV to fix and import again: the file's header and each refused
    row's cells, with the reasons in an `error` column after the header's last (cells past the
    header's width follow it). Cells are escaped as the export escapes them; text PostgreSQL
    cannot store is replaced by U+FFFD. Returns how many rows it wrote."""
    width = len(result.header)
    writer = csv.writer(out)
    writer.writerow([*map(_cell_rewrite, result.header), REFUSED_REASON_COLUMN])
    for error in result.errors:
        cells = [_cell_rewrite(cell) for cell in error.cells]
        cells += [""] * (width - len(cells))
        writer.writerow([*cells[:width], cell_escape(error.reason), *cells[width:]])
    return len(result.errors)


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
    records: Iterator[tuple[int, list[str]]], result: ImportResult
) -> tuple[int, dict[str, int], list[tuple[int, str]]]:
    """The header's width, its known columns by name, and the others (their values become attributes)."""
    _, header = next(records, (1, None))
    if header is None:
        raise ValidationError({"file": "The file is empty; it needs a header line with a phone column."})
    result.header = header
    known: dict[str, int] = {}
    extra: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, title in enumerate(header):
        title = cell_unescape(title.strip())
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
        raw[name] = cell_unescape(value) if value[:1] == "'" else value
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
        except RecursionError:
            attributes = {}
            errors["attributes"] = [ValidationError(NESTED_TOO_DEEP)]
        if not isinstance(attributes, dict):
            errors["attributes"] = [ValidationError("Not a JSON object.")]
            attributes = {}
    for index, title in extra:
        value = cells[index].strip()
        if value:
            attributes[title] = cell_unescape(value) if value[:1] == "'" else value
    try:
        json_check(attributes, field="attributes")
    except ValidationError as error:
        errors.update(error.error_dict)
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


def _cells_problem(cells: list[str]) -> str | None:
    """Why a row's cells cannot be stored (a NUL character, say), naming the first such cell."""
    for index, cell in enumerate(cells, 1):
        if problem := text_problem(cell):
            return _reason(f"cell {index}", problem)
    return None


def _import_rows(
    records: Iterator[tuple[int, list[str]]], header: tuple, result: ImportResult
) -> Iterator[tuple]:
    """The file's good rows, each with its line first, and their cells; the bad ones go to result.errors."""
    width, known, extra = header
    seen_phones: dict[str, int] = {}
    seen_wa_ids: dict[str, str] = {}
    for start, cells in records:
        if not "".join(cells).strip():
            continue
        result.total_rows += 1
        if len(cells) > width:
            reason = f"{len(cells)} cells but the header has {width} (quote a value that holds a comma)"
            result.errors.append(RowError(start, reason, tuple(cells)))
            continue
        if len(cells) < width:
            cells += [""] * (width - len(cells))
        if problem := _cells_problem(cells):
            result.errors.append(RowError(start, problem, tuple(cells)))
            continue
        try:
            row = _import_row(start, cells, known, extra)
        except ValidationError as error:
            result.errors.append(RowError(start, _reasons(error), tuple(cells)))
            continue
        phone, wa_id = row[1], row[2]
        if phone in seen_phones:
            reason = f"phone: {phone} is already on line {seen_phones[phone]}"
            result.errors.append(RowError(start, reason, tuple(cells)))
            continue
        if wa_id and seen_wa_ids.setdefault(wa_id, phone) != phone:
            reason = f"wa_id: {wa_id} is already used by {seen_wa_ids[wa_id]}"
            result.errors.append(RowError(start, reason, tuple(cells)))
            continue
        seen_phones[phone] = start
        yield row, tuple(cells)


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
    later in the file is reported and the first row with it wins. Each refused row keeps its
    cells, and import_refused_csv writes them as a file to fix and import again. A file that is not UTF-8, or
    has no phone column, raises ValidationError and imports nothing.

    `progress` is called with the number of bytes (characters for a text stream) read since its
    last call.
    """
    result = ImportResult()
    lines = _Lines(file)
    records = _records(lines)
    rows = _import_rows(records, _header_read(records, result), result)
    reported = 0

    def next_chunk() -> list[tuple[tuple, tuple[str, ...]]]:
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
            _import_load(cursor, [row for row, _ in chunk])
            # In pipeline mode the upsert is sent without waiting for its answer, so PostgreSQL
            # works on this chunk while Python validates the next: they cost about the same.
            with cursor.connection.pipeline() if psycopg.Pipeline.is_supported() else nullcontext():
                cursor.execute(_IMPORT_UPSERT)
                following = next_chunk()
                created, updated, refused = cursor.fetchone()
            result.created += created
            result.updated += updated
            result.unchanged += len(chunk) - len(refused) - created - updated
            cells = {row[0]: row_cells for row, row_cells in chunk}
            reason = _reason("wa_id", WA_ID_TAKEN)
            result.errors.extend(RowError(line, reason, cells[line]) for line in refused)
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
