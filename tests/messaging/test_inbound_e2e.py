"""End to end: a signed webhook through the Django stack, a real Celery worker process on the
`incoming` queue over moto's SQS, and the message in the database, once however often it arrives."""

import json
from pathlib import Path
from uuid import uuid4

import pytest

from core.queues import queues_ensure
from messaging.inbound import events as inbound_events
from messaging.models import InboundEvent, Message
from tests.messaging.webhook_helpers import celery_publishing_to, webhook_post
from tests.platform.conftest import wait_for, worker_running

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parent / "fixtures" / "text.json"


@pytest.fixture
def incoming_worker(transactional_db, settings, tmp_path, monkeypatch):
    """A worker on `incoming` only, on queues of this test's own, where the webhook's wake publishes."""
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    queues_ensure(visibility_timeout_override=10)
    with (
        celery_publishing_to(queue_prefix=prefix),
        worker_running(queues=["incoming"], queue_prefix=prefix, log_path=tmp_path / "worker.log") as worker,
    ):
        yield worker


def test_a_signed_webhook_becomes_a_message_on_a_real_worker_once(client, incoming_worker):
    payload = json.loads(FIXTURE.read_text())
    sent = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    body = json.dumps(payload).encode()

    assert [webhook_post(client, body).status_code for _ in range(3)] == [200, 200, 200]

    message = wait_for(
        lambda: Message.objects.filter(wamid=sent["id"]).first(),
        timeout_s=60,
        worker=incoming_worker,
        what="the message",
    )
    assert (message.direction, message.type, message.text) == ("inbound", "text", sent["text"]["body"])
    assert message.contact.wa_id == sent["from"]
    event = InboundEvent.objects.get()
    assert (event.state, event.fields) == (InboundEvent.State.PROCESSED, ["messages"])
    assert "Task messaging.inbound_events_process" in incoming_worker.log()

    assert webhook_post(client, body).status_code == 200  # Meta's redelivery, after processing
    assert Message.objects.filter(wamid=sent["id"]).count() == 1
    assert InboundEvent.objects.count() == 1
