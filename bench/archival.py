"""Archival: BENCH_ARCHIVAL_ROWS messages (1,000,000) spread over 120 days, archived, then restored.

The bench's own database and a moto server of its own (S3 over HTTP, objects in its memory). The
messages are loaded with COPY (one contact per 100 messages; every tenth is outbound with two
send attempts), then `messages_archive(older_than_days=0)` archives every day before today, as
the schedule does for the days past 90, and `messages_restore` brings all of them back.

archive_rows_per_s = rows deleted / wall time of the archive run (read, gzip, upload, verify,
delete); restore_rows_per_s = rows inserted / wall time of the restore. peak_rss_mb is this
process's peak resident memory after the archive and the restore (the load streams its rows, so
it stays below them); moto's own memory holds the archive's bytes and is shown apart.
`lossless` compares the table's count and the sum of a 64-bit hash of every row as JSON, and the
same for the send attempts, before and after. BENCH_ARCHIVAL_ROWS=100000 runs the small size.
"""

import json
import os
import random
import resource
import time
from datetime import UTC, datetime, timedelta

from bench._setup import django_on_fresh_database, moto_start, report

ROWS = int(os.environ.get("BENCH_ARCHIVAL_ROWS", "1000000"))
DAYS = 120


def _load(connection, *, rows: int) -> None:
    from messaging.models import PhoneNumber

    sender = PhoneNumber.objects.create(phone_number_id="100000000000001", display_phone_number="15550000001")
    contacts = max(1, rows // 100)
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(6)
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY contacts_contact (phone, wa_id, user_id, name, email, tags, language, attributes,"
            " opt_in_source, opt_out_source, created_at, updated_at) FROM STDIN"
        ) as copy:
            for number in range(contacts):
                copy.write_row(
                    (f"+44740{number:07d}", f"44740{number:07d}", "", f"Contact {number}", "", [], "en", "{}",
                     "", "", now, now)
                )  # fmt: skip
        cursor.execute("SELECT min(id) FROM contacts_contact")
        first_contact = cursor.fetchone()[0]
        columns = (
            "wamid, direction, type, status, contact_id, phone_number_id, text, payload, timestamp,"
            " context_wamid, target_wamid, reaction, media_id, media_mime_type, media_sha256, media_filename,"
            " media_key, media_state, media_error, error_code, error_title, error_details, idempotency_key,"
            " attempts, claimed_by, sent_at, created_at, updated_at"
        )
        with cursor.copy(f"COPY messaging_message ({columns}) FROM STDIN") as copy:
            for number in range(rows):
                timestamp = now - timedelta(seconds=rng.uniform(60, DAYS * 86400))
                outbound = number % 10 == 0
                text = f'message {number} with some text, "quoted" and \\ back\nslashed é'
                copy.write_row(
                    (
                        f"wamid.BENCH{number:012d}", "outbound" if outbound else "inbound", "text",
                        "failed" if outbound else "received", first_contact + number % contacts, sender.pk,
                        text, json.dumps({"text": {"body": text}, "n": number}), timestamp,
                        f"wamid.BENCH{number - 1:012d}" if number % 7 == 0 else "", "", "", "", "", "", "",
                        "", "", "", 131026 if outbound else None, "Undeliverable" if outbound else "", "", "",
                        2 if outbound else 0, "", timestamp if outbound else None, timestamp, timestamp,
                    )
                )  # fmt: skip
        cursor.execute(
            "INSERT INTO messaging_sendattempt (message_id, started_at, finished_at, worker, http_status,"
            " error_code, error_title, error_details, latency_ms, outcome)"
            " SELECT id, timestamp, timestamp, 'bench', 400, 131026, 'Undeliverable', '', 40, o.outcome"
            " FROM messaging_message, (VALUES ('retry'), ('failed')) o(outcome) WHERE direction = 'outbound'"
        )
        cursor.execute("ANALYZE")


def _fingerprint(connection) -> list:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(hashtextextended(to_jsonb(m)::text, 0)) FROM messaging_message m"
            " UNION ALL SELECT count(*), sum(hashtextextended(to_jsonb(a)::text, 0))"
            " FROM messaging_sendattempt a"
        )
        return [list(row) for row in cursor.fetchall()]


def main() -> int:
    moto = moto_start(AWS_CLIENT_TIMEOUT_S="60", LOG_LEVEL="WARNING")
    try:
        django_on_fresh_database("wharf_bench_archival")
        from django.db import connection

        from archival.messages import messages_archive, messages_restore
        from core.aws import storage_ensure_bucket

        storage_ensure_bucket()
        started = time.monotonic()
        _load(connection, rows=ROWS)
        load_s = time.monotonic() - started
        before = _fingerprint(connection)
        rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        started = time.monotonic()
        batches = messages_archive(older_than_days=0)
        archive_s = time.monotonic() - started
        archived = sum(batch.deleted_count for batch in batches)
        left = _fingerprint(connection)[0][0]
        rss_archive_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        days = [batch.day for batch in batches]
        started = time.monotonic()
        results = messages_restore(day_from=min(days), day_to=max(days))
        restore_s = time.monotonic() - started
        restored = sum(result.inserted for result in results)
        after = _fingerprint(connection)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        import psutil

        figures = {
            "rows": ROWS,
            "days": len(batches),
            "load_s": round(load_s, 1),
            "archived_rows": archived,
            "rows_left_after_archive": left,
            "archive_s": round(archive_s, 2),
            "archive_bytes": sum(batch.bytes for batch in batches),
            "restored_rows": restored,
            "restore_s": round(restore_s, 2),
            "rss_after_load_mb": round(rss_before_mb, 1),
            "rss_after_archive_mb": round(rss_archive_mb, 1),
            "moto_rss_mb": round(psutil.Process(moto.process.pid).memory_info().rss / 2**20, 1),
            "machine_load_1m": round(os.getloadavg()[0], 2),
        }
        report(
            {
                **figures,
                "archive_rows_per_s": round(archived / archive_s),
                "peak_rss_mb": round(peak_mb, 1),
                "restore_rows_per_s": round(restored / restore_s),
                "lossless": before == after and archived == ROWS and restored == ROWS and left == 0,
            }
        )
    finally:
        moto.stop()
    return 0
