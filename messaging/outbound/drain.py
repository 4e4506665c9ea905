"""The outgoing drain: claim, pace, attempt, record (steps 2 to 4 of messaging/outbound/__init__.py)."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from queue import SimpleQueue
from typing import Any

import httpx
from celery import shared_task
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from core.alerts import operator_alert_raise
from core.backoff import Backoff
from core.pacing import pace_clock_now, pace_wait
from core.queues import QUEUES, task_publish
from core.storage import media_storage, presigned_url
from messaging.graph import (
    GraphAuthError,
    GraphClient,
    GraphError,
    GraphRetryableError,
    graph_client,
    graph_client_of_thread,
)
from messaging.models import Message, PendingStatus, PhoneNumber, SendAttempt, WakeUp
from messaging.outbound.content import MEDIA_KINDS
from messaging.ratelimit import rate_slots_delay, rate_slots_take
from messaging.services import phone_number_pause
from messaging.statuses import (
    NO_ERROR,
    WAMID_LOCK,
    message_pending_statuses_apply,
    outgoing_doubts_resolve,
    send_refusal_record,
)
from messaging.wakeups import wake_flag_raise

logger = logging.getLogger(__name__)

WAKE_NAME = "outgoing"
# A drain claims about ROUND_S worth of a sender's rate at a time, and looks for senders with
# messages due as often.
ROUND_S = 1.0
BATCH_MAX = 1000
MAX_ATTEMPTS = 6
BACKOFF = Backoff(base_s=5.0, cap_s=900.0)
SLOT_WAIT_MAX_S = 5.0  # a slot further off than this sends the message back to the queue, due then
# Requests one drain may have in flight at once: at a sender's rate times Meta's answer time, sends
# leave at their slots; fewer, and a slow answer holds back the sends behind it.
SEND_CONCURRENCY = 32
# A group is GROUP_S worth of a sender's rate, at most GROUP_MAX sends: its slots are taken and
# its attempts started in one statement each, when the sender's prepared sends end within GROUP_S.
# So a drain holds slots at most about two groups ahead (another drain's slots follow close behind
# them); a worker dying leaves in doubt only the sends it had cleared (CLEAR_AHEAD_S).
GROUP_S = 0.1
GROUP_MAX = 50
# A send's attempt is started with its group's slots, and cleared to leave (committed) only when its
# slot comes within this: what a dead worker leaves in doubt is what it had cleared, not its groups.
# Longer than a drain's loop takes, so that sends are cleared before their slots.
CLEAR_AHEAD_S = 0.05
# Meta counts any one second. Slots leave WHATSAPP_RATE_HEADROOM_PCT of it free (20 ms at 2 %),
# for sends that leave up to this late and for the way to Meta (threads, network): a send that
# would leave later moves its sender's schedule on, or is queued again (step 4).
LATE_MAX_S = 0.005
# A sender stops for the rest of a drain when its first request is left unanswered, or this many in
# a row after it was answered.
SILENT_MAX = 3
SWITCH_INTERVAL_S = 0.0005
DRAIN_BUDGET_S = QUEUES["outgoing"].visibility_timeout / 2
SQS_DELAY_MAX_S = 900
# Meta fetches a linked medium when it sends the message, which may be after our retries.
MEDIA_LINK_EXPIRY_S = 24 * 3600

_S = Message.Status
_O = SendAttempt.Outcome


# -- wake -----------------------------------------------------------------------------------------


def outgoing_wake() -> None:
    """Enqueue a drain unless one is queued already (the flag is shared with the drain, as inbound's)."""
    if wake_flag_raise(WAKE_NAME):
        transaction.on_commit(_wake_enqueue)


def _wake_enqueue() -> None:
    if not outgoing_drain_enqueue(reason="wake"):
        try:
            WakeUp.objects.filter(name=WAKE_NAME).update(pending=False, updated_at=timezone.now())
        except Exception as error:
            logger.warning("could not reset the outgoing wake-up flag: %s", type(error).__name__)


def outgoing_drain_enqueue(*, reason: str, countdown: float | None = None) -> bool:
    return task_publish(
        outbound_send_task, countdown=countdown, what=f"an outgoing drain ({reason})", fallback="the sweeper"
    )


# -- the outgoing worker --------------------------------------------------------------------------


@dataclass
class DrainResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    in_doubt: int = 0
    deferred: int = 0  # their slot was far off, or their recipient's turn later: queued again, due then
    released: int = 0  # their sender was paused mid-batch: queued again
    late: int = 0  # would leave more than LATE_MAX_S after their slots (a slow sender's: queued again)
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worker_token() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def outgoing_due(now: datetime) -> Q:
    return Q(status=_S.QUEUED) & (Q(due_at__isnull=True) | Q(due_at__lte=now))


def outgoing_claim(*, phone_number: PhoneNumber, batch_size: int, worker: str) -> list[Message]:
    """Claim up to `batch_size` due queued messages of one sender, oldest first, skipping rows
    other drains hold; committed on return, so the claim is visible to the sweeper."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(outgoing_due(now), phone_number=phone_number)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if ids:
            Message.objects.filter(id__in=ids).update(
                status=_S.SENDING, claimed_at=now, claimed_by=worker, updated_at=now
            )
    return list(
        Message.objects.filter(id__in=ids, claimed_by=worker)
        .only("id", "wamid", "payload", "attempts", "type", "media_key", "media_mime_type", "phone_number_id")
        .order_by("id")
    )


def _release(message: Message, *, worker: str, due_at: datetime | None = None) -> bool:
    """Give a claimed message back to the queue: safe only while no attempt was started for it."""
    return bool(
        Message.objects.filter(pk=message.pk, status=_S.SENDING, claimed_by=worker).update(
            status=_S.QUEUED, due_at=due_at, claimed_at=None, claimed_by="", updated_at=timezone.now()
        )
    )


_MESSAGE = Message._meta.db_table
_ATTEMPT = SendAttempt._meta.db_table

# One statement, so one round trip that commits by itself: the claim is checked and refreshed
# and the attempt inserted together, or nothing happens (the claim is gone).
_ATTEMPT_START_SQL = f"""
    WITH owned AS (
        UPDATE {_MESSAGE} SET claimed_at = %(now)s
        WHERE id = %(id)s AND status = 'sending' AND claimed_by = %(worker)s
        RETURNING id
    )
    INSERT INTO {_ATTEMPT} (message_id, started_at, cleared_at, worker, error_title, error_details, outcome)
    SELECT id, %(now)s, %(now)s, %(worker)s, '', '', '' FROM owned
    RETURNING id
"""


def send_attempt_start(message: Message, *, worker: str) -> int | None:
    """The attempt row's id, committed before the request; None when the claim is no longer ours."""
    with connection.cursor() as cursor:
        cursor.execute(_ATTEMPT_START_SQL, {"now": timezone.now(), "id": message.pk, "worker": worker})
        row = cursor.fetchone()
    return row[0] if row else None


def _request_body(message: Message) -> dict:
    """The stored payload; a medium stored in S3 gets a fresh presigned link for this attempt."""
    body = message.payload
    if message.type in MEDIA_KINDS and message.media_key:
        media = dict(body.get(message.type) or {})
        media["link"] = presigned_url(
            media_storage(),
            message.media_key,
            expire=MEDIA_LINK_EXPIRY_S,
            content_type=message.media_mime_type or None,
            exact_type=True,  # Meta reads the medium's type from the answer
        )
        body = {**body, message.type: media}
    return body


def _request_left(error: GraphRetryableError) -> bool:
    """Whether a request that got no answer may have reached Meta: not if it never connected."""
    cause = error.__cause__
    if error.status is not None or not isinstance(cause, httpx.HTTPError):
        return False  # Meta answered (5xx, 429, a throttling code)
    return not isinstance(
        cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol
    )


# The attempt's answer and the message's new state in one statement. A message given Meta's wamid
# also takes the lock status application takes on that wamid (messaging/statuses.py), within the caller's
# transaction, so that a status stored meanwhile as pending is seen by the statement after it.
_OUTCOME_SQL = f"""
    WITH attempt AS (
        UPDATE {_ATTEMPT} SET finished_at = %(now)s, http_status = %(http_status)s,
            error_code = %(error_code)s, error_title = %(error_title)s,
            error_details = %(error_details)s, latency_ms = %(latency_ms)s, outcome = %(outcome)s
        WHERE id = %(attempt)s
    ), locked AS (
        SELECT pg_advisory_xact_lock(%(lock)s, hashtext(%(wamid)s)) WHERE %(wamid)s <> ''
    )
    UPDATE {_MESSAGE} SET {{assignments}}, updated_at = %(now)s
    WHERE id = %(id)s AND status IN ('sending', 'in_doubt') AND claimed_by = %(worker)s
        AND (%(wamid)s = '' OR EXISTS (SELECT 1 FROM locked))
    RETURNING id
"""


def _outcome_record(
    message: Message,
    attempt: int,
    *,
    worker: str,
    outcome: str,
    latency_ms: int,
    http_status: int | None,
    error: GraphError | None,
    changes: dict[str, Any],
) -> bool:
    """The attempt's answer and the message's new state, together. The message may have been made
    in doubt meanwhile by the sweeper (this worker was slow): the answer settles that doubt."""

    wamid = changes.get("wamid", "")
    columns = sorted(changes)
    sql = _OUTCOME_SQL.replace("{assignments}", ", ".join(f"{column} = %(c_{column})s" for column in columns))
    params = {
        "now": timezone.now(),
        "http_status": http_status,
        "error_code": error.code if error else None,
        "error_title": (error.title if error else "")[:255],
        "error_details": error.details if error else "",
        "latency_ms": latency_ms,
        "outcome": outcome,
        "attempt": attempt,
        "lock": WAMID_LOCK,
        "wamid": wamid,
        "id": message.pk,
        "worker": worker,
        **{f"c_{column}": changes[column] for column in columns},
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        moved = cursor.fetchone() is not None
        if moved and wamid:
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {PendingStatus._meta.db_table} WHERE wamid = %s)", [wamid]
            )
            if cursor.fetchone()[0]:
                message.wamid, message.direction = wamid, Message.Direction.OUTBOUND
                message_pending_statuses_apply(message=message)
    return moved


