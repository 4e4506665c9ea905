"""The dashboard's daily counters, made again from the events rather than added to.

A day's rows are recomputed whole: in one transaction its MessageDay rows are deleted and inserted
again from a GROUP BY over messaging's AnalyticsEvent rows of that day (UTC), and its OptOutDay
rows from the contacts' opt-out times. Nothing is ever incremented, so a task delivered twice, two
runs at once (the day's advisory lock makes the second wait, then write the same rows), a status
that arrives late or a rebuild of an old range all leave the same counts: those of the events.

The events are the source: messaging writes one per inbound message (`message_received`, at the
message's time) and one per status Meta reports for an outbound message (`status_changed`, at the
status's time; once per message and status, messaging/statuses.py), a send Meta refused in its
answer counting as a `failed` status (`send_refusal_record`). Retention keeps them (nothing
deletes AnalyticsEvent rows; archival only clears their link to an archived message), and beat
recomputes today and yesterday every few minutes, so a day is counted long before anything it
comes from could go. An opt-out is counted on its day while the contact stays opted out.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from contacts.models import OPT_OUT_FIELDS, Contact
from dashboard.models import MessageDay, OptOutDay
from messaging.models import AnalyticsEvent, Message

# pg_advisory_xact_lock(key1, key2): key1 names this lock's purpose, key2 is the day's ordinal.
DAY_LOCK = 0x0DA5B
RECENT_DAYS = 2  # today and yesterday, at every beat

_MESSAGES_SQL = f"""
INSERT INTO {MessageDay._meta.db_table}
    (day, phone_number_id, direction, status, error_code, error_title, count)
SELECT %(day)s, e.phone_number_id, grouped.direction, grouped.status, grouped.error_code,
       COALESCE(max(NULLIF(m.error_title, '')), ''), count(*)
FROM {AnalyticsEvent._meta.db_table} e
LEFT JOIN {Message._meta.db_table} m ON m.id = e.message_id AND e.status = 'failed'
CROSS JOIN LATERAL (
    SELECT CASE WHEN e.kind = %(received)s THEN 'inbound' ELSE 'outbound' END AS direction,
           CASE WHEN e.kind = %(received)s THEN 'received' ELSE e.status END AS status,
           CASE WHEN e.status = 'failed' AND jsonb_typeof(e.data -> 'error_code') = 'number'
                THEN (e.data ->> 'error_code')::numeric::bigint END AS error_code
) grouped
WHERE e.occurred_at >= %(start)s AND e.occurred_at < %(end)s AND e.kind IN (%(received)s, %(status)s)
GROUP BY e.phone_number_id, grouped.direction, grouped.status, grouped.error_code
"""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def stats_day_rollup(*, day: date) -> int:
    """Make `day`'s counters again from the events; returns how many message rows it has."""
    start, end = day_bounds(day)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [DAY_LOCK, day.toordinal()])
        MessageDay.objects.filter(day=day).delete()
        OptOutDay.objects.filter(day=day).delete()
        cursor.execute(
            _MESSAGES_SQL,
            {
                "day": day,
                "start": start,
                "end": end,
                "received": AnalyticsEvent.Kind.MESSAGE_RECEIVED,
                "status": AnalyticsEvent.Kind.STATUS_CHANGED,
            },
        )
        rows = cursor.rowcount
        OptOutDay.objects.bulk_create(
            OptOutDay(day=day, channel=channel, count=count)
            for channel, (field, _source) in OPT_OUT_FIELDS.items()
            if (count := Contact.objects.filter(**{f"{field}__gte": start, f"{field}__lt": end}).count())
        )
    return rows


def stats_range_rollup(*, since: date, until: date) -> dict[str, int]:
    """Make every day from `since` to `until` (both included) again, one transaction a day."""
    days = rows = 0
    day = since
    while day <= until:
        rows += stats_day_rollup(day=day)
        days += 1
        day += timedelta(days=1)
    return {"days": days, "rows": rows}


def stats_recent_rollup() -> dict[str, int]:
    """Today and the days before it (RECENT_DAYS in all): what beat keeps current."""
    today = timezone.now().astimezone(UTC).date()
    return stats_range_rollup(since=today - timedelta(days=RECENT_DAYS - 1), until=today)
