"""End to end with real worker processes on moto's SQS: a message sent through the API leaves through
the `outgoing` worker to the sandbox Graph API, whose signed status webhooks come back to this
test's live server and are applied by the `incoming` worker; and a worker killed with SIGKILL in
the middle of a batch sends no message twice and loses none."""

import hashlib
import io
import os
import signal
from uuid import uuid4

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from core.aws import storage_ensure_bucket
from core.queues import queues_ensure
from core.storage import media_storage
from messaging.inbound import events as inbound_events
from messaging.media import media_outgoing_upload
from messaging.models import Message, SendAttempt
from messaging.outbound import drain as outbound_drain
from messaging.outbound import sweep as outbound_sweep
from messaging.outbound.drain import outgoing_drain
from messaging.outbound.send import message_send
from messaging.outbound.sweep import outgoing_sweep
from tests.broker import Broker
from tests.factories import ContactFactory, PhoneNumberFactory
from tests.messaging.test_outbound_send import Sandbox
from tests.messaging.webhook_helpers import celery_publishing_to
from tests.platform.conftest import wait_for, worker_running
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

S = Message.Status


@pytest.fixture
def sandbox(settings):
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    yield sandbox
    sandbox.post("reset")


@pytest.fixture
def queue_prefix(transactional_db, settings, monkeypatch):
    """Queues of this test's own, where the app publishes (the API's and the webhook's wakes)."""
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    queues_ensure(visibility_timeout_override=30)
    with celery_publishing_to(queue_prefix=prefix):
        yield prefix


def test_an_api_send_is_sent_by_a_real_worker_and_turns_delivered_then_read(
    api_client, live_server, sandbox, queue_prefix, tmp_path, monkeypatch
):
    # The sandbox keeps its HTTP connection to the live server alive, and with it the handler
    # thread's database connection, which would outlive the test database: close it per request.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    sender = PhoneNumberFactory(phone_number_id="106540352242922")
    contact = ContactFactory(last_inbound_at=timezone.now())
    sandbox.config(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        app_secret=settings.WHATSAPP_APP_SECRET,
        status_delays_ms={"sent": 100, "delivered": 300, "read": 600},
    )
    client = api_client("messaging.add_message")
    with worker_running(
        queues=["outgoing", "incoming"], queue_prefix=queue_prefix, log_path=tmp_path / "worker.log"
    ) as worker:
        answer = client.post(
            "/api/v1/messages/",
            {"contact": contact.pk, "type": "text", "text": {"body": "Your order shipped"}},
            format="json",
            headers={"Idempotency-Key": "order-1"},
        )
        assert answer.status_code == 201, answer.json()
        message = Message.objects.get(pk=answer.json()["id"])

        read = wait_for(
            lambda: Message.objects.filter(pk=message.pk, status=S.READ).first(),
            timeout_s=60,
            worker=worker,
            what="the message read",
        )
        again = client.post(
            "/api/v1/messages/",
            {"contact": contact.pk, "type": "text", "text": {"body": "Your order shipped"}},
            format="json",
            headers={"Idempotency-Key": "order-1"},
        )
    assert (again.status_code, again.json()["id"]) == (200, message.pk)
    assert read.wamid.startswith("wamid.")
    assert read.phone_number == sender
    # sent_at is when the API answered; Meta's status times are whole seconds.
    assert read.sent_at.replace(microsecond=0) <= read.delivered_at <= read.read_at
    assert "Task messaging.outbound_send" in worker.log()
    stats = sandbox.stats()
    assert (stats["accepted"], stats["duplicates"]) == (1, 0)
    assert stats["sends_by_callback"] == {str(message.pk): 1}


