"""Email and SMS campaigns: each recipient is its own send record, sent at most once.

WhatsApp recipients hand their send to a Message and the outgoing worker; email and SMS have no
such queue, so the recipient row carries the same protocol (messaging/outbound/__init__.py's, in small):

1. Claim. A feeder step takes, in one transaction that sees the campaign running, up to a
   second's worth (the channel's pace, or the campaign's cap) of due pending recipients FOR
   UPDATE SKIP LOCKED, and marks them `sending` with its token in `claimed_by`.
2. Pace. The batch takes its slots from the channel's shared pace (messaging.channels).
3. Attempt. Before each send one UPDATE, committed by itself, checks the claim is still this
   step's and sets `attempt_started_at`; only then does the send leave (email_send, sms_send).
4. Outcome. One UPDATE: sent (the provider's id), pending again with a due time (the provider
   refused, retryably, so nothing was sent), skipped (opted out, no address), failed, or in doubt
   (the request left and no answer came: never resent by itself).
5. Pause and cancel give claimed recipients without an attempt back (pending, or cancelled) in
   their transaction; a step's attempt UPDATE then finds its claim gone and sends nothing. So once
   the pause commits no new send starts, and those in flight finish.
6. Sweep. The tick gives back claims older than CLAIM_STALE_S() of dead workers: without an
   attempt to pending, with one to in doubt.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import get_connection
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from contacts.models import Channel
from contacts.placeholders import contact_values, placeholders_check, placeholders_render
from contacts.reachability import UNREACHABLE_CODES
from core.backoff import Backoff
from core.pacing import pace_clock_now, pace_wait
from messaging.channels import ChannelError, channel_slots_take, email_send, sms_send
from messaging.channels.pacing import channel_rate_per_s

logger = logging.getLogger(__name__)

_R = Recipient.Status
ROUND_S = 1.0
MAX_ATTEMPTS = 5
BACKOFF = Backoff(base_s=10.0, cap_s=600.0)
SLOT_WAIT_MAX_S = 5.0
# Refusals that mean "not reachable on this channel": ours, and AWS's for an SMS opt-out it keeps.
UNREACHABLE = UNREACHABLE_CODES | {"DESTINATION_PHONE_NUMBER_OPTED_OUT"}
CHANNELS = {
    Campaign.Channel.WHATSAPP: Channel.WHATSAPP,
    Campaign.Channel.EMAIL: Channel.EMAIL,
    Campaign.Channel.SMS: Channel.SMS,
}


def CLAIM_STALE_S() -> float:
    """Longer than one send can take, with a margin."""
    timeout = max(settings.SMS_HTTP_TIMEOUT_S, getattr(settings, "EMAIL_TIMEOUT", None) or 30.0)
    return 2 * timeout + 30


def channel_rate(campaign: Campaign) -> float:
    rate = channel_rate_per_s(CHANNELS[campaign.channel])
    return min(rate, campaign.rate_limit_per_s) if campaign.rate_limit_per_s else rate


_RECIPIENT = Recipient._meta.db_table

_CLAIM_SQL = f"""
    UPDATE {_RECIPIENT} SET status = 'sending', claimed_by = %(worker)s, claimed_at = %(now)s,
        updated_at = %(now)s
    WHERE id IN (
        SELECT id FROM {_RECIPIENT}
        WHERE campaign_id = %(campaign)s AND status = 'pending' AND (due_at IS NULL OR due_at <= %(now)s)
        ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    )
    RETURNING id
"""


def recipients_claim(campaign: Campaign, *, worker: str, limit: int) -> list[Recipient] | None:
    """Claimed recipients, committed; None when the campaign is not running."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT status FROM {Campaign._meta.db_table} WHERE id = %s FOR SHARE", [campaign.pk])
        row = cursor.fetchone()
        if row is None or row[0] != Campaign.Status.RUNNING:
            return None
        cursor.execute(_CLAIM_SQL, {"worker": worker, "now": now, "campaign": campaign.pk, "limit": limit})
        ids = [pk for (pk,) in cursor.fetchall()]
    return list(Recipient.objects.filter(id__in=ids).select_related("contact").order_by("id"))


def _release(recipient_ids: list[int], *, worker: str, due_at=None) -> int:
    """Claims without an attempt, given back: nothing was sent for them."""
    return Recipient.objects.filter(
        id__in=recipient_ids, status=_R.SENDING, claimed_by=worker, attempt_started_at__isnull=True
    ).update(status=_R.PENDING, claimed_by="", claimed_at=None, due_at=due_at, updated_at=timezone.now())


def recipient_attempt_start(recipient: Recipient, *, worker: str) -> bool:
    now = timezone.now()
    started = Recipient.objects.filter(pk=recipient.pk, status=_R.SENDING, claimed_by=worker).update(
        attempt_started_at=now, claimed_at=now, attempts=recipient.attempts + 1, updated_at=now
    )
    return bool(started)


def _outcome(recipient: Recipient, *, worker: str, **changes: Any) -> bool:
    changes.setdefault("claimed_by", "")
    changes.setdefault("claimed_at", None)
    changes.setdefault("attempt_started_at", None)
    return bool(
        Recipient.objects.filter(
            pk=recipient.pk, claimed_by=worker, status__in=[_R.SENDING, _R.IN_DOUBT]
        ).update(updated_at=timezone.now(), **changes)
    )


