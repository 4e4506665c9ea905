"""Celery tasks of messaging: thin, named after the services they call, routed by name
("messaging.inbound_*" and "messaging.media_*" to the `incoming` queue, "messaging.outbound_*" to
`outgoing`)."""

from celery import shared_task

from messaging.inbound import inbound_events_drain, inbound_events_retry, inbound_events_sweep
from messaging.media import media_fetch_task
from messaging.outbound import outgoing_drain, outgoing_sweep
from messaging.ratelimit import rate_paces_sweep

__all__ = [
    "inbound_events_process_task",
    "inbound_events_sweep_task",
    "media_fetch_task",
    "outbound_send_task",
    "outbound_sweep_task",
    "rate_paces_sweep_task",
]


@shared_task(name="messaging.inbound_events_process")
def inbound_events_process_task(event_ids: list[int] | None = None) -> dict:
    """Drain pending events; with `event_ids`, retry those failed events and raise while they fail,
    so that the message ends in `incoming-dlq` (see messaging/inbound.py)."""
    if event_ids:
        return inbound_events_retry(event_ids=event_ids).as_dict()
    return inbound_events_drain().as_dict()


@shared_task(name="messaging.inbound_events_sweep")
def inbound_events_sweep_task() -> bool:
    return inbound_events_sweep()


@shared_task(name="messaging.outbound_send")
def outbound_send_task() -> dict:
    """Drain the outgoing queue; running it twice, or on two workers at once, sends nothing twice
    (see messaging/outbound.py)."""
    return outgoing_drain().as_dict()


@shared_task(name="messaging.outbound_sweep")
def outbound_sweep_task() -> dict:
    return outgoing_sweep()


@shared_task(name="messaging.ratelimit_sweep")
def rate_paces_sweep_task() -> int:
    return rate_paces_sweep()
