"""The inbound protocol (messaging/inbound/events.py): coalesced wake-ups, claims with SKIP LOCKED, a crash
mid-batch, retries and failures, dead letters, the sweeper, reprocessing, and SQS going away."""

import threading
from datetime import timedelta
from uuid import uuid4

import pytest
from django.db import connection, transaction
from django.utils import timezone

from config.celery import app as celery_app
from core.aws import sqs_client
from core.models import AuditLog
from core.queues import dlq_list, queues_ensure
from devstack.stack import MotoServer, free_port
from messaging.inbound import apply as inbound_apply
from messaging.inbound import events as inbound_events
from messaging.inbound.apply import ApplyResult
from messaging.inbound.events import (
    WAKE_STALE_S,
    InboundEventsFailed,
    inbound_event_record,
    inbound_events_claim,
    inbound_events_drain,
    inbound_events_reprocess,
    inbound_events_sweep,
    inbound_events_wake,
)
from messaging.models import InboundEvent, Message, PhoneNumber, WakeUp
from messaging.tasks import inbound_events_process_task
from tests.messaging.webhook_helpers import (
    celery_publishing_to,
    queue_depth,
    queued_tasks,
    text_body,
    webhook_post,
)
from tests.platform.conftest import receive_all

State = InboundEvent.State


