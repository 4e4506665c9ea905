"""WakeUp flags: one row per queue (`incoming`, `outgoing`) that coalesces wake-ups, so one SQS
message announces every row committed while a drain is queued (see messaging/inbound/events.py)."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from messaging.models import WakeUp

WAKE_STALE_S = 60  # a flag set longer ago than this announced a drain that was lost

# Flip the flag if it is down or stale, or create it raised; one round trip. While it is up (the
# usual case under load) nothing matches, so nothing is written or locked and nothing waits.
# Both parts see the same snapshot; ON CONFLICT settles two requests that create it at once.
_WAKE_SQL = f"""
    WITH flipped AS (
        UPDATE {WakeUp._meta.db_table} SET pending = true, updated_at = %(now)s
        WHERE name = %(name)s AND (pending = false OR updated_at < %(stale)s)
        RETURNING 1
    ), created AS (
        INSERT INTO {WakeUp._meta.db_table} (name, pending, updated_at)
        SELECT %(name)s, true, %(now)s
        WHERE NOT EXISTS (SELECT 1 FROM {WakeUp._meta.db_table} WHERE name = %(name)s)
        ON CONFLICT (name) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM flipped) + (SELECT count(*) FROM created)
"""


def wake_flag_raise(name: str) -> bool:
    """Raise the WakeUp flag `name` if it is down or stale; True when this call raised it, and so
    must enqueue the drain it announces. Shared by the `incoming` and `outgoing` queues."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_WAKE_SQL, {"name": name, "now": now, "stale": now - timedelta(seconds=WAKE_STALE_S)})
        (flipped,) = cursor.fetchone()
    return bool(flipped)
