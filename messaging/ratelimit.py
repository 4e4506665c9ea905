"""The send limiter shared by every outgoing worker: one pace per sender number, one per recipient.

Meta counts a number's messages over any sliding second (80/s by default, error 130429 beyond)
and refuses messages that follow each other too closely to one recipient (error 131056). Wharf
keeps to both itself, in PostgreSQL, so that workers on any machine share one schedule:

- Sender: the shared GCRA (core/pacing.py) keyed "whatsapp:<id>", its step read from the number's
  `rate_limit_per_s` in the same statement, cut by WHATSAPP_RATE_HEADROOM_PCT: sends leave a little
  after their slots (a busy CPU, the network), and at exactly the limit a late send followed by an
  on-time one can put rate + 1 requests into one of Meta's seconds. Slots begin SLOT_LEAD after
  they are taken, time to start the attempts and hand the request over.
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

What callers must know is core/pacing.py's, and: a held entry is never sent at its slot: defer it
to its recipient's turn.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from core.pacing import PaceGone, Step, pace_delay, pace_slots_take, paces_delete
from messaging.models import PhoneNumber

_STEP_SQL = f"""
    SELECT ceil(1000000.0 / (greatest(rate_limit_per_s, 1) * %(share)s))::bigint AS step_us
    FROM {PhoneNumber._meta.db_table} WHERE id = %(phone_number_id)s
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


def sender_pace_key(phone_number: PhoneNumber | int) -> str:
    return f"whatsapp:{getattr(phone_number, 'pk', phone_number)}"


def rate_slots_take(*, phone_number: PhoneNumber, recipients: list[str]) -> Slots:
    """A sender slot for each entry, in order, each reserved, and the entries their recipients hold
    back: see the module's header for the protocol and for what callers must do with them."""
    if not recipients:
        return Slots([])
    share = 1 - settings.WHATSAPP_RATE_HEADROOM_PCT / 100
    step = Step(_STEP_SQL, {"share": share, "phone_number_id": phone_number.pk})
    try:
        taken = pace_slots_take(
            key=sender_pace_key(phone_number), n=len(recipients), step=step, lead=SLOT_LEAD
        )
    except PaceGone:
        raise PhoneNumber.DoesNotExist(f"no phone number {phone_number.pk}") from None
    slots = Slots(taken)
    with connection.cursor() as cursor:
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
    slots after it give that back (see messaging/outbound/__init__.py, step 4)."""
    pace_delay(key=sender_pace_key(phone_number), gap=gap)


def sender_paces_delete(*, phone_number_ids: list[int]) -> int:
    """The paces of deleted numbers (their recipients' turns go with the numbers' rows)."""
    return paces_delete(keys=[sender_pace_key(pk) for pk in phone_number_ids])


def rate_paces_sweep() -> int:
    """Delete recipient turns long past (one in the past means the same as no row at all)."""
    deleted = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(_SWEEP_SQL, {"keep": RECIPIENT_PACE_KEEP, "limit": SWEEP_BATCH})
            deleted += cursor.rowcount
            if cursor.rowcount < SWEEP_BATCH:
                return deleted
