"""Inbound events: every webhook body is a row first, processed later, never lost and never doubled.

The protocol, in the order things happen:

1. Record. `inbound_event_record` stores the raw body with one INSERT ... ON CONFLICT DO NOTHING on
   its sha256, so identical deliveries, even concurrent ones, make one row. A signed body that is
   not a JSON object is kept as `rejected`, for inspection, and never processed.
2. Wake, after the event's commit. The `incoming` WakeUp row coalesces wake-ups: one statement
   sets `pending` only where it was false (or true but stale: the drain it announced was lost), and
   only the caller whose statement flipped it enqueues a drain, so one SQS message covers every
   event that arrives while a drain is queued. An enqueue that fails (SQS down) is logged and
   resets the flag; the caller carries on, because the event is committed and the sweeper finds it.
3. Drain. `inbound_events_drain` clears the flag before it claims anything, so an event committed
   after the clear wakes another drain instead of being missed. It claims batches of due pending
   events with SELECT ... FOR UPDATE SKIP LOCKED, so concurrent workers take disjoint batches, and
   applies them inside the batch's one transaction: an event's parsed rows and its state change
   commit together or not at all. The events that only carry statuses (most of them) are applied
   together first, in one savepoint and a few statements (`inbound_statuses_apply`), with the rows
   one event at a time would leave; if that savepoint raises, it is rolled back whole and those
   events take the path of the others, each in a savepoint of its own, so a bad event costs its
   batch one rollback and is isolated there. A worker killed mid-batch commits nothing;
   its events are still pending and are claimed again, and since every parsed write is keyed
   (wamid, ON CONFLICT) a replay makes no duplicates. An event that raises is rolled back alone
   and retried with exponential backoff; after INBOUND_MAX_ATTEMPTS it is `failed`. One that lost
   a lock to a concurrent batch (a deadlock over a shared contact) is only deferred a moment.
4. Sweep. Beat runs `inbound_events_sweep` every 30 s: if due pending events exist (a lost wake,
   SQS down when they arrived, a retry whose time has come) it enqueues a drain, flag or not.
5. Dead letters. A drain does not raise for its failing events (their retries are rows, not SQS
   redeliveries, and a coalesced message is shared by events that succeeded). Instead, when events
   become `failed`, a task naming them is enqueued: it tries them again and raises while any still
   fails, so SQS redelivers it and, after the redrive policy's receives, moves it to `incoming-dlq`,
   where `manage.py dlq replay incoming` (after a fix) processes those events again. Operators can
   also reprocess them from the admin, which makes them pending with fresh attempts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import Actor, audit_log_record
from core.backoff import Backoff
from core.models import AuditLog
from core.queues import QUEUES, task_publish
from messaging.inbound.apply import ApplyResult, inbound_payload_apply, inbound_statuses_apply
from messaging.inbound.payloads import inbound_payload_parse
from messaging.media import media_fetch_enqueue
from messaging.models import InboundEvent, WakeUp
from messaging.wakeups import wake_flag_raise

logger = logging.getLogger(__name__)

WAKE_NAME = "incoming"
WAKE_STALE_S = 60  # a flag set longer ago than this announced a drain that was lost
BACKOFF = Backoff(base_s=10, cap_s=3600)
# A drain stops claiming well before its SQS message's visibility timeout would hand it to another
# worker, and wakes a successor if events are left.
DRAIN_BUDGET_S = QUEUES["incoming"].visibility_timeout / 2
LAST_ERROR_MAX = 2000
# Deadlock, serialization failure, lock not available: two batches wrote the same rows (a contact
# in both, say) in different orders. Not the event's fault, so not an attempt.
CONTENTION_SQLSTATES = {"40P01", "40001", "55P03"}
CONTENTION_DELAY_S = 2.0

State = InboundEvent.State


class InboundEventsFailed(Exception):
    """Raised by a retry of failed events that still fail, so that SQS redelivers its message."""


# -- record -------------------------------------------------------------------------------------

_RECORD_SQL = f"""
    INSERT INTO {InboundEvent._meta.db_table}
        (body, body_sha256, payload, state, fields, unknown_phone_number, unknown_fields,
         attempts, last_error, received_at)
    VALUES (%s, %s, %s::jsonb, %s, '{{}}', false, false, 0, '', %s)
    ON CONFLICT (body_sha256) DO NOTHING
    RETURNING id
