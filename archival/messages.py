"""Message archival: a day of old messages → one gzipped JSON Lines object in S3 → verified → deleted.

A day's batch moves through states, each reached by one commit, and a run first finishes every
batch left unfinished before it opens a new one:

1. open (one transaction): the ArchiveBatch row is written with the day, the highest message id
   (`max_id`) and `snapshot_at`; its key contains the row's id, so every rerun writes the same
   object. A crash here leaves either no row or an open one.
2. upload (no transaction held by us; the COPY reads one snapshot): the day's messages with
   id ≤ max_id are streamed by `COPY (SELECT row_to_json …) TO STDOUT`, gzipped and sent as an S3
   multipart upload in PART_SIZE parts; then the row becomes `uploaded` with its count, size,
   sha256 and ETag. A crash before that commit leaves an open batch and perhaps an incomplete
   upload, which the rerun aborts before it writes the object again under the same key.
3. verify: S3 is asked for the object's size and ETag (its MD5 of the parts, computed by S3 on
   receipt) and both must equal what was sent; then the row becomes `verified`. A mismatch puts
   the batch back to open (it is written again); a crash before the commit verifies again.
4. delete (one transaction): the batch row is locked, the rows to delete are chosen (the day's,
   id ≤ max_id, unchanged since `snapshot_at`), their send attempts (nested in the record) are
   deleted, every nullable reference to them is cleared (the record keeps the referencing ids),
   the conversations' counts are recorded, the messages are deleted and the row becomes `deleted`.
   All of it commits together or not at all, so a crash anywhere in it leaves the rows and a
   verified batch that the rerun deletes.

Nothing is deleted before its object is verified, and only rows that the object holds are deleted:
a message changed after the snapshot stays live and goes into a later batch. Runs and restores take
one PostgreSQL advisory lock, so no restore puts rows back while a batch of theirs is between its
snapshot and its delete. A message reaching 90 days is no longer written by anything else.

Restore reads a batch's object back (streamed, gunzipped into a temporary table by COPY FROM),
checks its sha256 and schema version, and inserts every message whose wamid and id are not in the
table already (ON CONFLICT DO NOTHING), with its send attempts, and points the rows whose reference
the delete cleared (analytics events, campaign recipients: their ids are in the record) at it
again, in one transaction: running it twice changes nothing. Batches are restored newest first, so
a message archived twice (restored, then archived again) comes back as its latest copy. A message
whose contact was deleted since is not restored; a reference to a deleted sender number or user
comes back empty.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Max, Min
from django.utils import timezone
from psycopg import sql

from archival.models import ArchiveBatch
from core.aws import ObjectUpload, multipart_uploads_abort, object_chunks, object_head
from messaging.models import Message, SendAttempt

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PART_SIZE = 8 * 1024 * 1024  # S3's parts are at least 5 MiB, the last excepted
GZIP_LEVEL = 3
RESTORE_CHUNK = 256 * 1024  # gzipped bytes read at a time; a chunk inflates to some 15 times that
LOCK_ID = 0x77686172_61726368 & 0x7FFFFFFFFFFFFFFF  # pg_advisory_lock's key for runs and restores
# COPY's CSV mode with a quote and a delimiter that JSON text never holds raw: lines pass verbatim.
_COPY_JSON = "FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02'"

Progress = Callable[[int], None]


class ArchivalError(Exception):
    """An archival step that must not go on (S3 holds something else, a reference it cannot keep)."""


class ArchivalBusy(ArchivalError):
    """Another archival run or restore holds the lock."""


def archival_crash_point(point: str) -> None:
    """Called at each named step between commits; tests replace it to crash there."""


@dataclass(frozen=True)
class RestoreResult:
    batch: ArchiveBatch
    records: int
    inserted: int
    skipped_contact_gone: int


# -- the lock -----------------------------------------------------------------------------------


@contextmanager
def archival_lock() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_ID])
        if not cursor.fetchone()[0]:
            raise ArchivalBusy("another archival run or restore is in progress")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_ID])


# -- archive ------------------------------------------------------------------------------------


def messages_cutoff(*, older_than_days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC at the start of the day `older_than_days` ago: the days before it are archived."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=older_than_days), dt_time.min, tzinfo=UTC)


def messages_archivable_count(*, older_than_days: int) -> int:
    return Message.objects.filter(timestamp__lt=messages_cutoff(older_than_days=older_than_days)).count()


def messages_archive(
    *, older_than_days: int | None = None, progress: Progress | None = None
) -> list[ArchiveBatch]:
    """Archive every whole day of messages older than `older_than_days` (ARCHIVE_MESSAGES_AFTER_DAYS);
    returns the batches it finished. Raises ArchivalBusy when another run holds the lock."""
    days = settings.ARCHIVE_MESSAGES_AFTER_DAYS if older_than_days is None else older_than_days
    cutoff = messages_cutoff(older_than_days=days)
    message_references()  # refuses before anything is written when a reference could not be kept
    done: list[ArchiveBatch] = []
    with archival_lock():
        unfinished = ArchiveBatch.objects.filter(
            kind=ArchiveBatch.Kind.MESSAGES,
            state__in=[ArchiveBatch.State.OPEN, ArchiveBatch.State.UPLOADED, ArchiveBatch.State.VERIFIED],
        ).order_by("id")
        for batch in unfinished:
            done.append(archive_batch_finish(batch=batch, progress=progress))
        resumed_days: set[date] = {batch.day for batch in done}

        def new_batches() -> Iterator[ArchiveBatch]:
            day = None
            while (day := _next_day(cutoff=cutoff, after=day, skip=resumed_days)) is not None:
                yield _batch_open(day=day)

        done += _each_in_parallel(
            lambda batch: archive_batch_finish(batch=batch, progress=progress, resumed=False), new_batches()
        )
    return done


def _each_in_parallel(function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """function(item) for each item, ARCHIVE_WORKERS at a time, each worker on a database connection
    of its own; items are drawn only as workers free up, and none after a failure, which is raised
    once the running ones have finished."""
    workers = settings.ARCHIVE_WORKERS
    if workers <= 1:
        return [function(item) for item in items]

    def call(item: Any) -> Any:
        try:
            return function(item)
        finally:
            connection.close()

    results: list[Any] = []
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: set[Future] = set()
        for item in items:
            running.add(pool.submit(call, item))
            if len(running) >= workers:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    if future.exception() is not None:
                        failure = failure or future.exception()
                    else:
                        results.append(future.result())
                if failure is not None:
                    break
        for future in running:
            if future.exception() is not None:
                failure = failure or future.exception()
            else:
                results.append(future.result())
    if failure is not None:
        raise failure
    return results


def _next_day(*, cutoff: datetime, after: date | None, skip: set[date]) -> date | None:
    """The first day after `after` and before `cutoff` with messages, other than the days in `skip`
    (resumed in this run: what is left of them changed after their snapshot and waits for the next
    run)."""
    start = _day_bounds(after)[1] if after is not None else None
    while True:
        queryset = Message.objects.filter(timestamp__lt=cutoff)
        if start is not None:
            queryset = queryset.filter(timestamp__gte=start)
        oldest = queryset.aggregate(oldest=Min("timestamp"))["oldest"]
        if oldest is None:
            return None
        day = oldest.astimezone(UTC).date()
        if day not in skip:
            return day
        start = _day_bounds(day)[1]


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, dt_time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def messages_archive_key(*, day: date, batch_id: int) -> str:
    return f"{settings.ARCHIVE_PREFIX}messages/{day:%Y/%m/%d}/messages-{day:%Y%m%d}-{batch_id}.jsonl.gz"


@transaction.atomic
def _batch_open(*, day: date) -> ArchiveBatch:
    max_id = Message.objects.aggregate(max_id=Max("id"))["max_id"] or 0
    batch = ArchiveBatch.objects.create(
        kind=ArchiveBatch.Kind.MESSAGES,
        day=day,
        max_id=max_id,
        snapshot_at=timezone.now(),
        schema_version=SCHEMA_VERSION,
    )
    batch.key = messages_archive_key(day=day, batch_id=batch.pk)
    batch.save(update_fields=["key"])
    return batch


def archive_batch_finish(
    *, batch: ArchiveBatch, progress: Progress | None = None, resumed: bool = True
) -> ArchiveBatch:
    """Take a batch from wherever it stopped to deleted (or empty). Failures are recorded on the
    row and raised. `resumed=False` only for a batch just opened: no earlier upload to abort."""
    try:
        if batch.state == ArchiveBatch.State.OPEN:
            batch = _batch_upload(batch=batch, progress=progress, resumed=resumed)
            archival_crash_point("uploaded")
        if batch.state == ArchiveBatch.State.UPLOADED:
            batch = _batch_verify(batch=batch)
            archival_crash_point("verified")
        if batch.state == ArchiveBatch.State.VERIFIED:
            batch = _batch_delete(batch=batch)
    except Exception as error:
        ArchiveBatch.objects.filter(pk=batch.pk).update(
            error=f"{type(error).__name__}: {error}"[:2000], attempts=models.F("attempts") + 1
        )
        raise
    logger.info(
        "archive batch %s: %s, %d record(s), %d byte(s), %d row(s) deleted",
        batch.pk,
        batch.state,
        batch.record_count,
        batch.bytes,
        batch.deleted_count,
    )
    return batch


def _records_query(*, batch: ArchiveBatch) -> sql.Composed:
    """One JSON object per message: every column, the schema version, its send attempts nested,
    and the ids of the rows whose reference to it the delete clears. One row_to_json over the
    message's columns and the extra fields (text composed around it costs twice as much); the send
    attempts and referencing ids are aggregated for the day's ids at once (read once, then an index
    scan for the array of them) and joined, not looked up row by row. The nested values are jsonb,
    whose text has no line breaks (json_agg's has)."""
    start, end = _day_bounds(batch.day)
    day = sql.SQL(
        "SELECT d.id FROM {messages} d WHERE d.timestamp >= {start} AND d.timestamp < {end}"
        " AND d.id <= {max_id}"
    ).format(
        messages=sql.Identifier(Message._meta.db_table),
        start=sql.Literal(start),
        end=sql.Literal(end),
        max_id=sql.Literal(batch.max_id),
    )
    links = [reference for reference in message_references() if reference.action == "set_null"]
    joins = sql.SQL("").join(
        sql.SQL(
            " LEFT JOIN (SELECT r.{column} AS message_id, jsonb_agg(r.{pk} ORDER BY r.{pk}) AS ids"
            " FROM {table} r WHERE r.{column} = ANY (ARRAY(SELECT id FROM day)) GROUP BY r.{column}) {alias}"
            " ON {alias}.message_id = m.id"
        ).format(
            pk=sql.Identifier(reference.pk),
            table=sql.Identifier(reference.table),
            column=sql.Identifier(reference.column),
            alias=sql.Identifier(f"link{number}"),
        )
        for number, reference in enumerate(links)
    )
    references = sql.SQL(", ").join(
        sql.SQL("{name}, COALESCE({alias}.ids, '[]'::jsonb)").format(
            name=sql.Literal(reference.name), alias=sql.Identifier(f"link{number}")
        )
        for number, reference in enumerate(links)
    )
    return sql.SQL(
        "COPY (WITH day AS MATERIALIZED ({day})"
        " SELECT row_to_json(x) FROM (SELECT m.*, {version} AS schema_version,"
        " COALESCE(a.attempts, '[]'::jsonb) AS send_attempts,"
        ' json_build_object({references}) AS "references"'
        " FROM {messages} m LEFT JOIN ("
        "SELECT s.message_id, jsonb_agg(to_jsonb(s) ORDER BY s.id) AS attempts FROM {attempts} s"
        " WHERE s.message_id = ANY (ARRAY(SELECT id FROM day)) GROUP BY s.message_id) a"
        " ON a.message_id = m.id{joins}"
        " WHERE m.timestamp >= {start} AND m.timestamp < {end} AND m.id <= {max_id} ORDER BY m.id) x"
        ") TO STDOUT WITH (" + _COPY_JSON + ")"
    ).format(
        version=sql.Literal(SCHEMA_VERSION),
        references=references,
        joins=joins,
        day=day,
        messages=sql.Identifier(Message._meta.db_table),
        attempts=sql.Identifier(SendAttempt._meta.db_table),
        start=sql.Literal(start),
        end=sql.Literal(end),
        max_id=sql.Literal(batch.max_id),
    )


class _ObjectWriter:
    """Gzip, then the checked upload (core.aws.ObjectUpload): memory stays at about two parts."""

    def __init__(self, *, key: str, metadata: dict[str, str], resumed: bool):
        if resumed:
            multipart_uploads_abort(key)  # what an interrupted run left
        self.upload = ObjectUpload(
            key, content_type="application/gzip", metadata=metadata, part_size=PART_SIZE
        )
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip stream

    @property
    def size(self) -> int:
        return self.upload.size

    @property
    def sha256(self):
        return self.upload.sha256

    def write(self, data: bytes | memoryview) -> None:
        self.upload.write(self.compressor.compress(data))

    def close(self) -> str:
        """Completes the object; returns the ETag S3 will report for it."""
        self.upload.write(self.compressor.flush())
        return self.upload.close()

    def abort(self) -> None:
        self.upload.abort()


def _batch_upload(*, batch: ArchiveBatch, progress: Progress | None, resumed: bool) -> ArchiveBatch:
    started = time.monotonic()
    writer = _ObjectWriter(
        key=batch.key,
        resumed=resumed,
        metadata={
            "schema-version": str(SCHEMA_VERSION),
            "day": batch.day.isoformat(),
            "batch": str(batch.pk),
        },
    )
    records = 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # A day's query is small: compiling it (JIT) and parallel workers cost more than they save.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            with cursor.copy(_records_query(batch=batch)) as copy:
                for block in copy:
                    lines = bytes(block).count(b"\n")
                    records += lines
                    writer.write(block)
                    if progress is not None and lines:
                        progress(lines)
        if not records:
            writer.abort()
            batch.state = ArchiveBatch.State.EMPTY
            batch.save(update_fields=["state"])
            return batch
        etag = writer.close()
    except BaseException:
        writer.abort()
        raise
    batch.record_count, batch.bytes = records, writer.size
    batch.sha256, batch.etag = writer.sha256.hexdigest(), etag
    batch.state, batch.uploaded_at = ArchiveBatch.State.UPLOADED, timezone.now()
    batch.upload_s = round(time.monotonic() - started, 3)
    batch.error = ""
    batch.save(
        update_fields=["record_count", "bytes", "sha256", "etag", "state", "uploaded_at", "upload_s", "error"]
    )
    return batch


def _batch_verify(*, batch: ArchiveBatch) -> ArchiveBatch:
    head = object_head(batch.key) or {}
    etag = head.get("ETag", "").strip('"')
    if head.get("ContentLength") != batch.bytes or etag != batch.etag:
        ArchiveBatch.objects.filter(pk=batch.pk).update(state=ArchiveBatch.State.OPEN)
        raise ArchivalError(
            f"batch {batch.pk}: S3 holds {head.get('ContentLength')} bytes with ETag {etag} at {batch.key},"
            f" not the {batch.bytes} bytes with ETag {batch.etag} written; it will be written again"
        )
    batch.state, batch.verified_at = ArchiveBatch.State.VERIFIED, timezone.now()
    batch.save(update_fields=["state", "verified_at"])
    return batch


@dataclass(frozen=True)
class Reference:
    table: str
    column: str
    pk: str  # the referencing table's primary key column
    action: str  # "delete" (nested in the record) or "set_null" (ids kept in the record)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


def message_references() -> list[Reference]:
    """Every foreign key to Message and what archival does with it: the send attempts go with their
    message (they are in its record); a nullable reference is cleared, and the ids of the rows
    that held it are kept in the record (`references`) so that a restore links them again. Any
    other kind would lose rows the archive does not hold, so archival refuses to run."""
    references = []
    for relation in Message._meta.related_objects:
        if not relation.one_to_many and not relation.one_to_one:
            raise ArchivalError(f"archival cannot delete messages referenced by {relation.name}")
        model, field = relation.related_model, relation.field
        if model is SendAttempt:
            action = "delete"
        elif relation.on_delete is models.SET_NULL:
            action = "set_null"
        elif relation.on_delete is models.DO_NOTHING:
            continue
        else:
            raise ArchivalError(
                f"archival cannot delete messages referenced by {model._meta.label}.{field.name}"
                f" ({relation.on_delete.__name__}): make it SET_NULL or nest it in the archive record"
            )
        references.append(Reference(model._meta.db_table, field.column, model._meta.pk.column, action))
    return references


def _batch_delete(*, batch: ArchiveBatch) -> ArchiveBatch:
    started = time.monotonic()
    references = message_references()
    start, end = _day_bounds(batch.day)
    with transaction.atomic():
        batch = ArchiveBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.state != ArchiveBatch.State.VERIFIED:
            return batch
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL(
                    "CREATE TEMP TABLE archival_doomed ON COMMIT DROP AS SELECT id, contact_id FROM {}"
                    " WHERE timestamp >= %s AND timestamp < %s AND id <= %s AND updated_at <= %s"
                ).format(sql.Identifier(Message._meta.db_table)),
                [start, end, batch.max_id, batch.snapshot_at],
            )
            doomed = cursor.rowcount
            if doomed > batch.record_count:
                raise ArchivalError(
                    f"batch {batch.pk}: {doomed} rows to delete but the archive holds {batch.record_count}"
                )
            cursor.execute("ALTER TABLE archival_doomed ADD PRIMARY KEY (id)")
            cursor.execute(
                "INSERT INTO archival_archivedconversation (batch_id, contact_id, messages)"
                " SELECT %s, contact_id, count(*) FROM archival_doomed GROUP BY contact_id",
                [batch.pk],
            )
            for reference in references:
                table, column, action = reference.table, reference.column, reference.action
                change = "DELETE FROM {table}" if action == "delete" else "UPDATE {table} SET {column} = NULL"
                # = ANY (ARRAY(...)): the referencing table is probed by its index on the column, never
                # scanned whole for each day (a hash join over the table is what IN (SELECT ...) plans)
                statement = change + " WHERE {column} = ANY (ARRAY(SELECT id FROM archival_doomed))"
                cursor.execute(
                    sql.SQL(statement).format(table=sql.Identifier(table), column=sql.Identifier(column))
                )
            archival_crash_point("deleting")
            cursor.execute(
                sql.SQL("DELETE FROM {} WHERE id IN (SELECT id FROM archival_doomed)").format(
                    sql.Identifier(Message._meta.db_table)
                )
            )
            deleted = cursor.rowcount
            cursor.execute("DROP TABLE archival_doomed")
        batch.state, batch.deleted_count, batch.deleted_at = (
            ArchiveBatch.State.DELETED,
            deleted,
            timezone.now(),
        )
        batch.delete_s = round(time.monotonic() - started, 3)
        batch.error = ""
        batch.save(update_fields=["state", "deleted_count", "deleted_at", "delete_s", "error"])
    return batch


