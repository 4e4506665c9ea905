"""The pace of the email and SMS channels, shared by every worker through PostgreSQL.

The same GCRA with no burst as a sender number's pace in messaging/ratelimit.py (read its header):
`ChannelPace.tat` is when the channel's next message may go; taking n slots is one upsert that
locks the row for that statement only, moves `tat` to greatest(tat, clock) + n * step and returns
it, and the slots are the n steps before it. Step is 1/rate rounded up to a whole microsecond, the
rate being EMAIL_RATE_PER_S or SMS_RATE_PER_S, or a lower one a caller gives. Times are the
database's clock; the offset to this host's clock is ratelimit's, so `channel_slot_wait` (which is
ratelimit's `rate_slot_wait`) sleeps until a slot whichever limiter gave it.

As there: call it in autocommit, outside transaction.atomic(), or the row stays locked until commit;
a slot is a moment to send at, not a permit to keep; a crash loses only idle time.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from contacts.models import Channel
from messaging import ratelimit
from messaging.ratelimit import rate_slot_wait

_PACE_SQL = """
INSERT INTO messaging_channelpace AS p (channel, tat)
VALUES (%(channel)s, clock_timestamp() + %(step_us)s * %(n)s * interval '1 microsecond')
ON CONFLICT (channel) DO UPDATE SET tat = greatest(p.tat, clock_timestamp())
    + %(step_us)s * %(n)s * interval '1 microsecond'
RETURNING p.tat, clock_timestamp()
"""

channel_slot_wait = rate_slot_wait


def channel_rate_per_s(channel: str) -> float:
    rates = {Channel.EMAIL: settings.EMAIL_RATE_PER_S, Channel.SMS: settings.SMS_RATE_PER_S}
    try:
        return rates[Channel(channel)]
    except (KeyError, ValueError):
        raise ValueError(f"no pace for channel {channel!r}: email or sms") from None


def channel_slots_take(*, channel: str, n: int, rate_per_s: float | None = None) -> list[datetime]:
    """The times of the channel's next n sends, in order, each reserved (see the module's header)."""
    rate = channel_rate_per_s(channel)
    if rate_per_s is not None:
        rate = min(rate, rate_per_s)
    if rate <= 0:
        raise ValueError(f"the {channel} rate must be above 0, not {rate}")
    if n <= 0:
        return []
    step_us = math.ceil(1_000_000 / rate)
    with connection.cursor() as cursor:
        before = time.time()
        cursor.execute(_PACE_SQL, {"channel": Channel(channel).value, "n": n, "step_us": step_us})
        after = time.time()
        tat, db_now = cursor.fetchone()
    # One offset per process: it is the database's clock against this host's, whichever table.
    ratelimit._clock_offset_s = db_now.timestamp() - (before + after) / 2
    step = timedelta(microseconds=step_us)
    base = tat - n * step
    return [base + i * step for i in range(n)]