"""


def inbound_event_record(*, body: bytes) -> tuple[InboundEvent, bool]:
    """Store a verified webhook body once; returns the event and whether this call stored it.

    A new pending event wakes the drain after commit. A body seen before returns the stored event
    (without its body) and wakes nothing: it was woken when it was first stored.
    """
    payload = inbound_payload_parse(body)
    state = State.PENDING if payload is not None else State.REJECTED
    digest = hashlib.sha256(body).hexdigest()
    received_at = timezone.now()
    with connection.cursor() as cursor:  # one statement: in autocommit, it commits by itself
        cursor.execute(
            _RECORD_SQL,
            [body, digest, json.dumps(payload) if payload is not None else None, state, received_at],
        )
        row = cursor.fetchone()
    if row is None:
        return InboundEvent.objects.defer("body").get(body_sha256=digest), False
    event = InboundEvent(
        id=row[0], body=body, body_sha256=digest, payload=payload, state=state, received_at=received_at
    )
    event._state.adding = False
    if state == State.PENDING:
        transaction.on_commit(inbound_events_wake)
    return event, True


# -- wake ---------------------------------------------------------------------------------------


def inbound_events_wake() -> None:
    """Enqueue a drain unless one is already queued (see the module's header); the enqueue waits
    for the caller's commit, so the drain sees what the caller wrote."""
    if wake_flag_raise(WAKE_NAME):
        transaction.on_commit(_wake_enqueue)


def _wake_enqueue() -> None:
    if not _drain_enqueue(reason="wake"):
        try:
            WakeUp.objects.filter(name=WAKE_NAME).update(pending=False, updated_at=timezone.now())
        except Exception as error:
            logger.warning("could not reset the incoming wake-up flag: %s", type(error).__name__)


class EnqueuePause:
    """After a failed publish, this process skips publishing for a few seconds: while SQS is down,
    one request pays for finding out, not every request; the sweeper catches up later."""

    seconds = 5.0
    until = 0.0

    @classmethod
    def active(cls) -> bool:
        return time.monotonic() < cls.until

    @classmethod
    def start(cls) -> None:
        cls.until = time.monotonic() + cls.seconds


def _drain_enqueue(
    *, reason: str, event_ids: list[int] | None = None, countdown: float | None = None
) -> bool:
    """Publish a drain (or a retry of `event_ids`) once, failing fast: a webhook must not wait on SQS."""
    if EnqueuePause.active():
        logger.info("inbound drain not enqueued (%s): SQS failed moments ago", reason)
        return False
    published = task_publish(
        inbound_events_process_task,
        kwargs={"event_ids": event_ids} if event_ids else {},
        countdown=countdown,
        what=f"an inbound drain ({reason})",
        fallback="the sweeper",
    )
    if not published:
        EnqueuePause.start()
    return published


# -- drain --------------------------------------------------------------------------------------


@dataclass
class DrainResult:
    processed: int = 0
    retrying: int = 0  # failed this time, to be tried again later
    deferred: int = 0  # lost a lock to a concurrent drain: tried again in seconds, not an attempt
    failed: list[int] = field(default_factory=list)  # failed for good: their retry task is enqueued
    batches: int = 0
    rewoken: bool = False  # stopped by its time budget with events left, and woke a successor

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _due(now: datetime) -> Q:
    return Q(state=State.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


def inbound_events_claim(*, batch_size: int, now: datetime | None = None) -> list[InboundEvent]:
    """Lock up to `batch_size` due pending events, oldest first, skipping those others hold.

    Must run inside a transaction; the locks last until it ends.
    """
    return list(
        InboundEvent.objects.select_for_update(skip_locked=True)
        .filter(_due(now or timezone.now()))
        .defer("body")
        .order_by("id")[:batch_size]
    )


def _statuses_apply(events: list[InboundEvent]) -> dict[int, ApplyResult]:
    """The events that only carry statuses, applied together in one savepoint; if that raises (an
    event's data the database refuses, a lock lost), none of them is, and each takes the one-by-one
    path, which isolates the culprit."""
    try:
        with transaction.atomic():
            return inbound_statuses_apply(events=events)
    except Exception as error:
        logger.info("statuses applied one event at a time: %s", type(error).__name__)
        return {}


_PROCESSED_SQL = f"""
    UPDATE {InboundEvent._meta.db_table} AS e
    SET state = %s, processed_at = %s, next_attempt_at = NULL,
        fields = ARRAY(SELECT jsonb_array_elements_text(b.fields::jsonb)),
        unknown_phone_number = b.unknown_phone_number, unknown_fields = b.unknown_fields
    FROM unnest(%s::bigint[], %s::text[], %s::boolean[], %s::boolean[])
        AS b(id, fields, unknown_phone_number, unknown_fields)
    WHERE e.id = b.id
"""


def _processed_record(events: list[InboundEvent], *, at: datetime) -> None:
    """Processed events' state, one statement for the batch (bulk_update's CASE per row and column
    cost more to build than the batch's statuses did to apply)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _PROCESSED_SQL,
            [
                State.PROCESSED,
                at,
                [event.pk for event in events],
                [json.dumps(event.fields) for event in events],
                [event.unknown_phone_number for event in events],
                [event.unknown_fields for event in events],
            ],
        )


def _events_apply(events: list[InboundEvent], *, result: DrainResult) -> list[int]:
    """Apply the events in the caller's transaction, those of statuses only together and each other
    one in a savepoint of its own, and record the outcome.

    Media jobs are enqueued after the commit. Returns the events that failed for good: those that
    reach INBOUND_MAX_ATTEMPTS, and failed ones that fail again.
    """
    now = timezone.now()
    processed: list[InboundEvent] = []
    media_message_ids: list[int] = []
    failed: list[int] = []
    together = _statuses_apply(events)
    for event in events:
        try:
            if (applied := together.get(event.pk)) is None:
                with transaction.atomic():
                    applied = inbound_payload_apply(event=event)
        except Exception as error:
            if getattr(error.__cause__, "sqlstate", None) in CONTENTION_SQLSTATES:
                event.next_attempt_at = now + timedelta(seconds=random.uniform(0.5, 1) * CONTENTION_DELAY_S)
                event.save(update_fields=["next_attempt_at"])
                result.deferred += 1
                logger.info(
                    "inbound event %s deferred: %s",
                    event.pk,
                    type(error).__name__,
                    extra={"inbound_event_id": event.pk},
                )
                continue
            event.attempts += 1
            event.last_error = f"{type(error).__name__}: {error}"[:LAST_ERROR_MAX]
            if event.attempts >= settings.INBOUND_MAX_ATTEMPTS or event.state == State.FAILED:
                event.state = State.FAILED
                event.next_attempt_at = None
                failed.append(event.pk)
            else:
                event.state = State.PENDING
                event.next_attempt_at = now + BACKOFF.delay(event.attempts)
                result.retrying += 1
            event.save(update_fields=["attempts", "last_error", "state", "next_attempt_at"])
            logger.warning(
                "inbound event %s failed (attempt %s, %s): %s",
                event.pk,
                event.attempts,
                event.state,
                type(error).__name__,
                extra={"inbound_event_id": event.pk},
            )
            continue
        logger.debug(
            "inbound event %s applied: %s",
            event.pk,
            ", ".join(applied.fields),
            extra={"inbound_event_id": event.pk},
        )
        event.state = State.PROCESSED
        event.processed_at = now
        event.next_attempt_at = None
        event.fields = list(applied.fields)
        event.unknown_phone_number = applied.unknown_phone_number
        event.unknown_fields = applied.unknown_fields
        processed.append(event)
        media_message_ids += applied.media_message_ids
    if processed:
        _processed_record(processed, at=now)
    result.processed += len(processed)
    result.failed += failed
    if media_message_ids:
        transaction.on_commit(partial(media_fetch_enqueue, media_message_ids))
    return failed


def inbound_events_drain(
    *, batch_size: int | None = None, time_budget_s: float = DRAIN_BUDGET_S
) -> DrainResult:
    """Process due pending events, one transaction per batch, until none is left or time is up."""
    batch_size = batch_size or settings.INBOUND_BATCH_SIZE
    WakeUp.objects.filter(name=WAKE_NAME, pending=True).update(pending=False, updated_at=timezone.now())
    result = DrainResult()
    deadline = timezone.now() + timedelta(seconds=time_budget_s)
    while True:
        with transaction.atomic():
            events = inbound_events_claim(batch_size=batch_size)
            if events:
                result.batches += 1
                if failed := _events_apply(events, result=result):
                    transaction.on_commit(
                        partial(_drain_enqueue, reason="retry of failed events", event_ids=failed)
                    )
        if len(events) < batch_size:
            break
        if timezone.now() >= deadline:
            result.rewoken = _drain_enqueue(reason="drain out of time")
            break
    if result.deferred:
        _drain_enqueue(reason="events deferred by lock contention", countdown=CONTENTION_DELAY_S)
    return result


def inbound_events_retry(*, event_ids: list[int]) -> DrainResult:
    """Try failed events once more, whatever their attempts; raise while any still fails.

    Events that are no longer failed (processed since, or made pending again by an operator) are
    left to the drain. The task that carries this raises so that SQS redelivers it and finally
    dead-letters it; its failures enqueue no further retry.
    """
    result = DrainResult()
    with transaction.atomic():
        events = list(
            InboundEvent.objects.select_for_update(skip_locked=True)
            .filter(id__in=event_ids, state=State.FAILED)
            .defer("body")
            .order_by("id")
        )
        if events:
            result.batches = 1
            still_failing = _events_apply(events, result=result)
    if events and still_failing:
        raise InboundEventsFailed(f"inbound events still failing: {still_failing}")
    return result


@shared_task(name="messaging.inbound_events_process")
def inbound_events_process_task(event_ids: list[int] | None = None) -> dict:
    """Drain pending events; with `event_ids`, retry those failed events and raise while they fail,
    so that the message ends in `incoming-dlq` (step 5 above)."""
    if event_ids:
        return inbound_events_retry(event_ids=event_ids).as_dict()
    return inbound_events_drain().as_dict()


# -- sweep and reprocess ------------------------------------------------------------------------


def inbound_events_sweep() -> bool:
    """Enqueue a drain if due pending events exist, whatever the wake-up flag says."""
    if not InboundEvent.objects.filter(_due(timezone.now())).exists():
        return False
    return _drain_enqueue(reason="sweep")


def inbound_events_reprocess(
    *, event_ids: list[int], actor: Actor, source: str = AuditLog.Source.ADMIN
) -> int:
    """Make failed events pending again with fresh attempts, audited, and wake the drain.

    Rejected events are not JSON objects and stay as they are; others are not failed.
    """
    with transaction.atomic():
        events = list(
            InboundEvent.objects.select_for_update()
            .filter(id__in=event_ids, state=State.FAILED)
            .only("id", "last_error")
            .order_by("id")
        )
        if not events:
            return 0
        ids = [event.pk for event in events]
        InboundEvent.objects.filter(id__in=ids).update(state=State.PENDING, attempts=0, next_attempt_at=None)
        audit_log_record(
            actor=actor,
            source=source,
            action="inbound_events_reprocess",
            target_repr=f"{len(ids)} inbound event{'s' if len(ids) != 1 else ''}",
            changes={"ids": ids, "last_errors": {str(event.pk): event.last_error[:200] for event in events}},
        )
        transaction.on_commit(inbound_events_wake)
    return len(ids)