def _error_fields(error: GraphError) -> dict[str, Any]:
    return {
        "error_code": error.code,
        "error_title": error.title[:255],
        "error_details": error.details or error.reason,
    }


@dataclass
class _Reply:
    """Meta's answer to one request (or the error it became), as a request thread saw it."""

    answer: dict | None
    error: GraphError | None
    latency_ms: int
    at: datetime


def _request(client: GraphClient, phone_number_id: str, body: dict) -> _Reply:
    """One Graph API request; runs in a request thread, so it touches no database."""
    started = time.monotonic()
    answer, error = None, None
    try:
        answer = client.request("POST", f"{phone_number_id}/messages", json=body)
    except GraphError as caught:
        error = caught
    return _Reply(answer, error, int((time.monotonic() - started) * 1000), timezone.now())


def _wamid_of(answer: dict) -> str:
    wamids = [item.get("id") for item in answer.get("messages", []) if isinstance(item, dict)]
    return wamids[0] if wamids and isinstance(wamids[0], str) else ""


def outgoing_message_send(
    message: Message, *, phone_number: PhoneNumber, worker: str, slot: datetime | None = None
) -> str:
    """Send one claimed message, at its `slot` from the limiter, and wait for the answer; returns
    the attempt's outcome ("" when the claim was lost, "auth" when Meta refused the sender's token:
    the sender is paused and the message queued again). Drains send many at once (`_Stream`)."""
    attempt = send_attempt_start(message, worker=worker)
    if attempt is None:
        return ""
    body = _request_body(message)
    if slot is not None:
        pace_wait(slot)
    reply = _request(graph_client(), phone_number.phone_number_id, body)
    return _outcome_apply(message, attempt, phone_number=phone_number, worker=worker, reply=reply)


