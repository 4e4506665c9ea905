"""Celery tasks of campaigns, on the `default` queue: thin, named after the services they call."""

from celery import shared_task
from django.db.models import Q

from campaigns.models import Campaign, Recipient
from campaigns.reports import campaign_report_write
from campaigns.services import REPORT_WAIT_S, campaign_feed, campaigns_tick
from messaging.models import Message

REPORT_WAIT_TRIES = 60


@shared_task(name="campaigns.campaign_feed")
def campaign_feed_task(campaign_id: int, token: str) -> str:
    """One step of a campaign's feeder chain; a duplicate (an old token) does nothing."""
    return campaign_feed(campaign_id=campaign_id, token=token)


@shared_task(name="campaigns.campaigns_tick")
def campaigns_tick_task() -> dict:
    return campaigns_tick()


@shared_task(bind=True, name="campaigns.campaign_report", max_retries=REPORT_WAIT_TRIES)
def campaign_report_task(self, campaign_id: int) -> str:
    """Write the report once the sends in flight have finished (or after waiting about two minutes:
    what is still in flight is reported as such)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return "gone"
    in_flight = Recipient.objects.filter(
        Q(status=Recipient.Status.SENDING) | Q(message__status=Message.Status.SENDING), campaign=campaign
    ).exists()
    if in_flight and self.request.retries < REPORT_WAIT_TRIES:
        raise self.retry(countdown=REPORT_WAIT_S)
    return campaign_report_write(campaign=campaign)
