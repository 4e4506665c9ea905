"""The send limiter shared by every outgoing worker: one pace per sender number, one per recipient.

Meta counts a number's messages over any sliding second (80/s by default, error 130429 beyond)
and refuses messages that follow each other too closely to one recipient (error 131056). Wharf
keeps to both itself, in PostgreSQL, so that workers on any machine share one schedule:

- Sender: a GCRA with no burst. `SenderPace.tat` is the earliest time the number's next message
  may go. Taking n slots is one statement, INSERT ... ON CONFLICT DO UPDATE, which locks the row
  for that statement only, moves `tat` to greatest(tat, clock + SLOT_LEAD) + n * step and returns
  it; the slots are base + i * step, base being the returned tat less n steps. Step is 1/rate
  rounded UP to a whole microsecond and read from the PhoneNumber row in the same statement, so a
  changed rate applies to the next batch. With slots exactly one step apart and no burst, any one-second
  window holds at most `rate` of them; a burst allowance, however small, would let a window hold
  more. The rate is first cut by WHATSAPP_RATE_HEADROOM_PCT: sends leave a little after their
  slots (a busy CPU, the network), and at exactly the limit a late send followed by an on-time one
  can put rate + 1 requests into one of Meta's seconds.
- Recipient: `RecipientPace.next_at` is when the number may next write to that recipient. One
  more statement upserts the batch's recipients (in a fixed order, so concurrent batches cannot
  deadlock) with the sender slot of each one's first entry: a recipient whose turn has come by
  that slot takes it, and its `next_at` moves to the slot plus the spacing
  (WHATSAPP_RECIPIENT_SPACING_S); one whose turn is later keeps it, computed from the row as
  locked, so concurrent batches for the same recipient see each other. The entries that did not
  take a turn (a later turn, or the recipient's second entry in the batch) are held: their sender
  slots go unused and the caller defers them to the recipient's turn, where they take a new
  sender slot. So every request leaves at a sender slot, and the sender's rate holds even for a
  busy recipient, who never loses a turn to a message that was not sent at it.
- Clock: every time is read from the database (clock_timestamp(), taken after the row lock is
  granted, not when the statement began), so workers with skewed clocks agree; `rate_slot_wait`
  sleeps against the offset between the local clock and the database's, measured at each batch
  and read from the batch of the shortest round trip among the latest.

What callers must know. Call it in autocommit, outside transaction.atomic(): in a transaction, the
sender's row stays locked until commit and every other worker waits. A slot is a moment, not a
permit to spend later: send at it (sleep until it with `rate_slot_wait`), and if it is far, defer
the message to it and take a slot again then, which is safe but spends a slot and the recipient's
turn. A held entry is never sent at its slot: defer it to its recipient's turn. A send that left
well after its slot must move the schedule on (`rate_slots_delay`). A crash loses nothing: unused
slots are idle time, never a send.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

from messaging.models import PhoneNumber

_clock_offset_s = 0.0  # the database's clock minus this host's
# (round trip, offset) of the latest batches: the offset is read at the one with the shortest round
# trip. A statement that waited for the row lock read the clock late in its round trip, which
# would put the estimate off by up to half the wait. Each sample puts the offset within half its
# round trip; one that cannot agree with the best means a clock was set, and the samples restart.
_clock_samples: deque[tuple[float, float]] = deque(maxlen=32)

_SENDER_SQL = """
WITH pace AS (
    SELECT ceil(1000000.0 / (greatest(rate_limit_per_s, 1) * %(share)s))::bigint AS step_us
    FROM messaging_phonenumber WHERE id = %(phone_number_id)s
)
INSERT INTO messaging_senderpace AS s (phone_number_id, tat)
SELECT %(phone_number_id)s, clock_timestamp() + %(lead)s + step_us * %(n)s * interval '1 microsecond'
FROM pace
ON CONFLICT (phone_number_id) DO UPDATE SET tat = greatest(s.tat, clock_timestamp() + %(lead)s)
    + (SELECT step_us FROM pace) * %(n)s * interval '1 microsecond'