def _outcome_apply(
    message: Message, attempt: int, *, phone_number: PhoneNumber, worker: str, reply: _Reply
) -> str:
    """Record one answer (see `outgoing_message_send`); a group of successes has `_sents_record`."""
    error, now = reply.error, reply.at
    released = {"claimed_at": None, "claimed_by": ""}
    record = dict(message=message, attempt=attempt, worker=worker, latency_ms=reply.latency_ms, error=error)
    if error is None:
        changes = {"status": _S.SENT, "sent_at": now, "due_at": None, **released, **NO_ERROR}
        if wamid := _wamid_of(reply.answer):
            changes["wamid"] = wamid
        try:
            _outcome_record(**record, outcome=_O.SENT, http_status=200, changes=changes)
        except IntegrityError:  # Meta named a wamid Wharf already holds: keep the placeholder
            logger.error(
                "Meta answered message %s with a wamid already stored: %s",
                message.pk,
                wamid,
                extra={"message_id": message.pk, "wamid": wamid},
            )
            changes.pop("wamid")
            _outcome_record(**record, outcome=_O.SENT, http_status=200, changes=changes)
        _sent_log(message, changes.get("wamid", ""))
        return _O.SENT
    outcome_extra = {"message_id": message.pk, "error_code": error.code, "http_status": error.status}
    if isinstance(error, GraphAuthError):
        reason = f"Meta refused the access token: {error.reason}"
        _outcome_record(
            **record, outcome=_O.RETRY, http_status=error.status, changes={"status": _S.QUEUED, **released}
        )
        logger.warning("message %s: Meta refused the token, sender paused", message.pk, extra=outcome_extra)
        if phone_number_pause(phone_number=phone_number, reason=reason):
            operator_alert_raise(
                key=f"sender-paused:{phone_number.phone_number_id}",
                text=f"Sending from {phone_number} is paused. {reason}. "
                "Fix the token, then resume the number.",
            )
        return "auth"
    if isinstance(error, GraphRetryableError) and _request_left(error):
        _outcome_record(
            **record,
            outcome=_O.IN_DOUBT,
            http_status=None,
            changes={"status": _S.IN_DOUBT, "attempts": message.attempts + 1, **_error_fields(error)},
        )
        if outgoing_doubts_resolve(message_ids=[message.pk]):  # a status of it came before the silence
            return _O.SENT
        logger.warning("message %s in doubt: its request went unanswered", message.pk, extra=outcome_extra)
        return _O.IN_DOUBT
    attempts = message.attempts + 1
    if isinstance(error, GraphRetryableError) and attempts < MAX_ATTEMPTS:
        due_at = now + BACKOFF.delay(attempts)
        changes = {
            "status": _S.QUEUED,
            "attempts": attempts,
            "due_at": due_at,
            **released,
            **_error_fields(error),
        }
        _outcome_record(**record, outcome=_O.RETRY, http_status=error.status, changes=changes)
        logger.info("message %s retried after error %s", message.pk, error.code, extra=outcome_extra)
        return _O.RETRY
    changes = {
        "status": _S.FAILED,
        "attempts": attempts,
        "failed_at": now,
        "due_at": None,
        **_error_fields(error),
    }
    if _outcome_record(**record, outcome=_O.FAILED, http_status=error.status, changes=changes):
        send_refusal_record(message=message, at=now, error_code=error.code)
    logger.info("message %s failed with error %s", message.pk, error.code, extra=outcome_extra)
    return _O.FAILED


