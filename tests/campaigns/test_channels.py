"""Email campaigns through a real SMTP server on loopback, SMS campaigns through the sandbox's AWS End
User Messaging SMS: each recipient once across pause and resume, opt-outs honoured, failures kept."""

import pytest
from django.utils import timezone

from campaigns.channels import channel_claims_sweep
from campaigns.models import Campaign, Recipient
from campaigns.selectors import campaign_failures, campaign_progress
from campaigns.services import campaign_create, campaign_pause, campaign_resume, campaign_start
from contacts.models import Contact
from tests.campaigns.conftest import feed_step
from tests.factories import ContactFactory

pytestmark = pytest.mark.usefixtures("transactional_db", "no_worker")
R = Recipient.Status


@pytest.fixture(autouse=True)
def fast_channels(settings):
    settings.EMAIL_RATE_PER_S = 50.0
    settings.SMS_RATE_PER_S = 50.0


def email_campaign(**fields) -> Campaign:
    values = {
        "name": "Newsletter",
        "channel": Campaign.Channel.EMAIL,
        "subject": "News for {{name|you}}",
        "body": "Hello {{name|there}}, your code is {{attributes.code}}.",
        "audience_tags": ["news"],
    }
    return campaign_create(actor=None, source="api", **(values | fields))


def run_to_end(campaign, *, steps: int = 50) -> None:
    for _ in range(steps):
        if feed_step(campaign) in ("completed", "stale", "stopped", "auto-paused"):
            return


def test_an_email_campaign_sends_each_recipient_once_through_smtp_with_unsubscribe(smtp_server):
    people = [ContactFactory(tags=["news"], attributes={"code": f"E{i}"}) for i in range(5)]
    ContactFactory(tags=["news"], email_opted_out_at=timezone.now())
    ContactFactory(tags=["news"], email="")
    refused = ContactFactory(tags=["news"], attributes={"code": "X"})
    smtp_server.refuse[refused.email] = "550 5.1.1 No such user"
    campaign = campaign_start(campaign=email_campaign(), actor=None, source="api")
    assert campaign.total_recipients == 6

    run_to_end(campaign)

    campaign.refresh_from_db()
    assert campaign.status == "completed"
    received = sorted(message["To"] for message in smtp_server.messages)
    assert received == sorted(person.email for person in people)
    first = next(m for m in smtp_server.messages if m["To"] == people[0].email)
    assert first["Subject"] == f"News for {people[0].name}"
    assert "your code is E0." in first.get_body().get_content()
    unsubscribe = first["List-Unsubscribe"].strip()
    assert unsubscribe.startswith("<http") and "/unsubscribe/" in unsubscribe
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    recipient = Recipient.objects.get(campaign=campaign, contact=people[0])
    assert (recipient.status, recipient.provider_message_id) == (R.SENT, first["Message-ID"])
    progress = campaign_progress(campaign=campaign)
    assert (progress["sent"], progress["failed"], progress["total"]) == (5, 1, 6)
    assert campaign_failures(campaign=campaign) == [
        {"code": "smtp_550", "title": "The mail server refused the message (550).", "count": 1}
    ]


def test_an_email_campaign_paused_and_resumed_sends_each_recipient_exactly_once(smtp_server, settings):
    settings.EMAIL_RATE_PER_S = 4.0  # a round takes four
    people = [ContactFactory(tags=["news"], attributes={"code": "c"}) for i in range(10)]
    campaign = campaign_start(campaign=email_campaign(), actor=None, source="api")
    feed_step(campaign)
    assert len(smtp_server.messages) == 4

    campaign_pause(campaign=campaign, actor=None, source="api")
    assert feed_step(campaign) == "stale"
    assert len(smtp_server.messages) == 4
    campaign_resume(campaign=campaign, actor=None, source="api")
    run_to_end(campaign)

    assert sorted(m["To"] for m in smtp_server.messages) == sorted(p.email for p in people)
    assert Campaign.objects.get(pk=campaign.pk).status == "completed"


