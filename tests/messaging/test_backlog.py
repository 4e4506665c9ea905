"""The backlog: shown to administrators on /healthz?verbose and published to CloudWatch (moto's
server over HTTP) by beat's task; /livez answers without touching anything."""

from datetime import timedelta
from uuid import uuid4

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.aws import aws_client, sqs_client
from core.queues import QUEUES, queues_ensure, sqs_queue_name
from messaging.backlog import DEAD_LETTERS_METRIC, METRICS, QUEUE_DIMENSION
from messaging.models import InboundEvent, Message
from messaging.tasks import backlog_publish_task
from tests.factories import InboundEventFactory, MessageFactory, UserFactory


@pytest.fixture
def backlog_rows(db, broker):
    """Two pending events (the older 400 s old), one processed; queued messages 90 s overdue, due
    now and due in an hour; one in doubt for 600 s; two dead letters of `archival`."""
    now = timezone.now()
    old, recent, done = InboundEventFactory.create_batch(3)
    InboundEvent.objects.filter(pk=old.pk).update(received_at=now - timedelta(seconds=400))
    InboundEvent.objects.filter(pk=recent.pk).update(received_at=now - timedelta(seconds=5))
    InboundEvent.objects.filter(pk=done.pk).update(
        state=InboundEvent.State.PROCESSED, received_at=now - timedelta(days=1)
    )
    outbound = {"direction": Message.Direction.OUTBOUND, "status": Message.Status.QUEUED}
    MessageFactory(**outbound, due_at=now - timedelta(seconds=90))
    MessageFactory(**outbound, due_at=None)
    MessageFactory(**outbound, due_at=now + timedelta(hours=1))
    MessageFactory(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.IN_DOUBT,
        claimed_at=now - timedelta(seconds=600),
    )
    MessageFactory(direction=Message.Direction.OUTBOUND, status=Message.Status.SENT)
    call_command("storage_setup")
    queues_ensure()
    dlq_url = sqs_client().get_queue_url(QueueName=sqs_queue_name(QUEUES["archival"].dlq_name))["QueueUrl"]
    for body in ("one", "two"):
        sqs_client().send_message(QueueUrl=dlq_url, MessageBody=body)


def _assert_figures(figures: dict) -> None:
    assert figures["inbound_pending"] == 2
    assert 400 <= figures["inbound_oldest_s"] < 460
    assert figures["outbound_queued"] == 3
    assert 90 <= figures["outbound_late_s"] < 150
    assert figures["outbound_in_doubt"] == 1
    assert 600 <= figures["outbound_in_doubt_oldest_s"] < 660
    assert figures["dead_letters"] == {name: 2 if name == "archival" else 0 for name in QUEUES}


def test_healthz_verbose_shows_the_backlog_to_staff_users(client, backlog_rows):
    client.force_login(UserFactory(is_staff=True))

    response = client.get("/healthz?verbose")

    assert response.status_code == 200
    _assert_figures(response.json()["backlog"])


def test_healthz_verbose_shows_the_backlog_to_a_caller_with_the_token(client, backlog_rows, settings):
    settings.HEALTHZ_TOKEN = "a-long-random-token"

    shown = client.get("/healthz?verbose", headers={"Authorization": "Bearer a-long-random-token"})
    refused = client.get("/healthz?verbose", headers={"Authorization": "Bearer a-guess"})

    _assert_figures(shown.json()["backlog"])
    assert "backlog" not in refused.json()


def test_healthz_verbose_hides_the_backlog_from_anyone_else(client, backlog_rows):
    client.force_login(UserFactory(is_staff=False))

    assert "backlog" not in client.get("/healthz?verbose").json()
    client.logout()
    assert "backlog" not in client.get("/healthz?verbose").json()


def _published(namespace: str) -> dict[tuple[str, str | None], float]:
    """What CloudWatch holds under `namespace`: (metric, queue dimension) -> the latest value."""
    cloudwatch = aws_client("cloudwatch")
    values = {}
    for metric in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]:
        statistics = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=metric["MetricName"],
            Dimensions=metric.get("Dimensions", []),
            StartTime=timezone.now() - timedelta(minutes=10),
            EndTime=timezone.now() + timedelta(minutes=1),
            Period=60,
            Statistics=["Maximum"],
        )
        queue = next((d["Value"] for d in metric.get("Dimensions", []) if d["Name"] == QUEUE_DIMENSION), None)
        values[metric["MetricName"], queue] = max(point["Maximum"] for point in statistics["Datapoints"])
    return values


def test_beat_task_publishes_the_backlog_to_cloudwatch(backlog_rows, settings):
    settings.METRICS_NAMESPACE = namespace = f"Wharf/test-{uuid4().hex[:8]}"

    backlog_publish_task.apply().get()

    published = _published(namespace)
    assert {name for name, _queue in published} == {*METRICS, DEAD_LETTERS_METRIC}
    assert published["InboundEventsPending", None] == 2
    assert published["InboundEventsOldestAge", None] >= 400
    assert published["MessagesQueued", None] == 3
    assert published["MessagesQueuedLateness", None] >= 90
    assert published["MessagesInDoubt", None] == 1
    assert published[DEAD_LETTERS_METRIC, None] == 2
    assert published[DEAD_LETTERS_METRIC, "archival"] == 2
    assert published[DEAD_LETTERS_METRIC, "incoming"] == 0


def test_beat_task_publishes_nothing_without_a_namespace(backlog_rows, settings):
    settings.METRICS_NAMESPACE = ""

    assert backlog_publish_task.apply().get() is None


def test_dead_letters_are_left_out_when_sqs_does_not_answer(backlog_rows, settings, client):
    settings.AWS_CLIENT_TIMEOUT_S = 0.5
    client.force_login(UserFactory(is_staff=True))
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there

    figures = client.get("/healthz?verbose").json()["backlog"]

    assert figures["dead_letters"] is None
    assert figures["inbound_pending"] == 2


def test_livez_answers_without_the_database_the_host_check_or_https(client, settings):
    """No `db` fixture: a query would fail the test."""
    settings.SECURE_SSL_REDIRECT = True
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"

    response = client.get("/livez", HTTP_HOST="10.0.3.7:8000")  # a task's address, as the ALB asks

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