def _sent_log(message: Message, wamid: str) -> None:
    logger.debug(
        "message %s sent as %s",
        message.pk,
        wamid,
        extra={"message_id": message.pk, "wamid": wamid, "phone_number_id": message.phone_number_id},
    )


# -- many sends at once ---------------------------------------------------------------------------

# Attempts for a group of claimed messages, not cleared yet: one statement, committed with the
# group's slots.
_ATTEMPTS_START_SQL = f"""
    WITH owned AS (
        UPDATE {_MESSAGE} SET claimed_at = %(now)s
        WHERE id = ANY(%(ids)s) AND status = 'sending' AND claimed_by = %(worker)s
        RETURNING id
    )
    INSERT INTO {_ATTEMPT} (message_id, started_at, cleared_at, worker, error_title, error_details, outcome)
    SELECT id, %(now)s, NULL, %(worker)s, '', '', '' FROM owned
    RETURNING message_id, id
"""

# Open attempts cleared to leave, their claims checked and refreshed in the same statement (so it
# and the sweep lock the same rows): one statement, committed before any of their requests leaves.
_ATTEMPTS_CLEAR_SQL = f"""
    WITH owned AS (
        UPDATE {_MESSAGE} SET claimed_at = %(now)s
        WHERE id = ANY(%(ids)s) AND status = 'sending' AND claimed_by = %(worker)s
        RETURNING id
    )
    UPDATE {_ATTEMPT} AS a SET cleared_at = %(now)s FROM owned
    WHERE a.id = ANY(%(attempts)s) AND a.message_id = owned.id AND a.outcome = ''
    RETURNING a.id
"""

# An attempt whose request never left: closed, its message queued again.
_ATTEMPT_CANCEL_SQL = f"""
    WITH attempt AS (
        UPDATE {_ATTEMPT} SET finished_at = %(now)s, outcome = 'retry', error_title = %(reason)s
        WHERE id = %(attempt)s AND outcome = ''
    )
    UPDATE {_MESSAGE} SET status = 'queued', due_at = %(due_at)s, claimed_at = NULL, claimed_by = '',
        updated_at = %(now)s
    WHERE id = %(id)s AND status = 'sending' AND claimed_by = %(worker)s
"""

# Meta's answers to a group of successful sends and their messages' new state, in one statement
# that takes the wamids' locks (in one order) as `_OUTCOME_SQL` takes one.
_SENTS_SQL = f"""
    WITH input AS (
        SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::bigint[], %(wamids)s::text[],
            %(latencies)s::int[], %(times)s::timestamptz[]) AS t(id, attempt, wamid, latency_ms, at)
    ), attempt AS (
        UPDATE {_ATTEMPT} AS a SET finished_at = i.at, http_status = 200, latency_ms = i.latency_ms,
            outcome = 'sent'
        FROM input AS i WHERE a.id = i.attempt
    ), locked AS (
        SELECT count(pg_advisory_xact_lock(%(lock)s, hashtext(w))) AS n
        FROM (SELECT wamid AS w FROM input WHERE wamid <> '' ORDER BY hashtext(wamid)) AS l
    )
    UPDATE {_MESSAGE} AS m SET status = 'sent', sent_at = i.at, due_at = NULL, claimed_at = NULL,
        claimed_by = '', error_code = NULL, error_title = '', error_details = '',
        wamid = CASE WHEN i.wamid <> '' THEN i.wamid ELSE m.wamid END, updated_at = %(now)s
    FROM input AS i, locked
    WHERE m.id = i.id AND m.status IN ('sending', 'in_doubt') AND m.claimed_by = %(worker)s
        AND locked.n >= 0
"""