def test_an_uploaded_image_is_fetched_by_meta_from_its_presigned_link_and_turns_read(
    api_client, live_server, sandbox, queue_prefix, tmp_path, monkeypatch
):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    storage_ensure_bucket()
    PhoneNumberFactory(phone_number_id="106540352242922")
    contact = ContactFactory(last_inbound_at=timezone.now())
    sandbox.config(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        app_secret=settings.WHATSAPP_APP_SECRET,
        status_delays_ms={"sent": 100, "delivered": 300, "read": 600},
    )
    client = api_client("messaging.add_message")
    content = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    picture = SimpleUploadedFile("shop front.png", content, content_type="image/png")
    uploaded = client.post("/api/v1/media/", {"file": picture}, format="multipart")
    assert uploaded.status_code == 201, uploaded.json()
    with worker_running(
        queues=["outgoing", "incoming"], queue_prefix=queue_prefix, log_path=tmp_path / "worker.log"
    ) as worker:
        answer = client.post(
            "/api/v1/messages/",
            {
                "contact": contact.pk,
                "type": "image",
                "image": {"s3_key": uploaded.json()["s3_key"], "caption": "Our new shop"},
            },
            format="json",
        )
        assert answer.status_code == 201, answer.json()
        read = wait_for(
            lambda: Message.objects.filter(pk=answer.json()["id"], status=S.READ).first(),
            timeout_s=60,
            worker=worker,
            what="the image read",
        )
    stats = sandbox.stats()
    assert (stats["accepted"], stats["duplicates"]) == (1, 0)
    sent = stats["by_wamid"][read.wamid]
    assert (sent["type"], sent["biz_opaque_callback_data"]) == ("image", str(read.pk))
    assert sent["media"] == {
        "mime_type": "image/png",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    assert read.delivered_at is not None and read.text == "Our new shop"


def test_a_medium_gone_from_the_bucket_is_sent_then_failed_by_meta_s_late_media_error(
    live_server, sandbox, queue_prefix, tmp_path, monkeypatch
):
    """Meta accepts a linked medium and fetches it while delivering: the message is sent, then a
    failed status says why, and the message ends failed with Meta's code and reason."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    storage_ensure_bucket()
    sender = PhoneNumberFactory(phone_number_id="106540352242922")
    sandbox.config(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        app_secret=settings.WHATSAPP_APP_SECRET,
        status_delays_ms={"sent": 300},
    )
    key = media_outgoing_upload(
        file=io.BytesIO(b"%PDF-1.4\n"), filename="invoice.pdf", content_type="application/pdf"
    )
    message = message_send(
        phone_number=sender,
        contact=ContactFactory(last_inbound_at=timezone.now()),
        kind="document",
        content={"s3_key": key},
        actor=None,
        source="api",
    )
    media_storage().delete(key)
    with worker_running(
        queues=["outgoing", "incoming"], queue_prefix=queue_prefix, log_path=tmp_path / "worker.log"
    ) as worker:
        outbound_drain.outgoing_wake()
        failed = wait_for(
            lambda: Message.objects.filter(pk=message.pk, status=S.FAILED).first(),
            timeout_s=60,
            worker=worker,
            what="the message failed",
        )
    assert failed.wamid.startswith("wamid.") and failed.sent_at is not None  # Meta had accepted it
    assert (failed.error_code, failed.error_title) == (131053, "Media upload error")
    assert "403" in failed.error_details or "404" in failed.error_details
    assert failed.failed_at is not None
    assert sandbox.stats()["accepted"] == 1


def test_a_worker_killed_mid_batch_sends_nothing_twice_and_loses_nothing(
    sandbox, queue_prefix, tmp_path, monkeypatch
):
    # A batch takes seconds (30 at 10/s): time to kill it mid-way, however busy the machine.
    sender = PhoneNumberFactory(phone_number_id="106540352242922", rate_limit_per_s=10)
    sandbox.config(statuses=False, latency_ms=150)
    count = 30
    messages = [
        message_send(
            phone_number=sender,
            contact=ContactFactory(last_inbound_at=timezone.now()),
            kind="text",
            content={"body": f"hello {i}"},
            actor=None,
            source="api",
        )
        for i in range(count)
    ]
    ids = [m.pk for m in messages]
    with worker_running(
        queues=["outgoing"], queue_prefix=queue_prefix, log_path=tmp_path / "worker.log"
    ) as worker:
        outbound_drain.outgoing_wake()  # the sends above were woken too; this one is coalesced into theirs
        wait_for(
            lambda: sandbox.stats()["accepted"] >= 5,
            timeout_s=60,
            interval_s=0.05,
            worker=worker,
            what="sends",
        )
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()

    accepted = {int(pk) for pk in sandbox.stats()["sends_by_callback"]}
    sent_before = set(Message.objects.filter(pk__in=ids, status=S.SENT).values_list("pk", flat=True))
    claimed = set(Message.objects.filter(pk__in=ids, status=S.SENDING).values_list("pk", flat=True))
    assert sent_before and len(sent_before) < count
    assert claimed, "the kill left a batch claimed"
    # Answers are recorded a group at a time: Meta accepted more than the worker wrote down, but
    # only requests cleared to leave; the rest of the groups it had prepared never left.
    open_attempts = SendAttempt.objects.filter(message_id__in=claimed, outcome="")
    cleared = set(open_attempts.filter(cleared_at__isnull=False).values_list("message_id", flat=True))
    assert accepted - sent_before <= cleared

    # The sweeper, once the claims are old enough; then a drain sends what was requeued.
    monkeypatch.setattr(outbound_sweep, "CLAIM_STALE_S", lambda: 0)
    broker = Broker(queue_prefix)
    broker.purge("outgoing")  # the wakes of the sends above
    swept = outgoing_sweep()
    assert swept["requeued"] + swept["in_doubt"] == len(claimed)
    assert swept["in_doubt"] == len(cleared)  # those whose request may have left: none requeued
    if Message.objects.filter(pk__in=ids, status=S.QUEUED).exists():  # due now: a drain for them
        assert swept["woken"] == 1 and broker.tasks("outgoing") == ["messaging.outbound_send"]
    sandbox.config(latency_ms=0)

    def drained() -> bool:
        outgoing_drain()  # a message the pace defers (the killed worker took its slots) is due again soon
        return not Message.objects.filter(pk__in=ids, status=S.QUEUED).exists()

    wait_until(drained, timeout=30, interval=0.2, message="the requeued messages to be sent")

    statuses = dict(Message.objects.filter(pk__in=ids).values_list("pk", "status"))
    in_doubt = [pk for pk, status in statuses.items() if status == S.IN_DOUBT]
    assert all(status in (S.SENT, S.IN_DOUBT) for status in statuses.values()), statuses  # none lost
    stats = sandbox.stats()
    assert stats["duplicates"] == 0  # none twice
    by_callback = stats["sends_by_callback"]
    for pk, status in statuses.items():
        if status == S.SENT:
            assert by_callback.get(str(pk)) == 1
    assert set(by_callback) <= {str(pk) for pk in ids}
    for pk in in_doubt:  # an operator decides; its attempt says a request was under way
        assert SendAttempt.objects.filter(message_id=pk, outcome="in_doubt").exists()
