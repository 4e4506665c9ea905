"""Celery tasks of campaigns, on the `default` queue. The feeder's and the report's tasks live beside
their services, which enqueue them; they are imported here so that workers register them."""

from celery import shared_task

from campaigns.reports import campaign_report_task, campaign_reports_refresh_task
from campaigns.services import campaign_feed_task, campaigns_tick

__all__ = [
    "campaign_feed_task",
    "campaign_report_task",
    "campaign_reports_refresh_task",
    "campaigns_tick_task",
]


@shared_task(name="campaigns.campaigns_tick")
def campaigns_tick_task() -> dict:
    return campaigns_tick()
