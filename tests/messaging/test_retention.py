"""Retention: beat's sweeps delete webhook bodies, statuses for unknown messages, typed webhook
events and Celery's results past their settings, in bounded batches, and keep what an operator
may still need (failed and pending bodies, and a body whose webhook events are kept)."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult

from config.celery import app
from core.tasks import task_results_sweep_task
from messaging.models import InboundEvent, PendingStatus, WebhookEvent
from messaging.tasks import retention_sweep_task
from tests.factories import InboundEventFactory

pytestmark = pytest.mark.django_db
State = InboundEvent.State


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def event(state: str, *, received_days: float, processed_days: float | None = None) -> InboundEvent:
    created = InboundEventFactory(state=state)
    InboundEvent.objects.filter(pk=created.pk).update(
        received_at=days_ago(received_days),
        processed_at=days_ago(processed_days) if processed_days is not None else None,
    )
    return created


def webhook_event(inbound: InboundEvent, *, days: float) -> WebhookEvent:
    created = WebhookEvent.objects.create(inbound_event=inbound, position=0, field="account_update")
    WebhookEvent.objects.filter(pk=created.pk).update(created_at=days_ago(days))
    return created


def pending_status(wamid: str, *, days: float) -> PendingStatus:
    created = PendingStatus.objects.create(wamid=wamid, status="sent", timestamp=timezone.now())
    PendingStatus.objects.filter(pk=created.pk).update(created_at=days_ago(days))
    return created


def test_beat_runs_both_sweeps_on_the_default_queue():
    schedule = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"messaging.retention_sweep", "core.task_results_sweep"} <= schedule
    assert django_settings.CELERY_RESULT_EXPIRES is None  # Celery's one-statement cleanup is off
    for name in ("messaging.retention_sweep", "core.task_results_sweep"):
        assert name in app.tasks
        assert app.amqp.router.route({}, name)["queue"].name == "default"


def test_old_bodies_statuses_and_webhook_events_go_and_what_an_operator_needs_stays(settings):
    settings.RETENTION_BATCH_SIZE = 2  # several batches per kind
    old_processed = [event(State.PROCESSED, received_days=40, processed_days=35) for _ in range(5)]
    old_rejected = event(State.REJECTED, received_days=40)
    kept = {
        "failed": event(State.FAILED, received_days=400),
        "pending": event(State.PENDING, received_days=400),
        "recent": event(State.PROCESSED, received_days=5, processed_days=5),
        "reprocessed lately": event(State.PROCESSED, received_days=60, processed_days=2),
    }
    with_young_webhook_event = event(State.PROCESSED, received_days=45, processed_days=45)
    young = webhook_event(with_young_webhook_event, days=45)
    with_old_webhook_event = event(State.PROCESSED, received_days=100, processed_days=100)
    old = webhook_event(with_old_webhook_event, days=100)
    old_statuses = [pending_status(f"wamid.old{i}", days=8) for i in range(3)]
    young_status = pending_status("wamid.young", days=1)

    result = retention_sweep_task.apply().get()

    assert result == {"webhook_events": 1, "pending_statuses": 3, "inbound_events": 7}
    left = set(InboundEvent.objects.values_list("pk", flat=True))
    assert left == {e.pk for e in kept.values()} | {with_young_webhook_event.pk}
    assert not left & {e.pk for e in [*old_processed, old_rejected, with_old_webhook_event]}
    assert list(WebhookEvent.objects.values_list("pk", flat=True)) == [young.pk]
    assert not WebhookEvent.objects.filter(pk=old.pk).exists()
    assert list(PendingStatus.objects.values_list("pk", flat=True)) == [young_status.pk]
    assert not PendingStatus.objects.filter(pk__in=[s.pk for s in old_statuses]).exists()

    # Once its webhook event is past its retention, the body goes too.
    WebhookEvent.objects.filter(pk=young.pk).update(created_at=days_ago(91))
    assert retention_sweep_task.apply().get() == {
        "webhook_events": 1,
        "pending_statuses": 0,
        "inbound_events": 1,
    }


def test_each_statement_deletes_at_most_a_batch(settings):
    settings.RETENTION_BATCH_SIZE = 3
    for index in range(7):
        pending_status(f"wamid.{index}", days=30)

    with CaptureQueriesContext(connection) as queries:
        result = retention_sweep_task.apply().get()

    assert result["pending_statuses"] == 7
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "messaging_pendingstatus"')]
    assert len(deletes) == 3  # 3 + 3 + 1
    assert all("LIMIT 3" in sql for sql in deletes)


def test_task_results_older_than_their_retention_are_deleted(settings):
    settings.RETENTION_BATCH_SIZE = 2
    for index in range(5):
        TaskResult.objects.create(task_id=f"old-{index}", status="SUCCESS")
    TaskResult.objects.create(task_id="young", status="SUCCESS")
    TaskResult.objects.exclude(task_id="young").update(date_done=days_ago(8))

    assert task_results_sweep_task.apply().get() == {"task_results": 5, "group_results": 0}
    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["young"]
