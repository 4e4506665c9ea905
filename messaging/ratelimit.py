"""The send limiter shared by every outgoing worker: one pace per sender number, one per recipient.

Meta counts a number's messages over any sliding second (80/s by default, error 130429 beyond)
and refuses messages that follow each other too closely to one recipient (error 131056). Wharf
keeps to both itself, in PostgreSQL, so that workers on any machine share one schedule:

- Sender: a GCRA with no burst. `SenderPace.tat` is the earliest time the number's next message
  may go. Taking n slots is one statement, INSERT ... ON CONFLICT DO UPDATE, which locks the row
  for that statement only, moves `tat` to greatest(tat, clock) + n * step and returns it; the slots
  are base + i * step, base being the returned tat less n steps. Step is 1/rate rounded UP to a
  whole microsecond and read from the PhoneNumber row in the same statement, so a changed rate
  applies to the next batch. With slots exactly one step apart and no burst, any one-second
  window holds at most `rate` of them; a burst allowance, however small, would let a window hold
  more. The rate is first cut by WHATSAPP_RATE_HEADROOM_PCT: sends leave a little after their
  slots (a busy CPU, the network), and at exactly the limit a late send followed by an on-time one
  can put rate + 1 requests into one of Meta's seconds.
- Recipient: `RecipientPace.next_at` is when the number may next write to that recipient. One
  more statement upserts the batch's recipients (in a fixed order, so concurrent batches cannot
  deadlock) and moves each one's `next_at` past its last slot of the batch plus the spacing
  (WHATSAPP_RECIPIENT_SPACING_S), computed from the row as locked, so concurrent batches for the
  same recipient see each other. An entry's time is max(its sender slot, its recipient's turn); a
  recipient repeated in a batch is spaced too.
- Clock: every time is read from the database (clock_timestamp(), taken after the row lock is
  granted, not when the statement began), so workers with skewed clocks agree; `rate_slot_wait`
  sleeps against the offset between the local clock and the database's measured at each batch.

What callers must know. Call it in autocommit, outside transaction.atomic(): in a transaction, the
sender's row stays locked until commit and every other worker waits. A slot is a moment, not a
permit to spend later: send at it (sleep until it with `rate_slot_wait`), and if it is far, defer
the message to it and take a slot again then, which is safe but spends a slot and the recipient's
turn; so defer only times more than the recipient spacing away, or a message to a busy recipient
keeps being pushed back. An entry held back by its recipient is sent off the sender's schedule, at
its recipient's turn: rare (the same recipient again within the spacing), each such message one
more in its second. A crash loses nothing: unused slots are idle time, never a send.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

from messaging.models import PhoneNumber

_clock_offset_s = 0.0  # the database's clock minus this host's, measured at the last batch

_SENDER_SQL = """
WITH pace AS (
    SELECT ceil(1000000.0 / (greatest(rate_limit_per_s, 1) * %(share)s))::bigint AS step_us
    FROM messaging_phonenumber WHERE id = %(phone_number_id)s
)
INSERT INTO messaging_senderpace AS s (phone_number_id, tat)
SELECT %(phone_number_id)s, clock_timestamp() + step_us * %(n)s * interval '1 microsecond' FROM pace
ON CONFLICT (phone_number_id) DO UPDATE SET tat = greatest(s.tat, clock_timestamp())
    + (SELECT step_us FROM pace) * %(n)s * interval '1 microsecond'
RETURNING s.tat, clock_timestamp(), (SELECT step_us FROM pace)
"""

_RECIPIENT_SQL = """
WITH input AS (
    SELECT * FROM unnest(%(recipients)s::text[], %(last_slots)s::timestamptz[], %(counts)s::int[])
        AS t(recipient, last_slot, n)
)
INSERT INTO messaging_recipientpace AS p (phone_number_id, recipient, next_at)
SELECT %(phone_number_id)s, recipient, last_slot + %(spacing)s FROM input ORDER BY recipient
ON CONFLICT (phone_number_id, recipient) DO UPDATE SET next_at = greatest(
    p.next_at + (SELECT n FROM input WHERE input.recipient = EXCLUDED.recipient) * %(spacing)s,
    EXCLUDED.next_at
)
RETURNING recipient, next_at
"""

_SWEEP_SQL = """
DELETE FROM messaging_recipientpace WHERE id IN (
    SELECT id FROM messaging_recipientpace WHERE next_at < clock_timestamp() - %(keep)s LIMIT %(limit)s
)
"""

RECIPIENT_PACE_KEEP = timedelta(minutes=10)
SWEEP_BATCH = 10_000


def rate_slots_take(*, phone_number: PhoneNumber, recipients: list[str]) -> list[datetime]:
    """The earliest time each entry may be sent, in order, each slot reserved: see the module's
    header for the protocol and for what callers must do with the times."""
    global _clock_offset_s
    if not recipients:
        return []
    n = len(recipients)
    with connection.cursor() as cursor:
        before = time.time()
        share = 1 - settings.WHATSAPP_RATE_HEADROOM_PCT / 100
        cursor.execute(_SENDER_SQL, {"phone_number_id": phone_number.pk, "n": n, "share": share})
        after = time.time()
        row = cursor.fetchone()
        if row is None:
            raise PhoneNumber.DoesNotExist(f"no phone number {phone_number.pk}")
        tat, db_now, step_us = row
        _clock_offset_s = db_now.timestamp() - (before + after) / 2
        step = timedelta(microseconds=step_us)
        base = tat - n * step
        slots = [base + i * step for i in range(n)]

        spacing = timedelta(microseconds=round(settings.WHATSAPP_RECIPIENT_SPACING_S * 1_000_000))
        if spacing <= timedelta(0):
            return slots
        # Within the batch: each occurrence of a recipient at least `spacing` after its previous one.
        chains: dict[str, list[int]] = {}
        for i, recipient in enumerate(recipients):
            chain = chains.setdefault(recipient, [])
            if chain:
                slots[i] = max(slots[i], slots[chain[-1]] + spacing)
            chain.append(i)
        cursor.execute(
            _RECIPIENT_SQL,
            {
                "phone_number_id": phone_number.pk,
                "recipients": list(chains),
                "last_slots": [slots[chain[-1]] for chain in chains.values()],
                "counts": [len(chain) for chain in chains.values()],
                "spacing": spacing,
            },
        )
        # RETURNING gives the turn after the batch, not the one before. Counting back one spacing
        # per occurrence gives that old turn where it decided the new one, else a later time, so
        # each occurrence stays a spacing after the old turn and after its previous occurrence.
        for recipient, next_at in cursor.fetchall():
            chain = chains[recipient]
            first = next_at - len(chain) * spacing
            for k, i in enumerate(chain):
                slots[i] = max(slots[i], first + k * spacing)
    return slots


def rate_clock_now() -> datetime:
    """Now on the database's clock, as estimated at the last batch."""
    return datetime.fromtimestamp(time.time() + _clock_offset_s, tz=UTC)


def rate_slot_wait(until: datetime) -> float:
    """Sleep until `until` on the database's clock; returns the seconds slept."""
    delay = until.timestamp() - (time.time() + _clock_offset_s)
    if delay <= 0:
        return 0.0
    time.sleep(delay)
    return delay


def rate_paces_sweep() -> int:
    """Delete recipient turns long past (one in the past means the same as no row at all)."""
    deleted = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(_SWEEP_SQL, {"keep": RECIPIENT_PACE_KEEP, "limit": SWEEP_BATCH})
            deleted += cursor.rowcount
            if cursor.rowcount < SWEEP_BATCH:
                return deleted