def _send(campaign: Campaign, recipient: Recipient, mail_connection) -> str:
    values = contact_values(recipient.contact)
    reference = f"campaign-{campaign.pk}-recipient-{recipient.pk}"
    if campaign.channel == Campaign.Channel.EMAIL:
        return email_send(
            contact=recipient.contact,
            subject=placeholders_render(campaign.subject, values),
            body=placeholders_render(campaign.body, values),
            reference=reference,
            connection=mail_connection,
        )
    return sms_send(
        contact=recipient.contact, text=placeholders_render(campaign.body, values), reference=reference
    )


def _error_settle(recipient: Recipient, error: ChannelError, *, worker: str) -> str:
    fields = {"error_code": error.code[:64], "error_title": error.title[:255]}
    if error.code in UNREACHABLE:
        _outcome(recipient, worker=worker, status=_R.SKIPPED, **fields)
        return "skipped"
    if error.request_left:
        _outcome(recipient, worker=worker, status=_R.IN_DOUBT, attempt_started_at=timezone.now(), **fields)
        return "in_doubt"
    attempts = recipient.attempts + 1
    if error.retryable and attempts < MAX_ATTEMPTS:
        due_at = timezone.now() + BACKOFF.delay(attempts)
        _outcome(recipient, worker=worker, status=_R.PENDING, due_at=due_at, **fields)
        return "retry"
    _outcome(recipient, worker=worker, status=_R.FAILED, **fields)
    return "failed"


def campaign_channel_send(*, campaign: Campaign) -> dict[str, int] | None:
    """One round of an email or SMS campaign (see the module's header): about a second's worth of
    its pace. None when the campaign is not running."""
    worker = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    limit = max(1, math.ceil(channel_rate(campaign) * ROUND_S))
    claimed = recipients_claim(campaign, worker=worker, limit=limit)
    if claimed is None:
        return None
    counts = {"sent": 0, "failed": 0, "retry": 0, "skipped": 0, "in_doubt": 0, "released": 0}
    if not claimed:
        return counts
    slots = channel_slots_take(
        channel=CHANNELS[campaign.channel], n=len(claimed), rate_per_s=campaign.rate_limit_per_s
    )
    mail_connection = (
        get_connection(fail_silently=False) if campaign.channel == Campaign.Channel.EMAIL else None
    )
    done = 0
    try:
        for recipient, slot in zip(claimed, slots, strict=True):
            if not Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.RUNNING).exists():
                break  # paused or cancelled: the rest are released below (or were, by the pause)
            if (slot - pace_clock_now()).total_seconds() > SLOT_WAIT_MAX_S:
                counts["released"] += _release([recipient.pk], worker=worker, due_at=slot)
                done += 1
                continue
            if not recipient_attempt_start(recipient, worker=worker):
                done += 1
                continue
            pace_wait(slot)
            try:
                provider_id = _send(campaign, recipient, mail_connection)
            except ChannelError as error:
                counts[_error_settle(recipient, error, worker=worker)] += 1
            else:
                _outcome(
                    recipient,
                    worker=worker,
                    status=_R.SENT,
                    provider_message_id=provider_id[:255],
                    sent_at=timezone.now(),
                    error_code="",
                    error_title="",
                )
                counts["sent"] += 1
            done += 1
    finally:
        counts["released"] += _release([r.pk for r in claimed[done:]], worker=worker)
        if mail_connection is not None:
            with contextlib.suppress(OSError):
                mail_connection.close()
    return counts


def channel_claims_sweep() -> dict[str, int]:
    """Claims of dead workers: without an attempt back to pending, with one in doubt."""
    stale = Recipient.objects.filter(
        status=_R.SENDING, claimed_at__lt=timezone.now() - timedelta(seconds=CLAIM_STALE_S())
    )
    now = timezone.now()
    requeued = stale.filter(attempt_started_at__isnull=True).update(
        status=_R.PENDING, claimed_by="", claimed_at=None, updated_at=now
    )
    doubted = stale.filter(attempt_started_at__isnull=False).update(
        status=_R.IN_DOUBT,
        error_code="worker_lost",
        error_title="The worker died during the send.",
        updated_at=now,
    )
    if doubted:
        logger.warning("campaign recipients in doubt (their worker died mid-send): %s", doubted)
    return {"requeued": requeued, "in_doubt": doubted}


def channel_claims_release(campaign: Campaign, *, status: str) -> int:
    """In the caller's (pause's, cancel's) transaction: claims without an attempt given up."""
    return Recipient.objects.filter(
        campaign=campaign, status=_R.SENDING, attempt_started_at__isnull=True
    ).update(status=status, claimed_by="", claimed_at=None, updated_at=timezone.now())


_WINDOW_SQL = f"""
    SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FROM (
        SELECT status FROM {_RECIPIENT}
        WHERE campaign_id = %(campaign)s AND status IN ('sent', 'failed')
        ORDER BY updated_at DESC LIMIT %(window)s
    ) latest
"""


def channel_failures_window(campaign: Campaign, *, window: int) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_SQL, {"campaign": campaign.pk, "window": window})
        return cursor.fetchone()


def channel_content_check(campaign: Campaign) -> None:
    if campaign.channel == Campaign.Channel.EMAIL:
        if not campaign.subject.strip():
            raise ValidationError({"subject": "An email campaign needs a subject."})
        placeholders_check(campaign.subject, "subject")
    if not campaign.body.strip():
        raise ValidationError({"body": f"An {campaign.get_channel_display()} campaign needs a body."})
    placeholders_check(campaign.body, "body")
    if campaign.channel == Campaign.Channel.SMS and len(campaign.body) > 1600:
        raise ValidationError({"body": f"At most 1,600 characters in an SMS (got {len(campaign.body):,})."})
    if campaign.rate_limit_per_s is not None and campaign.rate_limit_per_s < 1:
        raise ValidationError({"rate_limit_per_s": "At least 1 per second."})
