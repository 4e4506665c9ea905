"""One limiter for everything Wharf paces across workers: a GCRA with no burst, kept in PostgreSQL
and keyed by what it paces ("whatsapp:<phone number id>", "channel:email", "channel:sms").

`Pace.tat` is the earliest time the key's next send may go. Taking n slots is one statement,
INSERT ... ON CONFLICT DO UPDATE, which locks the row for that statement only, moves `tat` to
greatest(tat, clock + lead) + n * step and returns it; the slots are base + i * step, base being
the returned tat less n steps. The step is 1/rate rounded UP to a whole microsecond, so any
one-second window holds at most `rate` slots; a burst allowance, however small, would let a
window hold more. It is read in the same statement as the row is locked (a caller may give it as
a query, as the sender pace reads its number's rate), so a changed rate applies to the next batch.

Clock: every time is the database's (clock_timestamp(), taken after the row lock is granted, not
when the statement began), so workers with skewed clocks agree. `pace_wait` sleeps against the
offset between this host's clock and the database's, measured at each batch and read from the
batch of the shortest round trip among the latest: a statement that waited for the row lock read
the clock late in its round trip.

What callers must know. Call it in autocommit, outside transaction.atomic(): in a transaction the
row stays locked until commit and every other worker waits. A slot is a moment, not a permit to
spend later: send at it, and if it is far, defer the send and take a slot again then. A send that
left well after its slot moves the schedule on (`pace_delay`). A crash loses nothing: unused slots
are idle time, never a send.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from core.models import Pace

_PACE = Pace._meta.db_table
_TAKE_SQL = f"""
WITH step AS ({{step}})
INSERT INTO {_PACE} AS p (key, tat)
SELECT %(key)s, clock_timestamp() + %(lead)s + step_us * %(n)s * interval '1 microsecond' FROM step
ON CONFLICT (key) DO UPDATE SET tat = greatest(p.tat, clock_timestamp() + %(lead)s)
    + (SELECT step_us FROM step) * %(n)s * interval '1 microsecond'
RETURNING p.tat, clock_timestamp(), (SELECT step_us FROM step)
"""
_DELAY_SQL = f"UPDATE {_PACE} SET tat = greatest(tat, clock_timestamp()) + %(gap)s WHERE key = %(key)s"


@dataclass(frozen=True)
class Step:
    """The time between two slots, in whole microseconds: a fixed rate, or a query that reads it
    (one row, one column `step_us`; no row means the paced thing is gone)."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_rate(cls, rate_per_s: float) -> Step:
        if rate_per_s <= 0:
            raise ValueError(f"a rate must be above 0, not {rate_per_s}")
        return cls("SELECT %(step_us)s::bigint AS step_us", {"step_us": math.ceil(1_000_000 / rate_per_s)})


class PaceGone(Exception):
    """The step's query found nothing: what the key paces no longer exists."""


class PaceClock:
    """The database's clock minus this host's, from the latest batches' (round trip, offset): each
    sample puts the offset within half its round trip; one that cannot agree with the best means a
    clock was set, and the samples start again."""

    offset_s = 0.0
    samples: deque[tuple[float, float]] = deque(maxlen=32)

    @classmethod
    def sample(cls, *, before: float, after: float, db_now: datetime) -> None:
        sample = (after - before, db_now.timestamp() - (before + after) / 2)
        if cls.samples:
            best = min(cls.samples)
            if abs(sample[1] - best[1]) > (sample[0] + best[0]) / 2:
                cls.samples.clear()
        cls.samples.append(sample)
        cls.offset_s = min(cls.samples)[1]


def pace_slots_take(*, key: str, n: int, step: Step, lead: timedelta = timedelta(0)) -> list[datetime]:
    """The times of the key's next n sends, in order, each reserved (see the module's header)."""
    if n <= 0:
        return []
    with connection.cursor() as cursor:
        before = time.time()
        cursor.execute(_TAKE_SQL.format(step=step.sql), {**step.params, "key": key, "n": n, "lead": lead})
        after = time.time()
        row = cursor.fetchone()
    if row is None:
        raise PaceGone(key)
    tat, db_now, step_us = row
    PaceClock.sample(before=before, after=after, db_now=db_now)
    gap = timedelta(microseconds=step_us)
    base = tat - n * gap
    return [base + i * gap for i in range(n)]


def pace_delay(*, key: str, gap: timedelta) -> None:
    """Move the key's schedule on by `gap`: the slots taken from now on begin that much later."""
    with connection.cursor() as cursor:
        cursor.execute(_DELAY_SQL, {"key": key, "gap": gap})


def paces_delete(*, keys: list[str]) -> int:
    return Pace.objects.filter(key__in=keys).delete()[0]


def pace_clock_now() -> datetime:
    """Now on the database's clock, as estimated at the last batch."""
    return datetime.fromtimestamp(time.time() + PaceClock.offset_s, tz=UTC)


def pace_wait(until: datetime) -> float:
    """Sleep until `until` on the database's clock; returns the seconds slept."""
    delay = until.timestamp() - (time.time() + PaceClock.offset_s)
    if delay <= 0:
        return 0.0
    time.sleep(delay)
    return delay