@dataclass(eq=False)
class _Send:
    slot: datetime
    phone_number: PhoneNumber
    message: Message
    state: str = "claimed"  # then "started" (attempt row), "flying" (request handed over), "done"
    clear: str = ""  # "cleared": its request may leave (committed); "lost": its claim was taken
    attempt: int | None = None
    body: dict | None = None
    future: Future | None = None
    reply: _Reply | None = None
    gaps_s: float = 0.0  # the sender's `gaps_s` when the slot was taken
    unsent: str = ""  # why the request thread did not send it


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _send_pool() -> ThreadPoolExecutor:
    """This process's request threads, made after the worker's fork (a pool does not survive one)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(SEND_CONCURRENCY, thread_name_prefix="graph-send"))
        # The thread that hands requests over at their slots waits at most this for the GIL while
        # request threads parse answers (Python's default is 5 ms, a quarter of the headroom).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    return _pool[1]


def _attempts_start(sends: list[_Send], *, worker: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            _ATTEMPTS_START_SQL,
            {"now": timezone.now(), "ids": [send.message.pk for send in sends], "worker": worker},
        )
        started = dict(cursor.fetchall())
    for send in sends:
        if (attempt := started.get(send.message.pk)) is not None:
            send.attempt, send.state = attempt, "started"
            send.body = _request_body(send.message)
        else:
            send.state = "done"  # the claim is gone: someone else has the message


def _attempts_clear(sends: list[_Send], *, worker: str) -> None:
    """Clear the sends' requests to leave, each whose claim is still this drain's: "cleared" or "lost"."""
    with connection.cursor() as cursor:
        cursor.execute(
            _ATTEMPTS_CLEAR_SQL,
            {
                "now": timezone.now(),
                "ids": [send.message.pk for send in sends],
                "attempts": [send.attempt for send in sends],
                "worker": worker,
            },
        )
        cleared = {row[0] for row in cursor.fetchall()}
    for send in sends:
        send.clear = "cleared" if send.attempt in cleared else "lost"


def _attempt_cancel(send: _Send, *, worker: str, due_at: datetime | None, reason: str) -> bool:
    send.state = "done"
    with connection.cursor() as cursor:
        cursor.execute(
            _ATTEMPT_CANCEL_SQL,
            {
                "now": timezone.now(),
                "attempt": send.attempt,
                "reason": f"Not sent: {reason}"[:255],
                "due_at": due_at,
                "id": send.message.pk,
                "worker": worker,
            },
        )
        return cursor.rowcount > 0


def _sents_record(sends: list[_Send], *, worker: str) -> None:
    """Record a group of successes together; one by one when the group cannot be (a wamid Wharf
    already holds, a deadlock with a status's lock on a wamid)."""

    wamids = [_wamid_of(send.reply.answer) for send in sends]
    params = {
        "ids": [send.message.pk for send in sends],
        "attempts": [send.attempt for send in sends],
        "wamids": wamids,
        "latencies": [send.reply.latency_ms for send in sends],
        "times": [send.reply.at for send in sends],
        "lock": WAMID_LOCK,
        "now": timezone.now(),
        "worker": worker,
    }
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_SENTS_SQL, params)
            cursor.execute(
                f"SELECT DISTINCT wamid FROM {PendingStatus._meta.db_table} WHERE wamid = ANY(%s)",
                [[wamid for wamid in wamids if wamid]],
            )
            pending = {row[0] for row in cursor.fetchall()}
            for send, wamid in zip(sends, wamids, strict=True):
                if wamid in pending:
                    send.message.wamid, send.message.direction = wamid, Message.Direction.OUTBOUND
                    message_pending_statuses_apply(message=send.message)
        if logger.isEnabledFor(logging.DEBUG):
            for send, wamid in zip(sends, wamids, strict=True):
                _sent_log(send.message, wamid)
    except (IntegrityError, OperationalError) as error:
        logger.warning("recording %d answers one by one: %s", len(sends), type(error).__name__)
        for send in sends:
            _outcome_apply(
                send.message, send.attempt, phone_number=send.phone_number, worker=worker, reply=send.reply
            )


class _Dispatcher(threading.Thread):
    """Hands each prepared send to a request thread at its slot, and does nothing else: no database,
    no recording, so that nothing a drain must also do makes a request leave late."""

    def __init__(self, stream: _Stream):
        super().__init__(name="graph-dispatch", daemon=True)
        self.stream = stream
        self.heap: list[tuple[datetime, int, _Send]] = []
        self.order = itertools.count()
        self.cond = threading.Condition()
        self.closed = False

    def push(self, sends: list[_Send]) -> None:
        with self.cond:
            for send in sends:
                heapq.heappush(self.heap, (send.slot, next(self.order), send))
            self.cond.notify()

    def notify(self) -> None:
        """Sends were cleared (or lost): the one waiting at its slot may go."""
        with self.cond:
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        if self.is_alive():
            self.join()

    def run(self) -> None:

        while True:
            with self.cond:
                if self.closed:
                    return
                if not self.heap:
                    self.cond.wait()
                    continue
                slot, _, send = self.heap[0]
                if send.clear == "lost":  # the drain has given it up
                    heapq.heappop(self.heap)
                    continue
                delay = (slot - pace_clock_now()).total_seconds()
                if delay > 0:
                    self.cond.wait(delay)  # or until an earlier send is pushed
                    continue
                if not send.clear:
                    self.cond.wait()  # until the drain has cleared it (it leaves late)
                    continue
                heapq.heappop(self.heap)
            self.stream.hand_over(send)