# -- restore ------------------------------------------------------------------------------------


def messages_restore(
    *, day_from: date, day_to: date, progress: Progress | None = None
) -> list[RestoreResult]:
    """Put back the archived messages of the days from `day_from` to `day_to` (inclusive)."""
    batches = ArchiveBatch.objects.filter(
        kind=ArchiveBatch.Kind.MESSAGES, state=ArchiveBatch.State.DELETED, day__gte=day_from, day__lte=day_to
    )
    return archive_batches_restore(batch_ids=list(batches.values_list("id", flat=True)), progress=progress)


def archive_batches_restore(*, batch_ids: list[int], progress: Progress | None = None) -> list[RestoreResult]:
    """Restore the given message batches; idempotent. Days are restored in parallel, the batches of
    one day newest first."""
    batches = ArchiveBatch.objects.filter(
        pk__in=batch_ids, kind=ArchiveBatch.Kind.MESSAGES, state=ArchiveBatch.State.DELETED
    ).order_by("-id")
    days: dict[date, list[ArchiveBatch]] = {}
    for batch in batches:
        days.setdefault(batch.day, []).append(batch)
    with archival_lock():
        restored = _each_in_parallel(
            lambda day: [archive_batch_restore(batch=batch, progress=progress) for batch in day],
            days.values(),
        )
    return [result for day in restored for result in day]