RETURNING s.tat, clock_timestamp(), (SELECT step_us FROM pace)
"""

_RECIPIENT_SQL = """
WITH input AS (
    SELECT * FROM unnest(%(recipients)s::text[], %(slots)s::timestamptz[]) AS t(recipient, slot)
)
INSERT INTO messaging_recipientpace AS p (phone_number_id, recipient, next_at)
SELECT %(phone_number_id)s, recipient, slot + %(spacing)s FROM input ORDER BY recipient
ON CONFLICT (phone_number_id, recipient) DO UPDATE SET next_at = CASE
    WHEN p.next_at <= EXCLUDED.next_at - %(spacing)s THEN EXCLUDED.next_at ELSE p.next_at END
RETURNING recipient, next_at
"""

_DELAY_SQL = """
UPDATE messaging_senderpace SET tat = greatest(tat, clock_timestamp()) + %(gap)s
WHERE phone_number_id = %(phone_number_id)s
"""

_SWEEP_SQL = """
DELETE FROM messaging_recipientpace WHERE id IN (
    SELECT id FROM messaging_recipientpace WHERE next_at < clock_timestamp() - %(keep)s LIMIT %(limit)s
)
"""

# A slot is never sooner than this after it is taken: time to start the attempts and hand the
# request over, so that the first send after an idle spell does not leave late, next to another
# worker's on-time ones.
SLOT_LEAD = timedelta(milliseconds=50)
RECIPIENT_PACE_KEEP = timedelta(minutes=10)
SWEEP_BATCH = 10_000


class Slots(list):
    """The sender slots of a batch, in order; `held` maps the index of each entry that must not go
    at its slot to its recipient's turn: send it no earlier, with a sender slot taken then."""

    def __init__(self, slots: list[datetime], held: dict[int, datetime] | None = None):
        super().__init__(slots)
        self.held = held or {}


def rate_slots_take(*, phone_number: PhoneNumber, recipients: list[str]) -> Slots:
    """A sender slot for each entry, in order, each reserved, and the entries their recipients hold
    back: see the module's header for the protocol and for what callers must do with them."""
    global _clock_offset_s
    if not recipients:
        return Slots([])
    n = len(recipients)
    with connection.cursor() as cursor:
        before = time.time()
        share = 1 - settings.WHATSAPP_RATE_HEADROOM_PCT / 100
        cursor.execute(
            _SENDER_SQL, {"phone_number_id": phone_number.pk, "n": n, "share": share, "lead": SLOT_LEAD}
        )
        after = time.time()
        row = cursor.fetchone()
        if row is None:
            raise PhoneNumber.DoesNotExist(f"no phone number {phone_number.pk}")
        tat, db_now, step_us = row
        sample = (after - before, db_now.timestamp() - (before + after) / 2)
        if _clock_samples:
            best = min(_clock_samples)
            if abs(sample[1] - best[1]) > (sample[0] + best[0]) / 2:  # a clock was set: start again
                _clock_samples.clear()
        _clock_samples.append(sample)
        _clock_offset_s = min(_clock_samples)[1]
        step = timedelta(microseconds=step_us)
        base = tat - n * step
        slots = Slots([base + i * step for i in range(n)])

        spacing = timedelta(microseconds=round(settings.WHATSAPP_RECIPIENT_SPACING_S * 1_000_000))
        if spacing <= timedelta(0):
            return slots
        first: dict[str, int] = {}  # each recipient's first entry, the only one that may take its turn
        for i, recipient in enumerate(recipients):
            first.setdefault(recipient, i)
        cursor.execute(
            _RECIPIENT_SQL,
            {
                "phone_number_id": phone_number.pk,
                "recipients": list(first),
                "slots": [slots[i] for i in first.values()],
                "spacing": spacing,
            },
        )
        # A recipient's first entry took its turn when next_at is now its slot plus the spacing
        # (two slots of one sender are never equal, so an older turn cannot look like it).
        turns = dict(cursor.fetchall())
        for i, recipient in enumerate(recipients):
            taken = i == first[recipient] and turns[recipient] == slots[i] + spacing
            if not taken:
                slots.held[i] = turns[recipient]
    return slots


def rate_slots_delay(*, phone_number: PhoneNumber, gap: timedelta) -> None:
    """Move the sender's schedule on by `gap`: the slots taken from now on begin that much later.
    For a send that left late: it takes a place in Meta's seconds that its slot did not, and the
    slots after it give that back (see messaging/outbound.py, step 4)."""
    with connection.cursor() as cursor:
        cursor.execute(_DELAY_SQL, {"phone_number_id": phone_number.pk, "gap": gap})


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
