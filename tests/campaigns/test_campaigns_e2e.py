"""End to end with real worker processes on moto's SQS and the sandbox Graph API: a campaign paused,
resumed, and its worker killed with SIGKILL mid-send, sends every recipient exactly once (counted
by the sandbox, by our message ids); what the dead worker may have sent is in doubt, and the
campaign says so ("completed with N in doubt") until an operator decides."""

import os
import signal
from datetime import timedelta
from uuid import uuid4

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_pause, campaign_resume, campaign_start, campaigns_tick
from core.queues import queues_ensure
from messaging.inbound import events as inbound_events
from messaging.models import Message, SendAttempt
from messaging.outbound import sweep as outbound_sweep
from messaging.outbound.send import message_abandon, message_resend
from messaging.outbound.sweep import outgoing_sweep
from tests.campaigns.conftest import contacts, whatsapp_campaign
from tests.messaging.webhook_helpers import celery_publishing_to
from tests.platform.conftest import wait_for, worker_running

pytestmark = pytest.mark.e2e
S = Message.Status


@pytest.fixture
def queue_prefix(transactional_db, settings, monkeypatch):
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    queues_ensure(visibility_timeout_override=30)
    with celery_publishing_to(queue_prefix=prefix):
        yield prefix


def accepted(sandbox) -> int:
    return sandbox.stats()["accepted"]


def test_pause_resume_and_a_killed_worker_send_every_recipient_exactly_once(
    sandbox, sender, template, queue_prefix, tmp_path, monkeypatch, api_client
):
    total = 120
    contacts(total)
    sender.rate_limit_per_s = 40
    sender.save()
    sandbox.config(statuses=False, latency_ms=40)
    campaign = whatsapp_campaign(sender, template)
    env = {"WHATSAPP_RECIPIENT_SPACING_S": "0"}
    queues = ["default", "outgoing"]

    with worker_running(queues=queues, queue_prefix=queue_prefix, log_path=tmp_path / "w1.log", env=env) as w:
        campaign = campaign_start(campaign=campaign, actor=None, source="api")
        wait_for(lambda: accepted(sandbox) >= 20, timeout_s=60, interval_s=0.05, worker=w, what="sends")

        campaign = campaign_pause(campaign=campaign, actor=None, source="api")
        in_flight = Recipient.objects.filter(campaign=campaign, message__isnull=False).count()
        wait_for(
            lambda: not Message.objects.filter(status__in=[S.SENDING, S.QUEUED]).exists(),
            timeout_s=30,
            worker=w,
            what="sends in flight to finish",
        )
        after_pause = accepted(sandbox)
        assert after_pause == in_flight == Message.objects.filter(status=S.SENT).count()
        assert Recipient.objects.filter(campaign=campaign, status="pending").count() == total - in_flight

        campaign = campaign_resume(campaign=campaign, actor=None, source="api")
        wait_for(
            lambda: accepted(sandbox) >= after_pause + 30,
            timeout_s=60,
            interval_s=0.05,
            worker=w,
            what="sends",
        )
        os.killpg(w.process.pid, signal.SIGKILL)
        w.process.wait()
    killed_at = accepted(sandbox)
    assert killed_at < total

    # The sweeper settles the dead drain's claims; the tick restarts the feeder chain if it broke.
    monkeypatch.setattr(outbound_sweep, "CLAIM_STALE_S", lambda: 0)
    # Its requests in flight, or cleared to leave: in doubt. Its other prepared sends never left.
    open_attempts = SendAttempt.objects.filter(outcome="")
    cleared = open_attempts.filter(cleared_at__isnull=False).count()
    unsent = open_attempts.filter(cleared_at__isnull=True).count()
    swept = outgoing_sweep()
    assert swept["in_doubt"] == cleared and swept["requeued"] >= unsent
    doubted = list(Message.objects.filter(status=S.IN_DOUBT))
    Campaign.objects.filter(pk=campaign.pk).update(feed_at=timezone.now() - timedelta(minutes=5))
    reader = api_client("campaigns.view_campaign")
    with worker_running(queues=queues, queue_prefix=queue_prefix, log_path=tmp_path / "w2.log", env=env) as w:
        campaigns_tick()  # as beat does: restarts the feeder if its next step died with the worker
        wait_for(
            lambda: Campaign.objects.get(pk=campaign.pk).status == "completed",
            timeout_s=90,
            worker=w,
            what="the campaign completed",
        )
        shown = reader.get(f"/api/v1/campaigns/{campaign.pk}/").json()
        assert shown["progress"]["in_doubt"] == len(doubted)
        assert shown["status_display"] == (
            f"completed with {len(doubted)} in doubt" if doubted else "completed"
        )
        for message in doubted:  # an operator decides, from the sandbox
            reached = sandbox.stats()["sends_by_callback"].get(str(message.pk))
            (message_abandon if reached else message_resend)(message=message, actor=None)
        wait_for(
            lambda: not Message.objects.filter(status__in=[S.QUEUED, S.SENDING, S.IN_DOUBT]).exists(),
            timeout_s=60,
            worker=w,
            what="the resent ones sent",
        )
    shown = reader.get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert (shown["status_display"], shown["progress"]["in_doubt"]) == ("completed", 0)

    stats = sandbox.stats()
    assert (stats["accepted"], stats["duplicates"]) == (total, 0)
    message_ids = set(Recipient.objects.filter(campaign=campaign).values_list("message_id", flat=True))
    assert set(stats["sends_by_callback"]) == {str(pk) for pk in message_ids}
    assert set(stats["sends_by_callback"].values()) == {1}
    assert Recipient.objects.filter(campaign=campaign).count() == total