def _fk_fixups(model: type[models.Model]) -> tuple[list[str], list[sql.Composable]]:
    """For a restored row of `model`: conditions that its required references exist, and updates
    that clear its optional references to rows that are gone."""
    required, clear = [], []
    for field in model._meta.concrete_fields:
        if not field.is_relation or not field.many_to_one:
            continue
        target = field.related_model
        exists = sql.SQL("EXISTS (SELECT 1 FROM {table} x WHERE x.{pk} = (t.doc->>{column})::bigint)").format(
            table=sql.Identifier(target._meta.db_table),
            pk=sql.Identifier(target._meta.pk.column),
            column=sql.Literal(field.column),
        )
        if field.null:
            clear.append(
                sql.SQL(
                    "UPDATE archival_restore t SET doc = jsonb_set(doc, ARRAY[{column}], 'null')"
                    " WHERE t.doc->>{column} IS NOT NULL AND NOT {exists}"
                ).format(column=sql.Literal(field.column), exists=exists)
            )
        elif target is not Message:
            required.append(exists)
    return required, clear


def _relink_statement(reference: Reference) -> sql.Composed:
    """Point the rows that referenced a restored message at it again, where they still exist and
    nothing else has taken their place."""
    return sql.SQL(
        "UPDATE {table} r SET {column} = (t.doc->>'id')::bigint FROM archival_restore t"
        " CROSS JOIN LATERAL jsonb_array_elements_text(t.doc->'references'->{name}) e(ref)"
        " WHERE t.doc->'references'->{name} <> '[]' AND r.{pk} = e.ref::bigint AND r.{column} IS NULL"
        " AND EXISTS (SELECT 1 FROM {messages} x WHERE x.id = (t.doc->>'id')::bigint)"
    ).format(
        table=sql.Identifier(reference.table),
        column=sql.Identifier(reference.column),
        pk=sql.Identifier(reference.pk),
        name=sql.Literal(reference.name),
        messages=sql.Identifier(Message._meta.db_table),
    )