def test_a_pause_gives_back_claims_no_send_started_for(smtp_server):
    from campaigns.channels import recipients_claim

    [ContactFactory(tags=["news"], attributes={"code": "c"}) for i in range(3)]
    campaign = campaign_start(campaign=email_campaign(), actor=None, source="api")
    claimed = recipients_claim(campaign, worker="w1", limit=3)
    assert len(claimed) == 3

    campaign_pause(campaign=campaign, actor=None, source="api")

    assert Recipient.objects.filter(campaign=campaign, status=R.PENDING).count() == 3
    from campaigns.channels import recipient_attempt_start

    assert not recipient_attempt_start(claimed[0], worker="w1")  # the claim is gone: nothing is sent


def test_a_dead_worker_s_claims_are_given_back_or_held_in_doubt(smtp_server, monkeypatch):
    from campaigns import channels
    from campaigns.channels import recipient_attempt_start, recipients_claim

    [ContactFactory(tags=["news"], attributes={"code": "c"}) for i in range(2)]
    campaign = campaign_start(campaign=email_campaign(), actor=None, source="api")
    first, second = recipients_claim(campaign, worker="w1", limit=2)
    assert recipient_attempt_start(first, worker="w1")  # then the worker died

    monkeypatch.setattr(channels, "CLAIM_STALE_S", lambda: -1)
    assert channel_claims_sweep() == {"requeued": 1, "in_doubt": 1}
    assert Recipient.objects.get(pk=first.pk).status == R.IN_DOUBT
    assert Recipient.objects.get(pk=second.pk).status == R.PENDING


def test_an_sms_campaign_sends_through_the_sandbox_once_each_and_honours_stop(sms_sandbox):
    people = [ContactFactory(tags=["sms"], attributes={"code": f"S{i}"}) for i in range(4)]
    stopped = ContactFactory(tags=["sms"], attributes={"code": "Z"})
    ContactFactory(tags=["sms"], sms_opted_out_at=timezone.now())
    sms_sandbox.config(opted_out=[stopped.phone])  # replied STOP to AWS since
    campaign = campaign_create(
        actor=None,
        source="api",
        name="Flash sale",
        channel=Campaign.Channel.SMS,
        body="{{name|Hi}}: 20% off with {{attributes.code}}",
        audience_tags=["sms"],
    )
    campaign = campaign_start(campaign=campaign, actor=None, source="api")
    assert campaign.total_recipients == 5

    run_to_end(campaign)

    stats = sms_sandbox.stats()
    assert stats["by_destination"] == {person.phone: 1 for person in people}
    sent = next(m for m in stats["messages"] if m["to"] == people[0].phone)
    assert sent["body"] == f"{people[0].name}: 20% off with S0"
    recipient = Recipient.objects.get(campaign=campaign, contact=stopped)
    assert (recipient.status, recipient.error_code) == (R.SKIPPED, "DESTINATION_PHONE_NUMBER_OPTED_OUT")
    assert Contact.objects.get(pk=stopped.pk).sms_opted_out_at is not None
    assert Campaign.objects.get(pk=campaign.pk).status == "completed"
    progress = campaign_progress(campaign=campaign)
    assert (progress["sent"], progress["skipped"]) == (4, 1)


def test_sms_failures_past_the_threshold_pause_the_campaign(sms_sandbox):
    people = [ContactFactory(tags=["sms"]) for i in range(25)]
    sms_sandbox.config(failing={person.phone: "ValidationException" for person in people})
    campaign = campaign_create(
        actor=None,
        source="api",
        name="Broken",
        channel=Campaign.Channel.SMS,
        body="Hi",
        audience_tags=["sms"],
    )
    campaign = campaign_start(campaign=campaign, actor=None, source="api")

    run_to_end(campaign)

    campaign.refresh_from_db()
    assert campaign.status == "paused"
    assert "ValidationException" in campaign.status_reason
