"""Retention of what inbound leaves behind: webhook bodies, statuses that never met their message,
typed webhook events. Each kind is deleted once older than its setting, in bounded batches
(core/retention.py), keeping what an operator may still need or what is still to do:

- InboundEvent: processed ones once processed (and received) RETENTION_INBOUND_EVENTS_DAYS ago;
  rejected ones (not JSON) as long after they were received. Pending ones are work still to do and
  failed ones wait for an operator (InboundEvent has no acknowledged state: a failed event stays
  until it is reprocessed, after which it ages as a processed one). An event whose typed
  WebhookEvents are still kept stays with them, so a webhook event's body can always be read.
- PendingStatus: RETENTION_PENDING_STATUSES_DAYS after it arrived. Meta posts a message's statuses
  within moments of its send, and those of an in-doubt message are matched at each outbound sweep
  (every 30 s), so a status still waiting after days belongs to no message Wharf holds.
- WebhookEvent: RETENTION_WEBHOOK_EVENTS_DAYS after it was stored.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from core.retention import SWEEP_BUDGET_S, retention_cutoff, rows_delete_batched
from messaging.models import InboundEvent, PendingStatus, WebhookEvent

logger = logging.getLogger(__name__)

_State = InboundEvent.State


def inbound_rows_sweep(*, budget_s: float = SWEEP_BUDGET_S) -> dict[str, int]:
    """Delete webhook events, statuses for unknown messages and inbound events past their retention."""
    deadline = time.monotonic() + budget_s
    batch = settings.RETENTION_BATCH_SIZE
    events_cutoff = retention_cutoff(settings.RETENTION_INBOUND_EVENTS_DAYS)
    result = {
        "webhook_events": rows_delete_batched(
            WebhookEvent.objects.filter(
                created_at__lt=retention_cutoff(settings.RETENTION_WEBHOOK_EVENTS_DAYS)
            ),
            batch_size=batch,
            deadline=deadline,
        ),
        "pending_statuses": rows_delete_batched(
            PendingStatus.objects.filter(
                created_at__lt=retention_cutoff(settings.RETENTION_PENDING_STATUSES_DAYS)
            ),
            batch_size=batch,
            deadline=deadline,
        ),
    }
    old_events = InboundEvent.objects.filter(
        Q(state=_State.PROCESSED, processed_at__lt=events_cutoff) | Q(state=_State.REJECTED),
        state__in=[_State.PROCESSED, _State.REJECTED],
        received_at__lt=events_cutoff,
    ).filter(~Exists(WebhookEvent.objects.filter(inbound_event=OuterRef("pk"))))
    result["inbound_events"] = rows_delete_batched(old_events, batch_size=batch, deadline=deadline)
    if any(result.values()):
        logger.info("retention: deleted %s", result)
    return result