def archive_batch_restore(*, batch: ArchiveBatch, progress: Progress | None = None) -> RestoreResult:
    """Re-import one batch in one transaction: rows already present are left as they are."""
    messages_table = sql.Identifier(Message._meta.db_table)
    attempts_table = sql.Identifier(SendAttempt._meta.db_table)
    required, clear = _fk_fixups(Message)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE archival_restore (doc jsonb NOT NULL) ON COMMIT DROP")
        digest, decompressor = hashlib.sha256(), zlib.decompressobj(31)
        with cursor.copy(sql.SQL("COPY archival_restore (doc) FROM STDIN WITH (" + _COPY_JSON + ")")) as copy:
            for chunk in object_chunks(batch.key, chunk_size=RESTORE_CHUNK):
                digest.update(chunk)
                data = decompressor.decompress(chunk)
                copy.write(data)
                if progress is not None:
                    progress(data.count(b"\n"))
            copy.write(decompressor.flush())
        if batch.sha256 and digest.hexdigest() != batch.sha256:
            raise ArchivalError(
                f"batch {batch.pk}: {batch.key} does not have the sha256 recorded when it was written"
            )
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE (doc->>'schema_version')::int IS DISTINCT FROM %s)"
            " FROM archival_restore",
            [SCHEMA_VERSION],
        )
        records, unknown = cursor.fetchone()
        cursor.execute("ANALYZE archival_restore")
        if unknown:
            raise ArchivalError(
                f"batch {batch.pk}: {unknown} record(s) of a schema version other than {SCHEMA_VERSION}"
            )
        for statement in clear:
            cursor.execute(statement)
        where = sql.SQL(" AND ").join(required) if required else sql.SQL("true")
        cursor.execute(
            sql.SQL(
                "WITH inserted AS ("
                " INSERT INTO {messages} SELECT r.* FROM archival_restore t"
                " CROSS JOIN LATERAL jsonb_populate_record(NULL::{messages}, t.doc) r WHERE {where}"
                " ON CONFLICT DO NOTHING RETURNING id),"
                " attempts AS ("
                " INSERT INTO {attempts} SELECT s.* FROM archival_restore t"
                " CROSS JOIN LATERAL jsonb_populate_recordset(NULL::{attempts}, t.doc->'send_attempts') s"
                " WHERE t.doc->'send_attempts' <> '[]' AND s.message_id IN (SELECT id FROM inserted)"
                " ON CONFLICT DO NOTHING RETURNING 1)"
                " SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM attempts),"
                " (SELECT count(*) FROM archival_restore t WHERE NOT ({where}))"
            ).format(messages=messages_table, attempts=attempts_table, where=where)
        )
        inserted, _attempts, contact_gone = cursor.fetchone()
        for reference in message_references():
            if reference.action == "set_null":
                cursor.execute(_relink_statement(reference))
        cursor.execute("DROP TABLE archival_restore")
        ArchiveBatch.objects.filter(pk=batch.pk).update(
            restored_at=timezone.now(), restored_count=models.F("restored_count") + inserted
        )
    batch.refresh_from_db()
    logger.info("archive batch %s restored: %d of %d record(s) inserted", batch.pk, inserted, records)
    return RestoreResult(batch=batch, records=records, inserted=inserted, skipped_contact_gone=contact_gone)
