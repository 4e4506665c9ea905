"""Campaign services on PostgreSQL against the sandbox Graph API, the outgoing drain run in-process:
launch, feeding, pause, resume, cancel, auto-pause, scheduled start; each recipient once."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from campaigns.models import Campaign, Recipient
from campaigns.selectors import campaign_failures, campaign_progress
from campaigns.services import (
    campaign_audience_count,
    campaign_cancel,
    campaign_feed,
    campaign_pause,
    campaign_resume,
    campaign_start,
    campaigns_tick,
)
from messaging.inbound.events import inbound_events_drain
from messaging.models import Message
from messaging.outbound.drain import outgoing_drain
from tests.campaigns.conftest import contacts, feed_step, whatsapp_campaign
from tests.factories import ContactFactory
from tests.messaging.test_sandbox_send import Receiver
from tests.messaging.webhook_helpers import webhook_post

pytestmark = pytest.mark.usefixtures("transactional_db", "no_worker")
C = Campaign.Status
R = Recipient.Status


def published(broker) -> list[tuple[str, list]]:
    """The campaign tasks published so far, with their arguments (received: each is seen once)."""
    return [(task.task, task.args) for task in broker.published("default")]


def run_to_end(campaign, *, steps: int = 200) -> None:
    for _ in range(steps):
        outcome = feed_step(campaign)
        outgoing_drain()
        if outcome in ("completed", "stale", "stopped"):
            return


def test_the_audience_excludes_opted_out_contacts_and_those_without_a_number(sender, template):
    contacts(3)
    ContactFactory(tags=["spring"], opted_out_at=timezone.now())
    ContactFactory(tags=["spring"], phone=None, wa_id="")
    ContactFactory(tags=["winter"])
    campaign = whatsapp_campaign(sender, template)
    assert campaign_audience_count(campaign=campaign) == 3


def test_launch_writes_one_recipient_per_contact_and_a_second_start_is_refused(sender, template):
    people = contacts(5)
    campaign = whatsapp_campaign(sender, template, audience_tags=["spring"])
    campaign.audience_contacts.set([people[0].pk])  # in both the tag and the list: once

    campaign = campaign_start(campaign=campaign, actor=None, source="api")

    assert campaign.status == C.RUNNING
    assert campaign.total_recipients == 5
    assert set(Recipient.objects.filter(campaign=campaign).values_list("status", flat=True)) == {R.PENDING}
    with pytest.raises(ValidationError, match="running campaign cannot be started"):
        campaign_start(campaign=campaign, actor=None, source="api")


def test_a_campaign_sends_each_recipient_once_with_its_parameters_and_completes(
    sandbox, sender, template, no_worker
):
    contacts(12)
    nameless = ContactFactory(tags=["spring"], name="", attributes={"code": "Z"})
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")

    run_to_end(campaign)

    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED
    assert ("campaigns.campaign_report", [campaign.pk]) in published(no_worker)
    progress = campaign_progress(campaign=campaign)
    assert (progress["total"], progress["sent"], progress["failed"], progress["pending"]) == (13, 13, 0, 0)
    stats = sandbox.stats()
    assert (stats["accepted"], stats["duplicates"]) == (13, 0)
    message = Recipient.objects.get(campaign=campaign, contact=nameless).message
    body = message.payload["template"]["components"]
    assert body == [
        {"type": "header", "parameters": [{"type": "text", "text": "friend"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "friend"}, {"type": "text", "text": "Z"}]},
    ]


def test_pause_withdraws_unclaimed_messages_and_resume_sends_exactly_the_rest(sandbox, sender, template):
    contacts(40)
    sender.rate_limit_per_s = 10  # a step queues 20 messages
    sender.save()
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    feed_step(campaign)
    assert Message.objects.filter(status=Message.Status.QUEUED).count() == 20

    campaign = campaign_pause(campaign=campaign, actor=None, source="api")

    assert campaign.status == C.PAUSED
    assert Message.objects.count() == 0
    assert Recipient.objects.filter(campaign=campaign, status=R.PENDING).count() == 40
    assert campaign_feed(campaign_id=campaign.pk, token=campaign.feed_token) == "stale"
    outgoing_drain()
    assert sandbox.stats()["accepted"] == 0

    campaign = campaign_resume(campaign=campaign, actor=None, source="api")
    run_to_end(campaign)

    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED
    stats = sandbox.stats()
    assert (stats["accepted"], stats["duplicates"]) == (40, 0)
    assert len(stats["sends_by_callback"]) == 40


def test_pause_lets_a_request_under_way_finish_and_takes_back_a_drain_s_other_claims(
    sandbox, sender, template
):
    contacts(10)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    feed_step(campaign)
    from messaging.outbound.drain import outgoing_claim, outgoing_message_send, send_attempt_start

    claimed = outgoing_claim(phone_number=sender, batch_size=4, worker="w1")
    assert send_attempt_start(claimed[0], worker="w1") is not None  # its request is on its way

    campaign_pause(campaign=campaign, actor=None, source="api")

    assert list(Message.objects.values_list("pk", "status")) == [(claimed[0].pk, Message.Status.SENDING)]
    assert Recipient.objects.filter(campaign=campaign, status=R.QUEUED).count() == 1
    assert Recipient.objects.filter(campaign=campaign, status=R.PENDING).count() == 9
    # The drain goes on with its claim: the withdrawn ones are skipped, nothing is sent for them.
    assert outgoing_message_send(claimed[1], phone_number=sender, worker="w1") == ""
    assert sandbox.stats()["accepted"] == 0


def test_a_feeder_skips_the_recipients_another_feeder_holds_and_queues_each_once(sender, template):
    import psycopg
    from django.conf import settings

    from campaigns.services import campaign_chunk_feed, campaign_template_batch
    from tests.platform.conftest import database_url

    contacts(30)
    sender.rate_limit_per_s = 1000
    sender.save()
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    campaign.refresh_from_db()
    batch = campaign_template_batch(campaign)

    with psycopg.connect(database_url(settings.DATABASES["default"])) as other:  # another feeder, mid-chunk
        held = other.execute(
            "SELECT id FROM campaigns_recipient WHERE campaign_id = %s AND status = 'pending'"
            " ORDER BY id LIMIT 20 FOR UPDATE",
            [campaign.pk],
        ).fetchall()
        assert len(held) == 20
        assert campaign_chunk_feed(campaign=campaign, batch=batch, limit=30) == 10
        other.rollback()
    assert campaign_chunk_feed(campaign=campaign, batch=batch, limit=30) == 20
    assert campaign_chunk_feed(campaign=campaign, batch=batch, limit=30) == 0

    assert Message.objects.count() == 30
    assert Recipient.objects.filter(campaign=campaign, message__isnull=False).count() == 30
    assert Recipient.objects.filter(campaign=campaign, status=R.QUEUED).count() == 30


def test_a_duplicate_feeder_task_does_nothing(sender, template):
    contacts(3)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    campaign.refresh_from_db()
    token = campaign.feed_token
    assert campaign_feed(campaign_id=campaign.pk, token=token).startswith("fed")
    assert campaign_feed(campaign_id=campaign.pk, token=token) == "stale"  # the step scheduled a new token


def test_cancel_in_the_middle_cancels_the_rest_and_keeps_what_was_sent(sandbox, sender, template, no_worker):
    contacts(30)
    sender.rate_limit_per_s = 5  # a step queues 10
    sender.save()
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    feed_step(campaign)
    outgoing_drain()
    feed_step(campaign)

    campaign = campaign_cancel(campaign=campaign, actor=None, source="api")

    assert campaign.status == C.CANCELLED
    assert ("campaigns.campaign_report", [campaign.pk]) in published(no_worker)
    progress = campaign_progress(campaign=campaign)
    assert (progress["sent"], progress["cancelled"], progress["pending"], progress["queued"]) == (
        10,
        20,
        0,
        0,
    )
    outgoing_drain()
    assert sandbox.stats()["accepted"] == 10
    with pytest.raises(ValidationError):
        campaign_resume(campaign=campaign, actor=None, source="api")


def test_failures_past_the_threshold_pause_the_campaign_with_the_reason(sandbox, sender, template):
    contacts(60)
    sandbox.fault(status=400, code=131026, message="Message undeliverable", times=100)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")

    run_to_end(campaign)

    campaign.refresh_from_db()
    assert campaign.status == C.PAUSED
    assert "failed" in campaign.status_reason and "131026" in campaign.status_reason
    (failure,) = campaign_failures(campaign=campaign)
    assert failure["code"] == "131026" and failure["count"] >= 20


def test_a_send_meta_fails_after_accepting_it_counts_failed_with_its_reason(sandbox, sender, template):
    people = contacts(3)
    receiver = Receiver()
    sandbox.config(
        statuses=True,
        webhook_url=receiver.url,
        app_secret=settings.WHATSAPP_APP_SECRET,
        status_delays_ms={"sent": 0, "delivered": None},
        fail_after_accept={people[0].phone: 131053},  # as when Meta cannot fetch a header's medium
    )
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    run_to_end(campaign)
    assert campaign_progress(campaign=campaign)["sent"] == 3

    receiver.wait(3)
    for _, raw in receiver.posts:  # Meta's status webhooks, as the sandbox posted them, reach Wharf
        assert webhook_post(Client(), raw).status_code == 200
    inbound_events_drain()

    progress = campaign_progress(campaign=campaign)
    assert (progress["sent"], progress["failed"]) == (2, 1)
    assert campaign_failures(campaign=campaign) == [
        {"code": "131053", "title": "Media upload error", "count": 1}
    ]
    failed = Recipient.objects.get(campaign=campaign, contact=people[0]).message
    assert failed.status == Message.Status.FAILED and failed.sent_at is not None
    receiver.server.shutdown()


def test_a_scheduled_campaign_starts_when_beat_finds_it_due(sender, template, no_worker):
    contacts(2)
    campaign = whatsapp_campaign(sender, template, scheduled_at=timezone.now() + timedelta(hours=1))
    campaign = campaign_start(campaign=campaign, actor=None, source="api")
    assert campaign.status == C.SCHEDULED
    assert campaigns_tick()["started"] == 0

    Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=timezone.now() - timedelta(seconds=1))
    assert campaigns_tick()["started"] == 1

    campaign.refresh_from_db()
    assert (campaign.status, campaign.total_recipients) == (C.RUNNING, 2)
    assert ("campaigns.campaign_feed", [campaign.pk, campaign.feed_token]) in published(no_worker)


def test_the_tick_restarts_a_feeder_chain_that_broke(sender, template, no_worker):
    contacts(2)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    old = Campaign.objects.get(pk=campaign.pk).feed_token
    Campaign.objects.filter(pk=campaign.pk).update(feed_at=timezone.now() - timedelta(minutes=5))
    no_worker.purge("default")

    assert campaigns_tick()["restarted"] == 1

    new = Campaign.objects.get(pk=campaign.pk).feed_token
    assert new != old
    assert published(no_worker) == [("campaigns.campaign_feed", [campaign.pk, new])]  # its task carries it


def test_an_empty_parameter_fails_that_recipient_only(sandbox, sender, template):
    ContactFactory(tags=["spring"], attributes={})
    contacts(2)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    run_to_end(campaign)
    failures = campaign_failures(campaign=campaign)
    assert failures == [
        {"code": "parameter", "title": "Parameter 2 of the body is empty for this contact.", "count": 1}
    ]
    assert sandbox.stats()["accepted"] == 2