class FakeApply:
    """Stands in for the parser where a test is about the protocol, not about what is parsed."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.failing: dict[int, BaseException] = {}
        self.media: dict[int, list[int]] = {}
        self.lock = threading.Lock()

    def __call__(self, *, event: InboundEvent) -> ApplyResult:
        with self.lock:
            self.calls.append(event.pk)
        if (error := self.failing.get(event.pk)) is not None:
            PhoneNumber.objects.create(phone_number_id=f"written-before-failing-{event.pk}")
            raise error
        return ApplyResult(
            fields=["messages"], unknown_fields=True, media_message_ids=self.media.get(event.pk, [])
        )


@pytest.fixture
def fake_apply(monkeypatch) -> FakeApply:
    fake = FakeApply()
    monkeypatch.setattr(inbound_events, "inbound_payload_apply", fake)
    return fake


@pytest.fixture
def incoming(settings, monkeypatch):
    """The `incoming` queue of this test's own, on the session's SQS server, where the app publishes."""
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    states = {state.name: state for state in queues_ensure()}
    with celery_publishing_to(queue_prefix=prefix):
        yield states["incoming"]


def record(count: int, *, tag: str = "") -> list[InboundEvent]:
    tag = tag or uuid4().hex[:8]
    return [
        inbound_event_record(body=text_body(wamid=f"wamid.{tag}.{index}", text=f"message {index}"))[0]
        for index in range(count)
    ]


def states(events: list[InboundEvent]) -> list[str]:
    by_id = dict(
        InboundEvent.objects.filter(id__in=[event.pk for event in events]).values_list("id", "state")
    )
    return [by_id[event.pk] for event in events]


# -- drain ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_drain_processes_due_events_in_batches_oldest_first(fake_apply, incoming):
    events = record(5)
    later = record(1)[0]
    InboundEvent.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    rejected, _ = inbound_event_record(body=b"not json")

    result = inbound_events_drain(batch_size=2)

    assert fake_apply.calls == [event.pk for event in events]
    assert (result.processed, result.batches, result.failed) == (5, 3, [])
    processed = InboundEvent.objects.filter(state=State.PROCESSED)
    assert sorted(processed.values_list("id", flat=True)) == [event.pk for event in events]
    assert all(event.fields == ["messages"] and event.unknown_fields for event in processed)
    assert all(event.processed_at is not None for event in processed)
    assert states([later, rejected]) == [State.PENDING, State.REJECTED]


@pytest.mark.django_db
def test_a_failing_event_is_rolled_back_alone_retried_with_backoff_and_failed_after_k_attempts(
    fake_apply, incoming, settings, django_capture_on_commit_callbacks
):
    settings.INBOUND_MAX_ATTEMPTS = 3
    good, bad, other = record(3)
    fake_apply.failing[bad.pk] = ValueError("no such field: 'entry'")

    before = timezone.now()
    result = inbound_events_drain()

    assert (result.processed, result.retrying, result.failed) == (2, 1, [])
    assert states([good, bad, other]) == [State.PROCESSED, State.PENDING, State.PROCESSED]
    bad.refresh_from_db()
    assert bad.attempts == 1
    assert bad.last_error == "ValueError: no such field: 'entry'"
    assert before + timedelta(seconds=5) <= bad.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    assert not PhoneNumber.objects.exists()  # what it wrote before raising was rolled back

    assert inbound_events_drain().processed == 0  # not due yet
    for attempt in (2, 3):
        InboundEvent.objects.filter(pk=bad.pk).update(next_attempt_at=timezone.now())
        with django_capture_on_commit_callbacks() as callbacks:
            result = inbound_events_drain()
        bad.refresh_from_db()
        assert bad.attempts == attempt

    assert result.failed == [bad.pk]
    assert bad.state == State.FAILED and bad.next_attempt_at is None
    assert bad.last_error == "ValueError: no such field: 'entry'"
    assert [callback.keywords for callback in callbacks] == [
        {"reason": "retry of failed events", "event_ids": [bad.pk]}
    ]
    assert inbound_events_drain().processed == 0


@pytest.mark.django_db
def test_media_of_processed_events_is_fetched_on_tasks_enqueued_after_the_commit(
    fake_apply, incoming, django_capture_on_commit_callbacks
):
    first, second = record(2)
    fake_apply.media[first.pk] = [41, 42]
    fake_apply.media[second.pk] = [43]

    with django_capture_on_commit_callbacks() as callbacks:
        inbound_events_drain()
        assert queue_depth(incoming) == 0

    for callback in callbacks:
        callback()
    assert sorted(queued_tasks(incoming)) == [("messaging.media_fetch", [id_], {}) for id_ in (41, 42, 43)]


@pytest.mark.django_db
def test_a_drain_out_of_time_wakes_a_successor(fake_apply, incoming):
    record(5)

    result = inbound_events_drain(batch_size=2, time_budget_s=0)

    assert (result.processed, result.rewoken) == (2, True)
    assert queue_depth(incoming) == 1


def test_a_second_drain_skips_the_events_a_first_one_holds(transactional_db, fake_apply, incoming):
    events = record(6)
    held: list[int] = []
    claimed, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                held.extend(event.pk for event in inbound_events_claim(batch_size=3))
                claimed.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert claimed.wait(timeout=10)
        result = inbound_events_drain(batch_size=3)
    finally:
        release.set()
        holder.join(timeout=10)

    ids = [event.pk for event in events]
    assert held == ids[:3]
    assert (fake_apply.calls, result.processed) == (ids[3:], 3)
    assert states(events) == [State.PENDING] * 3 + [State.PROCESSED] * 3
    assert inbound_events_drain().processed == 3  # released, they are claimed now
    assert states(events) == [State.PROCESSED] * 6


def test_two_drains_at_once_process_every_event_once_without_retries(transactional_db, incoming):
    from contacts.models import Contact

    bodies = [
        text_body(wamid=f"wamid.parallel.{index}", text=f"message {index}", wa_id=f"44770090{index % 4:04d}")
        for index in range(40)
    ]
    events = [inbound_event_record(body=body)[0] for body in bodies]
    results = []
    barrier = threading.Barrier(2)

    def drain() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(inbound_events_drain(batch_size=5))
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    InboundEvent.objects.filter(state=State.PENDING).update(next_attempt_at=timezone.now())  # time passes
    later = inbound_events_drain()

    assert all(result.processed for result in results)  # both took a share
    assert sum(result.processed for result in results) + later.processed == 40
    assert states(events) == [State.PROCESSED] * 40
    assert not InboundEvent.objects.filter(attempts__gt=0).exists()  # a lost lock defers, it does not fail
    assert Message.objects.filter(wamid__startswith="wamid.parallel.").count() == 40
    assert Contact.objects.filter(wa_id__startswith="44770090").count() == 4


def test_a_crash_in_the_middle_of_a_batch_leaves_it_pending_and_the_rerun_makes_no_duplicates(
    transactional_db, incoming, monkeypatch
):
    events = record(5)
    applied: list[int] = []
    real_apply = inbound_apply.inbound_payload_apply

    def crashing(*, event: InboundEvent) -> ApplyResult:
        applied.append(event.pk)
        if len(applied) == 3:
            raise SystemExit("the worker is killed")
        return real_apply(event=event)

    monkeypatch.setattr(inbound_events, "inbound_payload_apply", crashing)
    with pytest.raises(SystemExit):
        inbound_events_drain()

    assert len(applied) == 3
    assert states(events) == [State.PENDING] * 5
    assert InboundEvent.objects.filter(attempts=0).count() == 5
    assert not Message.objects.exists()  # the two applied before the crash committed nothing

    monkeypatch.setattr(inbound_events, "inbound_payload_apply", real_apply)
    assert inbound_events_drain().processed == 5
    assert states(events) == [State.PROCESSED] * 5
    wamids = sorted(Message.objects.values_list("wamid", flat=True))
    assert len(wamids) == 5 and len(set(wamids)) == 5

    # at-least-once all the way down: applying the same events again changes nothing
    InboundEvent.objects.update(state=State.PENDING)
    assert inbound_events_drain().processed == 5
    assert sorted(Message.objects.values_list("wamid", flat=True)) == wamids


# -- dead letters and reprocessing ----------------------------------------------------------------


@pytest.mark.django_db
def test_events_failed_for_good_get_a_retry_task_that_raises_until_they_are_fixed(
    fake_apply, incoming, settings, django_capture_on_commit_callbacks
):
    settings.INBOUND_MAX_ATTEMPTS = 1
    bad, good = record(2)
    fake_apply.failing[bad.pk] = KeyError("metadata")

    with django_capture_on_commit_callbacks(execute=True):
        assert inbound_events_drain().failed == [bad.pk]

    # the retry task is on `incoming`; moved to the DLQ as the redrive policy would, it names its events
    (message,) = receive_all(incoming.url)
    sqs_client().send_message(QueueUrl=incoming.dlq_url, MessageBody=message["Body"])
    sqs_client().delete_message(QueueUrl=incoming.url, ReceiptHandle=message["ReceiptHandle"])
    (letter,) = dlq_list(queue="incoming", limit=10)
    assert (letter.task, letter.args, letter.kwargs) == (
        "messaging.inbound_events_process",
        [],
        {"event_ids": [bad.pk]},
    )

    with django_capture_on_commit_callbacks(execute=True):
        outcome = inbound_events_process_task.apply(kwargs=letter.kwargs)
    assert outcome.failed() and isinstance(outcome.result, InboundEventsFailed)
    bad.refresh_from_db()
    assert (bad.state, bad.attempts) == (State.FAILED, 2)
    assert queue_depth(incoming) == 0  # a retry's failure enqueues no further retry

    del fake_apply.failing[bad.pk]  # the bug is fixed; the operator replays the dead letter
    assert inbound_events_process_task.apply(kwargs=letter.kwargs).successful()
    bad.refresh_from_db()
    assert bad.state == State.PROCESSED
    assert inbound_events_process_task.apply(kwargs=letter.kwargs).successful()  # twice is harmless
    assert fake_apply.calls.count(good.pk) == 1


@pytest.mark.django_db
def test_reprocess_makes_failed_events_pending_with_fresh_attempts_audited_and_woken(
    fake_apply, incoming, settings, admin_user, django_capture_on_commit_callbacks
):
    settings.INBOUND_MAX_ATTEMPTS = 1
    bad, good = record(2)
    rejected, _ = inbound_event_record(body=b"<not json/>")
    fake_apply.failing[bad.pk] = RuntimeError("parser bug")
    inbound_events_drain()
    WakeUp.objects.update_or_create(name="incoming", defaults={"pending": False})

    with django_capture_on_commit_callbacks(execute=True):
        count = inbound_events_reprocess(event_ids=[bad.pk, good.pk, rejected.pk], actor=admin_user)

    assert count == 1
    bad.refresh_from_db()
    assert (bad.state, bad.attempts, bad.next_attempt_at) == (State.PENDING, 0, None)
    assert states([good, rejected]) == [State.PROCESSED, State.REJECTED]
    audit = AuditLog.objects.get(action="inbound_events_reprocess")
    assert (audit.actor, audit.source, audit.changes["ids"]) == (admin_user, "admin", [bad.pk])
    assert audit.changes["last_errors"] == {str(bad.pk): "RuntimeError: parser bug"}
    assert queue_depth(incoming) == 1

    del fake_apply.failing[bad.pk]
    assert inbound_events_drain().processed == 1
    assert inbound_events_reprocess(event_ids=[bad.pk], actor=admin_user) == 0


# -- wake-ups and the sweeper ---------------------------------------------------------------------


@pytest.mark.django_db
def test_wake_ups_coalesce_into_one_message_until_a_drain_clears_the_flag(
    fake_apply, incoming, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            inbound_events_wake()
    assert queue_depth(incoming) == 1
    assert WakeUp.objects.get(name="incoming").pending

    inbound_events_drain()
    assert not WakeUp.objects.get(name="incoming").pending

    with django_capture_on_commit_callbacks(execute=True):
        inbound_events_wake()
        inbound_events_wake()
    assert queue_depth(incoming) == 2


@pytest.mark.parametrize("flag", ["missing", "down"])
def test_concurrent_wake_ups_enqueue_one_drain(transactional_db, incoming, flag):
    if flag == "down":
        WakeUp.objects.create(name="incoming", pending=False)
    barrier = threading.Barrier(8)

    def wake() -> None:
        try:
            barrier.wait(timeout=10)
            inbound_events_wake()
        finally:
            connection.close()

    threads = [threading.Thread(target=wake) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert queue_depth(incoming) == 1
    assert WakeUp.objects.get(name="incoming").pending


@pytest.mark.django_db
def test_a_stale_flag_is_taken_for_a_lost_wake_up(incoming, django_capture_on_commit_callbacks):
    WakeUp.objects.create(name="incoming", pending=True)
    WakeUp.objects.update(updated_at=timezone.now() - timedelta(seconds=WAKE_STALE_S - 5))
    with django_capture_on_commit_callbacks(execute=True):
        inbound_events_wake()
    assert queue_depth(incoming) == 0

    WakeUp.objects.update(updated_at=timezone.now() - timedelta(seconds=WAKE_STALE_S + 1))
    with django_capture_on_commit_callbacks(execute=True):
        inbound_events_wake()
    assert queue_depth(incoming) == 1


@pytest.mark.django_db
def test_the_sweeper_enqueues_a_drain_only_when_due_events_wait_whatever_the_flag(incoming):
    assert inbound_events_sweep() is False
    (event,) = record(1)
    InboundEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert inbound_events_sweep() is False
    assert queue_depth(incoming) == 0

    WakeUp.objects.create(name="incoming", pending=True)  # a drain announced, and lost
    InboundEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert inbound_events_sweep() is True
    assert queue_depth(incoming) == 1


def test_200_webhooks_make_one_sqs_message_and_one_drain_takes_them_all(
    transactional_db, client, fake_apply, incoming
):
    bodies = [text_body(wamid=f"wamid.burst.{index}", text=f"message {index}") for index in range(200)]

    statuses = {webhook_post(client, body).status_code for body in bodies}

    assert statuses == {200}
    assert InboundEvent.objects.filter(state=State.PENDING).count() == 200
    assert queue_depth(incoming) == 1
    assert inbound_events_drain().processed == 200
    assert len(fake_apply.calls) == len(set(fake_apply.calls)) == 200


# -- SQS down -------------------------------------------------------------------------------------


@pytest.fixture
def own_sqs(settings, tmp_path, monkeypatch):
    """A moto server of this test's own, that it can stop and start again on the same port."""
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    port = free_port()
    servers = [MotoServer(port, tmp_path / "moto.log")]
    settings.AWS_ENDPOINT_URL = servers[0].endpoint
    settings.SQS_QUEUE_PREFIX = prefix = f"wharf-test-{uuid4().hex[:10]}-"

    class Sqs:
        def stop(self) -> None:
            servers[-1].stop()

        def start(self) -> dict:
            servers.append(MotoServer(port, tmp_path / "moto.log"))
            return {state.name: state for state in queues_ensure()}

    queues_ensure()
    try:
        with celery_publishing_to(queue_prefix=prefix, broker_url=f"sqs://testing:testing@127.0.0.1:{port}"):
            yield Sqs()
    finally:
        servers[-1].stop()


