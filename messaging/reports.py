"""The inbox's report: per day and per operator or sender number, over the conversations a user sees.

What the figures mean (the report page repeats it):
- An operator's reply is an outbound message sent through the send service by a user (a
  `message.send` audit row on it and `created_by` set). A campaign's messages are queued in bulk
  without one, and echoes from the WhatsApp Business app have no user: neither is a reply.
- The customer writing is an inbound message other than the quiet kinds
  (messaging.conversations.QUIET_KINDS).
- A resolution is a `conversation.status` audit row moving a conversation to resolved from another
  status, attributed to its actor.
- First response time: for an operator's reply that is the first since the customer wrote, the
  time from the first of the customer's messages since the previous reply or resolution (when the
  wait began, as `Conversation.waiting_since` has it) to the reply. Attributed to the replying
  operator, the conversation's number and the reply's day.
- Resolution time: for a resolution, the time from the customer's first message after the
  conversation's previous resolution (or ever) to the resolution; none when the customer did not
  write meanwhile. Attributed to the resolving operator, the number and the day.
- Conversations handled: distinct conversations with a reply or a resolution (by the operator, on
  the number) that day; over the period, distinct conversations in it.
Medians are PostgreSQL's `percentile_cont(0.5)`; days are those of the current time zone.

One query computes everything: the period's replies and resolutions find the conversations they
touched, each conversation's messages are read from its last resolution before the period (a wait
or an open stretch that began earlier counts from its real start), window functions number the
waits and open stretches, and GROUPING SETS give per day and key, per key, per day and the total.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone

from core.models import AuditLog
from messaging.conversations import QUIET_KINDS, conversations_visible_q
from messaging.models import Conversation, Message, PhoneNumber

GROUPINGS = ("operator", "number")

_M = Message._meta.db_table
_C = Conversation._meta.db_table
_A = AuditLog._meta.db_table

# An audit row moving a conversation to resolved (not one resolving it again).
_RESOLVED = """a.action = 'conversation.status' AND a.target_type_id = %(conversation_type)s
    AND a.changes -> 'status' ->> 1 = 'resolved'
    AND coalesce(a.changes -> 'status' ->> 0, '') <> 'resolved'"""

# An outbound message an operator sent through the send service.
_REPLY = f"""m.direction = 'outbound' AND m.created_by_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM {_A} s WHERE s.target_type_id = %(message_type)s AND s.target_id = m.id::text
        AND s.action = 'message.send')"""

_REPORT_SQL = f"""
WITH period_replies AS (
    SELECT DISTINCT m.conversation_id FROM {_M} m
    WHERE m.timestamp >= %(since)s AND m.timestamp < %(until)s AND m.conversation_id IS NOT NULL AND {_REPLY}
),
period_resolutions AS (
    SELECT DISTINCT a.target_id::bigint AS conversation_id FROM {_A} a
    WHERE a.created_at >= %(since)s AND a.created_at < %(until)s AND {_RESOLVED}
),
scope AS (
    SELECT c.id AS conversation_id, c.phone_number_id,
           (SELECT max(a.created_at) FROM {_A} a
            WHERE a.target_id = c.id::text AND a.created_at < %(since)s AND {_RESOLVED}) AS from_at
    FROM {_C} c
    WHERE c.id IN (SELECT conversation_id FROM period_replies
                   UNION SELECT conversation_id FROM period_resolutions)
      AND {{visible}}
),
stream AS (
    SELECT s.conversation_id, m.timestamp AS at, m.id AS seq,
           CASE WHEN m.direction = 'inbound' THEN 'c' ELSE 'r' END AS kind, m.created_by_id AS operator_id
    FROM scope s JOIN {_M} m ON m.conversation_id = s.conversation_id
    WHERE m.timestamp < %(until)s AND m.timestamp >= coalesce(s.from_at, '-infinity')
      AND ((m.direction = 'inbound' AND m.type <> ALL(%(quiet)s)) OR ({_REPLY}))
    UNION ALL
    SELECT s.conversation_id, a.created_at, a.id, 'x', a.actor_id
    FROM scope s JOIN {_A} a ON a.target_id = s.conversation_id::text
    WHERE a.created_at < %(until)s AND a.created_at >= coalesce(s.from_at, '-infinity') AND {_RESOLVED}
),
runs AS (
    SELECT *,
           count(*) FILTER (WHERE kind <> 'c') OVER earlier AS wait_run,
           count(*) FILTER (WHERE kind = 'x') OVER earlier AS open_run
    FROM stream
    WINDOW earlier AS (PARTITION BY conversation_id ORDER BY at, kind, seq
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
timed AS (
    SELECT *,
           min(at) FILTER (WHERE kind = 'c') OVER (PARTITION BY conversation_id, wait_run) AS waited_from,
           min(at) FILTER (WHERE kind = 'c') OVER (PARTITION BY conversation_id, open_run) AS opened_from
    FROM runs
),
facts AS (
    SELECT t.conversation_id, t.operator_id, s.phone_number_id,
           (t.at AT TIME ZONE %(tz)s)::date AS day,
           CASE WHEN t.kind = 'r' THEN extract(epoch FROM t.at - t.waited_from) END AS first_response,
           CASE WHEN t.kind = 'x' THEN extract(epoch FROM t.at - t.opened_from) END AS resolution
    FROM timed t JOIN scope s USING (conversation_id)
    WHERE t.kind <> 'c' AND t.at >= %(since)s
)
SELECT day, {{key}} AS key, GROUPING(day), GROUPING({{key}}),
       count(DISTINCT conversation_id),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution),
       count(first_response), count(resolution)
FROM facts
GROUP BY GROUPING SETS ((day, {{key}}), ({{key}}), (day), ())
"""
_KEYS = {"operator": "operator_id", "number": "phone_number_id"}
_PLACEHOLDER = re.compile(r"%%|%s")


@dataclass(frozen=True)
class Figures:
    """What happened in a group: seconds are None when there was nothing to measure."""

    handled: int = 0
    first_response_s: float | None = None  # median
    resolution_s: float | None = None  # median
    first_responses: int = 0  # how many first responses the median is of
    resolutions: int = 0  # how many resolutions (measured or not)


@dataclass
class ReportRow:
    """One operator or sender number; `key` None: no operator (a resolution without a user) or no number."""

    key: int | None
    label: str
    total: Figures = field(default_factory=Figures)
    by_day: dict[date, Figures] = field(default_factory=dict)


@dataclass
class InboxReport:
    since: datetime
    until: datetime
    group_by: str
    days: list[date]
    team: Figures
    team_by_day: dict[date, Figures]
    rows: list[ReportRow]  # most conversations handled first


def _days(since: datetime, until: datetime) -> list[date]:
    first = timezone.localtime(since).date()
    last = timezone.localtime(until - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _labels(group_by: str, keys: set[int | None]) -> dict[int | None, str]:
    if group_by == "operator":
        users = get_user_model().objects.filter(pk__in=keys - {None})
        labels: dict[int | None, str] = {u.pk: u.get_full_name().strip() or u.get_username() for u in users}
        labels[None] = "No operator"
    else:
        labels = {number.pk: str(number) for number in PhoneNumber.objects.filter(pk__in=keys - {None})}
        labels[None] = "No number"
    return labels


def inbox_report(*, since: datetime, until: datetime, user: AbstractBaseUser, group_by: str) -> InboxReport:
    """Replies, resolutions and their median times from `since` (inclusive) to `until` (exclusive),
    per day and per operator or sender number (`group_by`), in the conversations `user` sees."""
    if group_by not in GROUPINGS:
        raise ValueError(f"group_by is one of {', '.join(GROUPINGS)}")
    visible_q = conversations_visible_q(user)
    visible, visible_params = "TRUE", []
    if visible_q:
        subquery = Conversation.objects.filter(visible_q).values("pk").query
        sql, visible_params = subquery.sql_with_params()
        visible = f"c.id IN ({sql})"
    params = {
        "since": since,
        "until": until,
        "tz": timezone.get_current_timezone_name(),
        "quiet": sorted(QUIET_KINDS),
        "message_type": ContentType.objects.get_for_model(Message).pk,
        "conversation_type": ContentType.objects.get_for_model(Conversation).pk,
    }
    # The visibility subquery's placeholders are positional: name them like the query's own.
    names = iter(f"visible_{n}" for n in range(len(visible_params)))
    visible = _PLACEHOLDER.sub(lambda found: "%%" if found[0] == "%%" else f"%({next(names)})s", visible)
    params |= {f"visible_{n}": value for n, value in enumerate(visible_params)}
    query = _REPORT_SQL.format(visible=visible, key=_KEYS[group_by])
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        results = cursor.fetchall()

    team, team_by_day = Figures(), {}
    totals: dict[int | None, Figures] = {}
    by_day: dict[int | None, dict[date, Figures]] = defaultdict(dict)
    for day, key, day_rolled, key_rolled, *numbers in results:
        figures = Figures(*numbers)
        if day_rolled and key_rolled:
            team = figures
        elif key_rolled:
            team_by_day[day] = figures
        elif day_rolled:
            totals[key] = figures
        else:
            by_day[key][day] = figures
    labels = _labels(group_by, set(totals))
    rows = [
        ReportRow(key=key, label=labels.get(key, str(key)), total=totals[key], by_day=by_day[key])
        for key in totals
    ]
    rows.sort(key=lambda row: (-row.total.handled, row.label.lower()))
    return InboxReport(
        since=since,
        until=until,
        group_by=group_by,
        days=_days(since, until),
        team=team,
        team_by_day=team_by_day,
        rows=rows,
    )
