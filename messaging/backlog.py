"""Wharf's backlog: the work waiting and how long it has waited, for the alarms and the workers'
autoscaling of the infrastructure template (deploy/wharf.yaml), and for administrators on
`/healthz?verbose`.

PostgreSQL is the queue of record, so the figures are read from its rows: inbound events pending,
outbound messages queued (their lateness counted from their due time, so that a message scheduled
for later is not late) and in doubt; SQS adds what its dead-letter queues hold. `backlog_publish`
puts them in CloudWatch under METRICS_NAMESPACE, from beat every METRICS_INTERVAL_S; with no
namespace nothing is published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.aws import metric_data_put
from core.queues import dead_letter_depths
from messaging.models import InboundEvent, Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backlog:
    inbound_pending: int
    inbound_oldest_s: float  # age of the oldest pending event; 0 when none
    outbound_queued: int  # due or not
    outbound_late_s: float  # how long the most overdue queued message has been due; 0 when none
    outbound_in_doubt: int
    outbound_in_doubt_oldest_s: float  # since the claim that left the oldest one in doubt
    dead_letters: dict[str, int] | None  # per queue; None when SQS could not be read


# CloudWatch metric -> (Backlog field, unit). The template's alarms and scaling policies name these.
METRICS = {
    "InboundEventsPending": ("inbound_pending", "Count"),
    "InboundEventsOldestAge": ("inbound_oldest_s", "Seconds"),
    "MessagesQueued": ("outbound_queued", "Count"),
    "MessagesQueuedLateness": ("outbound_late_s", "Seconds"),
    "MessagesInDoubt": ("outbound_in_doubt", "Count"),
    "MessagesInDoubtOldestAge": ("outbound_in_doubt_oldest_s", "Seconds"),
}
DEAD_LETTERS_METRIC = "DeadLetters"  # the total, and per queue with the dimension QUEUE_DIMENSION
QUEUE_DIMENSION = "Queue"


def _age(now: datetime, since: datetime | None) -> float:
    return round(max(0.0, (now - since).total_seconds()), 3) if since else 0.0


def backlog() -> Backlog:
    now = timezone.now()
    inbound = InboundEvent.objects.filter(state=InboundEvent.State.PENDING).aggregate(
        count=Count("id"), oldest=Min("received_at")
    )
    due = Coalesce("due_at", "created_at")
    queued = Message.objects.filter(status=Message.Status.QUEUED).aggregate(
        count=Count("id"), oldest=Min(due, filter=Q(due_at__lte=now) | Q(due_at__isnull=True))
    )
    in_doubt = Message.objects.filter(status=Message.Status.IN_DOUBT).aggregate(
        count=Count("id"), oldest=Min(Coalesce("claimed_at", "updated_at"))
    )
    try:
        dead_letters = dead_letter_depths()
    except Exception as error:
        logger.warning("could not read the dead-letter queues: %s: %s", type(error).__name__, error)
        dead_letters = None
    return Backlog(
        inbound_pending=inbound["count"],
        inbound_oldest_s=_age(now, inbound["oldest"]),
        outbound_queued=queued["count"],
        outbound_late_s=_age(now, queued["oldest"]),
        outbound_in_doubt=in_doubt["count"],
        outbound_in_doubt_oldest_s=_age(now, in_doubt["oldest"]),
        dead_letters=dead_letters,
    )


def backlog_metrics(figures: Backlog) -> list[dict]:
    """PutMetricData's entries for `figures`; no dead-letter entries when SQS could not be read, so
    that an alarm sees missing data rather than a false zero."""
    now = timezone.now()
    metrics = [
        {"MetricName": name, "Value": float(getattr(figures, field)), "Unit": unit, "Timestamp": now}
        for name, (field, unit) in METRICS.items()
    ]
    if figures.dead_letters is not None:
        metrics.append(
            {
                "MetricName": DEAD_LETTERS_METRIC,
                "Value": float(sum(figures.dead_letters.values())),
                "Unit": "Count",
                "Timestamp": now,
            }
        )
        metrics += [
            {
                "MetricName": DEAD_LETTERS_METRIC,
                "Dimensions": [{"Name": QUEUE_DIMENSION, "Value": queue}],
                "Value": float(depth),
                "Unit": "Count",
                "Timestamp": now,
            }
            for queue, depth in figures.dead_letters.items()
        ]
    return metrics


def backlog_publish() -> Backlog | None:
    """Publish the backlog to CloudWatch under METRICS_NAMESPACE; None when there is none."""
    namespace = settings.METRICS_NAMESPACE
    if not namespace:
        return None
    figures = backlog()
    metric_data_put(namespace=namespace, metrics=backlog_metrics(figures))
    return figures