@dataclass(eq=False)
class _Sender:
    """One sender's part of a drain: messages claimed and not yet prepared, and what is under way."""

    phone_number: PhoneNumber
    queue: deque[Message] = field(default_factory=deque)
    horizon: datetime | None = None  # the last slot handed to the dispatcher
    pending: int = 0  # sends handed to the dispatcher and not yet answered or given back
    probe: str = ""  # "due": its first send goes alone; "out": it has, no more until its answer
    more: bool = True  # its last claim came back full: the queue may hold more
    gaps_s: float = 0.0  # how far this drain moved its schedule on for sends that left late


class _Stream:
    """A drain's sends: claimed per sender about ROUND_S worth at a time, prepared a group at a time
    just before their slots (slots taken, attempts started), handed over by the dispatcher, and the
    answers recorded in groups as they come. A sender Meta refused or left unanswered stops its
    remaining sends."""

    def __init__(self, *, worker: str, result: DrainResult, batch_size: int):
        self.worker, self.result, self.batch_size = worker, result, batch_size
        self.senders: dict[int, _Sender] = {}
        self.stops: dict[int, tuple[datetime | None, str]] = {}  # sender → (due time, why) for the rest
        self.events: SimpleQueue[tuple[_Send, tuple[datetime | None, str] | None]] = SimpleQueue()
        self.lates: SimpleQueue[tuple[_Send, float]] = SimpleQueue()  # sent, this late after the slot
        self.answered: set[int] = set()  # senders Meta answered in this drain
        self.silent: dict[int, int] = {}  # sender → requests left unanswered since its last answer
        self.wake = threading.Event()
        self.open: set[_Send] = set()  # attempts started, not yet answered or closed
        self.replies: list[_Send] = []
        self.replies_since = 0.0
        self.looked_at = -math.inf  # when `_senders_due` last ran
        self.dispatcher = _Dispatcher(self)
        graph_client()  # made now with the SSL context all share (about 0.1 s), not after a slot

    # -- the request side (dispatcher and request threads: no database) --

    def hand_over(self, send: _Send) -> None:
        if (stop := self.stops.get(send.phone_number.pk)) is not None:
            self._event(send, stop)
            return
        send.state = "flying"
        send.future = _send_pool().submit(self._request_in_time, send)
        send.future.add_done_callback(lambda _future, send=send: self._answered(send))

    def _request_in_time(self, send: _Send) -> _Reply | None:
        """The request, in a request thread; None when it would leave too late to leave at all.
        Lateness is read here, as the request leaves, not at the hand-over: a request waits for a
        free request thread too."""

        late_s = (pace_clock_now() - send.slot).total_seconds()
        if late_s > LATE_MAX_S:
            if _group_size(send.phone_number) == 1:  # the next slot may be another drain's already
                send.unsent = f"it would have left {late_s * 1000:.0f} ms after its slot"
                return None
            self.lates.put((send, late_s))  # the drain moves the sender's schedule on
            self.wake.set()
        return _request(graph_client_of_thread(), send.phone_number.phone_number_id, send.body)

    def _answered(self, send: _Send) -> None:
        if send.future.exception() is None:
            if (reply := send.future.result()) is None:
                self._event(send, (None, send.unsent))
                return
            error, number = reply.error, send.phone_number.pk
            if error is None:
                self.answered.add(number)
                self.silent[number] = 0
            elif isinstance(error, GraphAuthError):
                self.stops[number] = (None, "Meta refused the sender's token")
            elif isinstance(error, GraphRetryableError) and _request_left(error):
                # More requests into silence would only make more messages in doubt; one dropped
                # connection among answered requests is not silence.
                self.silent[number] = self.silent.get(number, 0) + 1
                silence = number not in self.answered or self.silent[number] >= SILENT_MAX
                if silence and number not in self.stops:
                    due_at = timezone.now() + BACKOFF.delay(1)
                    self.stops[number] = (due_at, "Meta left a request unanswered")
        self._event(send, None)

    def _event(self, send: _Send, unsent: tuple[datetime | None, str] | None) -> None:
        self.events.put((send, unsent))
        self.wake.set()

    # -- the drain's side (its thread and database connection) --

    def run(self, *, deadline: float, first: bool) -> None:
        self.dispatcher.start()
        try:
            self.refill(look=True, probe=first)
            out_of_time = False
            while True:
                self.settle()
                self.delay()
                if not out_of_time and time.monotonic() >= deadline:
                    out_of_time = True
                    self.queues_release(due_at=None, counter="released")
                    outgoing_drain_enqueue(reason="drain out of time")
                if not out_of_time:
                    self.refill()
                    self.prepare()
                self.clear()
                if not self.open and not any(sender.queue for sender in self.senders.values()):
                    if out_of_time or not self.refill(look=True):
                        break
                    continue
                self.wake.wait(0.01)
            self.record()
        finally:
            self.dispatcher.close()
            self.abort()

    def refill(self, *, look: bool = False, probe: bool = False) -> bool:
        """Claim about ROUND_S worth for each sender whose queue runs short of a group and that may
        have more; `look` (at least every ROUND_S) asks the database which senders have messages due."""
        now = time.monotonic()
        if look or now - self.looked_at >= ROUND_S:
            self.looked_at = now
            for phone_number in _senders_due(timezone.now()):
                if phone_number.pk not in self.senders:
                    self.senders[phone_number.pk] = _Sender(phone_number, probe="due" if probe else "")
                self.senders[phone_number.pk].more = True
        claimed = False
        for number, sender in self.senders.items():
            phone_number = sender.phone_number
            if not sender.more or number in self.stops or len(sender.queue) >= _group_size(phone_number):
                continue
            size = min(self.batch_size, max(1, math.ceil(phone_number.rate_limit_per_s * ROUND_S)))
            messages = outgoing_claim(phone_number=phone_number, batch_size=size, worker=self.worker)
            sender.more = len(messages) == size
            if messages:  # the sweep may have queued again some this drain holds: it claimed them back
                held = {message.pk for message in sender.queue} | {send.message.pk for send in self.open}
                messages = [message for message in messages if message.pk not in held]
            if messages:
                claimed = True
                self.result.batches += 1
                sender.queue.extend(messages)
                if sender.more:
                    outgoing_wake()  # more than this drain takes at once: idle workers may join
        return claimed

    def prepare(self) -> None:
        """For each sender whose prepared sends end within GROUP_S, the next group: its slots taken,
        the messages whose slot is far off or whose recipient's turn comes later queued again, due
        then, and attempts started for the others (committed before the dispatcher has them)."""

        now = pace_clock_now()
        for number, sender in self.senders.items():
            if not sender.queue:
                continue
            if (stop := self.stops.get(number)) is not None:
                self.queue_release(sender, due_at=stop[0], counter="released")
                continue
            if sender.probe == "out":
                if sender.pending:
                    continue
                sender.probe = ""
            if sender.pending and sender.horizon and (sender.horizon - now).total_seconds() > GROUP_S:
                continue
            size = 1 if sender.probe == "due" else _group_size(sender.phone_number)
            sender.probe = "out" if sender.probe == "due" else ""
            messages = [sender.queue.popleft() for _ in range(min(size, len(sender.queue)))]
            recipients = [str(message.payload.get("to", "")) for message in messages]
            slots = rate_slots_take(phone_number=sender.phone_number, recipients=recipients)
            group = []
            for index, (slot, message) in enumerate(zip(slots, messages, strict=True)):
                if index in slots.held:  # its recipient's turn is later: a new slot then
                    self.result.deferred += _release(message, worker=self.worker, due_at=slots.held[index])
                elif (slot - now).total_seconds() > SLOT_WAIT_MAX_S:
                    self.result.deferred += _release(message, worker=self.worker, due_at=slot)
                else:
                    group.append(_Send(slot, sender.phone_number, message, gaps_s=sender.gaps_s))
            if not group:
                continue
            _attempts_start(group, worker=self.worker)
            started = [send for send in group if send.state == "started"]
            if started:
                self.open.update(started)
                sender.pending += len(started)
                sender.horizon = max(send.slot for send in started)
                self.dispatcher.push(started)

    def clear(self) -> None:
        """Clear the started sends whose slots come within CLEAR_AHEAD_S (one statement, committed
        before the dispatcher hands any of them over); a send whose claim was taken meanwhile does
        not leave, and is given up."""
        horizon = pace_clock_now() + timedelta(seconds=CLEAR_AHEAD_S)
        due = [
            send for send in self.open if send.state == "started" and not send.clear and send.slot <= horizon
        ]
        if not due:
            return
        _attempts_clear(due, worker=self.worker)
        self.dispatcher.notify()
        for send in due:
            if send.clear == "lost":
                self._event(send, (None, "its claim was taken"))

    def settle(self) -> None:
        """Take in what came back: answers, recorded in groups (at once for an error), and sends that
        did not leave (their sender stopped, or too late), their attempts closed unsent and their
        messages queued again."""
        self.wake.clear()
        while not self.events.empty():
            send, unsent = self.events.get()
            self.open.discard(send)
            self.senders[send.phone_number.pk].pending -= 1
            if unsent is not None:
                counter = "released" if send.phone_number.pk in self.stops else "late"
                due_at, reason = unsent
                if _attempt_cancel(send, worker=self.worker, due_at=due_at, reason=reason):
                    setattr(self.result, counter, getattr(self.result, counter) + 1)
                continue
            send.reply = send.future.result()
            if not self.replies:
                self.replies_since = time.monotonic()
            self.replies.append(send)
            if send.reply.error is not None:
                self.replies_since = -math.inf
        waited_s = time.monotonic() - self.replies_since
        if len(self.replies) >= GROUP_MAX or waited_s >= GROUP_S or not self.open:
            self.record()

    def delay(self) -> None:
        """Move on the schedule of each sender whose sends left more than LATE_MAX_S after their
        slots, by as much more (less what this drain moved it on since their slots were taken), so
        that no second of Meta's holds more than the slots allow (see the module's header)."""

        gaps: dict[int, float] = {}
        while not self.lates.empty():
            send, late_s = self.lates.get()
            self.result.late += 1
            sender = self.senders[send.phone_number.pk]
            gap = late_s - LATE_MAX_S - (sender.gaps_s - send.gaps_s)
            if gap > 0:
                sender.gaps_s += gap
                gaps[send.phone_number.pk] = gaps.get(send.phone_number.pk, 0.0) + gap
        for number, gap in gaps.items():
            rate_slots_delay(phone_number=self.senders[number].phone_number, gap=timedelta(seconds=gap))

    def record(self) -> None:
        replies, self.replies = self.replies, []
        sents = [send for send in replies if send.reply.error is None]
        if sents:
            _sents_record(sents, worker=self.worker)
            self.result.sent += len(sents)
        for send in replies:
            send.state = "done"
            if send.reply.error is None:
                continue
            outcome = _outcome_apply(
                send.message,
                send.attempt,
                phone_number=send.phone_number,
                worker=self.worker,
                reply=send.reply,
            )
            counter = "released" if outcome == "auth" else _COUNTERS[outcome]
            setattr(self.result, counter, getattr(self.result, counter) + 1)

    def queue_release(self, sender: _Sender, *, due_at: datetime | None, counter: str) -> None:
        while sender.queue:
            released = _release(sender.queue.popleft(), worker=self.worker, due_at=due_at)
            setattr(self.result, counter, getattr(self.result, counter) + released)

    def queues_release(self, *, due_at: datetime | None, counter: str) -> None:
        for sender in self.senders.values():
            self.queue_release(sender, due_at=due_at, counter=counter)

    def abort(self) -> None:
        """After an error stopped the drain: give back what was not sent, and wait for what flies
        (what cannot be recorded stays claimed with its attempt open: the sweeper doubts it)."""
        flying = [send.future for send in self.open if send.state == "flying"]
        if flying:
            futures_wait(flying)
        for send in list(self.open):
            if send.state != "started":
                continue
            try:
                _attempt_cancel(send, worker=self.worker, due_at=None, reason="the drain stopped")
            except Exception:
                logger.exception(
                    "could not give message %s back to the queue",
                    send.message.pk,
                    extra={"message_id": send.message.pk},
                )
        try:
            self.queues_release(due_at=None, counter="released")
        except Exception:
            logger.exception("could not give claimed messages back to the queue")
        if self.replies or not self.events.empty():
            try:
                self.settle()
                self.record()
            except Exception:
                logger.exception("could not record the answers of a stopped drain")