def test_sqs_down_while_200_webhooks_arrive_all_200_then_all_processed_once_it_returns(
    transactional_db, client, own_sqs, monkeypatch, caplog
):
    own_sqs.stop()
    bodies = [text_body(wamid=f"wamid.down.{index}", text=f"message {index}") for index in range(200)]

    statuses = [webhook_post(client, body).status_code for body in bodies]

    assert statuses == [200] * 200
    assert InboundEvent.objects.filter(state=State.PENDING).count() == 200
    assert not WakeUp.objects.get(name="incoming").pending  # reset, so a later webhook tries again
    failures = caplog.text.count("could not enqueue an inbound drain (wake)")
    assert 1 <= failures < 10  # one request finds SQS down; the others skip it for a while

    queues = own_sqs.start()
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)  # the pause after the last failure is over
    assert inbound_events_sweep() is True
    assert webhook_post(client, text_body(wamid="wamid.back", text="back")).status_code == 200
    assert [task for task, _args, _kwargs in queued_tasks(queues["incoming"])] == [
        "messaging.inbound_events_process"
    ] * 2  # the sweeper's, and the next webhook's wake

    assert inbound_events_drain().processed == 201
    assert Message.objects.filter(wamid__startswith="wamid.down.").count() == 200
    assert inbound_events_drain().processed == 0


@pytest.fixture
def celery_eager():
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


def test_with_celery_eager_a_webhook_is_processed_before_it_is_answered(
    transactional_db, client, celery_eager
):
    """CELERY_TASK_ALWAYS_EAGER=1 runs processing inline, for checks without a worker."""
    assert webhook_post(client, text_body(wamid="wamid.eager", text="inline")).status_code == 200

    assert Message.objects.get(wamid="wamid.eager").text == "inline"
    assert InboundEvent.objects.get().state == State.PROCESSED
