"""The outgoing sweep (step 5 of messaging/outbound/__init__.py): claims of dead workers settled.

A stale claim whose open attempts were never cleared is queued again (its attempts closed unsent);
one with a cleared open attempt is in doubt. Both take the message rows with SKIP LOCKED: a drain
that is only slow clears or records under the same row locks, refreshing `claimed_at`, so its
claim either is no longer stale or is gone before its request could leave.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from messaging.models import Message, SendAttempt
from messaging.outbound.drain import outgoing_drain_enqueue, outgoing_due
from messaging.statuses import outgoing_doubts_resolve

logger = logging.getLogger(__name__)

_S = Message.Status
_O = SendAttempt.Outcome
NEVER_LEFT = "Not sent: its worker stopped before the request was cleared to leave"


def CLAIM_STALE_S() -> float:
    """A claim older than this lost its worker: longer than one request can take, with a margin."""
    return 2 * settings.WHATSAPP_HTTP_TIMEOUT_S + 30


def outgoing_sweep() -> dict[str, int]:
    """Settle the claims of dead workers (see the module's header) and wake a drain for due messages."""
    now = timezone.now()
    stale = Message.objects.filter(status=_S.SENDING, claimed_at__lt=now - timedelta(seconds=CLAIM_STALE_S()))
    open_attempt = SendAttempt.objects.filter(message=OuterRef("pk"), outcome="")
    # An open attempt that was never cleared: its request never left (step 4).
    left = open_attempt.filter(cleared_at__isnull=False)
    with transaction.atomic():
        unsent = list(
            stale.filter(~Exists(left)).select_for_update(skip_locked=True).values_list("id", flat=True)
        )
        if unsent:
            SendAttempt.objects.filter(message_id__in=unsent, outcome="").update(
                outcome=_O.RETRY, finished_at=now, error_title=NEVER_LEFT
            )
            Message.objects.filter(id__in=unsent).update(
                status=_S.QUEUED, claimed_at=None, claimed_by="", updated_at=now
            )
        doubted = list(
            stale.filter(Exists(left)).select_for_update(skip_locked=True).values_list("id", flat=True)
        )
        if doubted:
            Message.objects.filter(id__in=doubted).update(status=_S.IN_DOUBT, updated_at=now)
            SendAttempt.objects.filter(message_id__in=doubted, outcome="", cleared_at__isnull=False).update(
                outcome=_O.IN_DOUBT
            )
            SendAttempt.objects.filter(message_id__in=doubted, outcome="").update(
                outcome=_O.RETRY, finished_at=now, error_title=NEVER_LEFT
            )
    if doubted:
        logger.warning("outgoing messages in doubt (their worker died mid-request): %s", doubted)
    resolved = outgoing_doubts_resolve()
    woken = False
    if Message.objects.filter(outgoing_due(now), phone_number__paused_at__isnull=True).exists():
        woken = outgoing_drain_enqueue(reason="sweep")
    return {"requeued": len(unsent), "in_doubt": len(doubted), "resolved": resolved, "woken": int(woken)}