def _group_size(phone_number: PhoneNumber) -> int:
    """The sends a group prepares at once: GROUP_S worth at the sender's rate, at most GROUP_MAX."""
    return min(GROUP_MAX, max(1, math.ceil(phone_number.rate_limit_per_s * GROUP_S)))


def _senders_due(now: datetime) -> list[PhoneNumber]:
    ids = Message.objects.filter(outgoing_due(now)).order_by().values("phone_number_id").distinct()
    return list(PhoneNumber.objects.filter(id__in=ids, paused_at__isnull=True).order_by("id"))


_COUNTERS = {_O.SENT: "sent", _O.RETRY: "retrying", _O.FAILED: "failed", _O.IN_DOUBT: "in_doubt"}


def outgoing_drain(*, batch_size: int | None = None, time_budget_s: float = DRAIN_BUDGET_S) -> DrainResult:
    """Send due queued messages until none is left or time is up (see `_Stream`). A claim that
    comes back full wakes another drain, so idle workers join in."""
    worker = _worker_token()
    WakeUp.objects.filter(name=WAKE_NAME, pending=True).update(pending=False, updated_at=timezone.now())
    result = DrainResult()
    stream = _Stream(worker=worker, result=result, batch_size=batch_size or BATCH_MAX)
    stream.run(deadline=time.monotonic() + time_budget_s, first=True)
    if result.retrying or result.deferred or result.released or result.late:
        _next_due_wake()
    return result


def _next_due_wake() -> None:
    """A drain for when the next retry or deferred slot is due, sooner than the sweeper's next round
    (SQS delays at most 15 minutes; the sweeper covers what is later)."""
    earliest = (
        Message.objects.filter(status=_S.QUEUED, due_at__isnull=False, phone_number__paused_at__isnull=True)
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    if earliest is not None:
        delay_s = (earliest - timezone.now()).total_seconds()
        if delay_s < SQS_DELAY_MAX_S:
            outgoing_drain_enqueue(reason="next due", countdown=max(0.0, delay_s))


@shared_task(name="messaging.outbound_send")
def outbound_send_task() -> dict:
    """Drain the outgoing queue; running it twice, or on two workers at once, sends nothing twice."""
    return outgoing_drain().as_dict()
