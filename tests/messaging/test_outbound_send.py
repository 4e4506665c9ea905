"""The outgoing drain against the sandbox Graph API over HTTP: what each of Meta's answers does to a
message and its attempts, dead workers' claims, and concurrent drains that never send twice."""

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from core.models import OperatorAlert
from messaging.graph import graph_client
from messaging.inbound.apply import inbound_payload_apply
from messaging.models import AnalyticsEvent, InboundEvent, Message, PendingStatus, SendAttempt
from messaging.outbound import drain as outbound_drain
from messaging.outbound import send as outbound_send
from messaging.outbound import sweep as outbound_sweep
from messaging.outbound.drain import outgoing_drain, outgoing_message_send
from messaging.outbound.send import message_resend, message_send
from messaging.outbound.sweep import outgoing_sweep
from messaging.tasks import outbound_sweep_task
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, sandbox_received
from tests.messaging.webhook_helpers import envelope
from tests.waiting import wait_until

S = Message.Status


@pytest.fixture(autouse=True)
def no_worker(broker, settings):
    """The drains run where the tests call them; the drains they publish wait unread in this
    test's own queues, where a test can read them."""
    settings.WHATSAPP_RECIPIENT_SPACING_S = 0
    return broker


def drain_at_due_time(broker) -> bool:
    """Whether one drain, delayed until a retry or a deferred send is due, is all that was published."""
    (published,) = broker.published("outgoing")
    return published.task == "messaging.outbound_send" and published.eta is not None


class Sandbox:
    def __init__(self, graph_url: str):
        self.http = httpx.Client(base_url=graph_url.rsplit("/", 1)[0] + "/sandbox/", timeout=10)

    def post(self, path: str, body: dict | None = None) -> dict:
        answer = self.http.post(path, json=body)
        answer.raise_for_status()
        return answer.json()

    def config(self, **changes) -> dict:
        return self.post("config", changes)

    def fault(self, *, status: int, code: int, message: str = "An error", times: int = 1) -> None:
        spec = {"route": "messages", "status": status, "code": code, "message": message, "times": times}
        self.post("faults", {"errors": [spec]})

    def stats(self) -> dict:
        return self.http.get("stats").json()

    def wamid_of(self, message: Message) -> str:
        """The wamid the sandbox gave a message it accepted (found by our callback data)."""
        sent = self.stats()["by_wamid"].items()
        return next(w for w, s in sent if s["biz_opaque_callback_data"] == str(message.pk))


@pytest.fixture
def sandbox(settings):
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    sandbox.config(statuses=False)
    yield sandbox
    sandbox.post("reset")


@pytest.fixture
def sender(db):
    return PhoneNumberFactory(phone_number_id="106540352242922", rate_limit_per_s=80)


def queued(sender, n: int = 1, *, contact=None) -> list[Message]:
    messages = []
    for i in range(n):
        recipient = contact or ContactFactory(last_inbound_at=timezone.now())
        messages.append(
            message_send(
                phone_number=sender,
                contact=recipient,
                kind="text",
                content={"body": f"hello {i}"},
                actor=None,
                source="api",
            )
        )
    return messages


def fresh(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_a_drain_sends_records_meta_s_wamid_and_its_attempt_and_sends_nothing_twice(sandbox, sender):
    (message,) = queued(sender)
    PendingStatus.objects.create(wamid="unknown", status="sent", timestamp=timezone.now())

    result = outgoing_drain()

    message = fresh(message)
    assert result.sent == 1
    assert message.status == S.SENT
    assert message.wamid.startswith("wamid.")
    assert message.sent_at is not None
    assert (message.claimed_by, message.claimed_at) == ("", None)
    (attempt,) = SendAttempt.objects.filter(message=message)
    assert (attempt.outcome, attempt.http_status) == ("sent", 200)
    assert attempt.latency_ms is not None and attempt.finished_at is not None
    stats = sandbox.stats()
    assert stats["messages"] == {sender.phone_number_id: 1}
    assert stats["sends_by_callback"] == {str(message.pk): 1}

    assert outgoing_drain().sent == 0  # a redelivered task finds nothing queued
    assert sandbox.stats()["accepted"] == 1


def test_statuses_that_arrived_before_the_wamid_are_applied_when_it_is_recorded(sandbox, sender):
    (message,) = queued(sender)
    claimed = outbound_drain.outgoing_claim(phone_number=sender, batch_size=10, worker="w1")
    real_request = graph_client().request

    def answered_then_status(*args, **kwargs):
        answer = real_request(*args, **kwargs)
        PendingStatus.objects.create(
            wamid=answer["messages"][0]["id"], status="delivered", timestamp=timezone.now()
        )
        return answer

    client = graph_client()
    client.request = answered_then_status
    try:
        assert outgoing_message_send(claimed[0], phone_number=sender, worker="w1") == "sent"
    finally:
        del client.request
    message = fresh(message)
    assert message.status == S.DELIVERED
    assert not PendingStatus.objects.filter(wamid=message.wamid).exists()


def status_arrives(message: Message, wamid: str, name: str, *, timestamp: int) -> None:
    """Meta's status webhook for `wamid`, stored and parsed as the incoming worker does."""
    status = {
        "id": wamid,
        "status": name,
        "timestamp": str(timestamp),
        "recipient_id": message.payload["to"],
        "biz_opaque_callback_data": str(message.pk),
    }
    payload = envelope(
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [status],
        }
    )
    raw = json.dumps(payload).encode()
    event = InboundEvent.objects.create(
        body=raw, body_sha256=hashlib.sha256(raw).hexdigest(), payload=payload
    )
    inbound_payload_apply(event=event)


@contextmanager
def before_the_answer_is_recorded(action) -> Iterator[None]:
    """Runs `action(reply)` after Meta answered (or did not), before the worker records it."""
    real_apply = outbound_drain._outcome_apply

    def apply(message, attempt, **kwargs):
        action(kwargs["reply"])
        return real_apply(message, attempt, **kwargs)

    outbound_drain._outcome_apply = apply
    try:
        yield
    finally:
        outbound_drain._outcome_apply = real_apply


@pytest.mark.parametrize("first", ["status", "answer"])
def test_a_sent_status_applies_whether_it_comes_before_or_after_the_worker_records_meta_s_answer(
    sandbox, sender, first
):
    (message,) = queued(sender)
    (claimed,) = outbound_drain.outgoing_claim(phone_number=sender, batch_size=10, worker="w1")
    at = int(time.time())

    def status_first(reply):
        assert fresh(message).status == S.SENDING
        status_arrives(message, reply.answer["messages"][0]["id"], "sent", timestamp=at)

    with before_the_answer_is_recorded(status_first if first == "status" else lambda reply: None):
        assert outgoing_message_send(claimed, phone_number=sender, worker="w1") == "sent"
    wamid = sandbox.wamid_of(message)
    if first == "answer":
        status_arrives(message, wamid, "sent", timestamp=at)
    status_arrives(message, wamid, "delivered", timestamp=at + 1)

    message = fresh(message)
    assert (message.wamid, message.status) == (wamid, S.DELIVERED)
    assert message.sent_at is not None and message.delivered_at is not None
    assert not PendingStatus.objects.exists()
    statuses = AnalyticsEvent.objects.filter(message=message).values_list("status", flat=True)
    assert sorted(statuses) == ["delivered", "sent"]


@pytest.mark.parametrize("first", ["status", "silence"])
def test_a_status_settles_a_send_left_unanswered_whether_it_comes_before_or_after_the_silence(
    sandbox, sender, first
):
    (message,) = queued(sender)
    sandbox.config(messages_drop_next=1)

    def status_first(reply):
        assert fresh(message).status == S.SENDING and reply.error is not None
        status_arrives(message, sandbox.wamid_of(message), "sent", timestamp=int(time.time()))

    with before_the_answer_is_recorded(status_first if first == "status" else lambda reply: None):
        result = outgoing_drain()
    if first == "silence":
        assert (result.in_doubt, fresh(message).status) == (1, S.IN_DOUBT)
        status_arrives(message, sandbox.wamid_of(message), "sent", timestamp=int(time.time()))
    else:
        assert result.sent == 1

    message = fresh(message)
    assert (message.wamid, message.status) == (sandbox.wamid_of(message), S.SENT)
    assert (message.claimed_by, message.error_code) == ("", None)
    assert not PendingStatus.objects.exists()
    assert outgoing_drain().sent == 0
    assert sandbox.stats()["duplicates"] == 0


def test_a_retryable_error_backs_off_through_a_due_time_then_sends(sandbox, sender, no_worker):
    (message,) = queued(sender)
    sandbox.fault(status=503, code=131000, message="Something went wrong")

    before = timezone.now()
    assert outgoing_drain().retrying == 1
    assert drain_at_due_time(no_worker)  # a drain delayed until the retry is due

    message = fresh(message)
    assert (message.status, message.attempts, message.error_code) == (S.QUEUED, 1, 131000)
    assert before + timedelta(seconds=1) < message.due_at < timezone.now() + timedelta(seconds=10)
    (attempt,) = message.attempts_made.all()
    assert (attempt.outcome, attempt.http_status, attempt.error_code) == ("retry", 503, 131000)
    assert outgoing_drain().sent == 0  # not due yet

    Message.objects.filter(pk=message.pk).update(due_at=timezone.now())
    assert outgoing_drain().sent == 1
    message = fresh(message)
    assert [a.outcome for a in message.attempts_made.all()] == ["retry", "sent"]
    assert (message.error_code, message.error_title) == (None, "")  # the retry's error is settled


def test_retries_end_in_failure_after_max_attempts(sandbox, sender, monkeypatch):
    monkeypatch.setattr(outbound_drain, "MAX_ATTEMPTS", 2)
    (message,) = queued(sender)
    sandbox.fault(status=429, code=130429, message="Rate limit hit", times=2)
    outgoing_drain()
    Message.objects.filter(pk=message.pk).update(due_at=timezone.now())
    assert outgoing_drain().failed == 1
    message = fresh(message)
    assert (message.status, message.attempts, message.error_code) == (S.FAILED, 2, 130429)
    assert message.failed_at is not None


def test_a_permanent_error_fails_the_message_with_meta_s_code_title_and_details(sandbox, sender):
    contact = ContactFactory(last_inbound_at=timezone.now())
    sandbox.config(undeliverable=[contact.phone.lstrip("+")])
    (message,) = queued(sender, contact=contact)

    assert outgoing_drain().failed == 1

    message = fresh(message)
    assert (message.status, message.error_code, message.attempts) == (S.FAILED, 131026, 1)
    assert message.error_title and message.error_details
    assert fresh(message).attempts_made.get().outcome == "failed"
    # no status webhook follows a refusal: the analytics count it as a failed status all the same
    event = AnalyticsEvent.objects.get(message=message)
    assert (event.kind, event.status, event.wamid) == ("status_changed", "failed", message.wamid)
    assert event.data == {"error_code": 131026, "refused_when_sent": True}
    assert event.phone_number_id == sender.pk and event.contact_id == contact.pk


def test_error_190_pauses_the_sender_alerts_operators_and_keeps_the_messages(sandbox, sender):
    messages = queued(sender, 3)
    sandbox.fault(status=401, code=190, message="Error validating access token: Session has expired")

    result = outgoing_drain()

    assert result.released == 3
    sender.refresh_from_db()
    assert sender.paused_at is not None
    assert "190" in sender.paused_reason
    assert [fresh(m).status for m in messages] == [S.QUEUED] * 3
    alert = OperatorAlert.objects.get(key=f"sender-paused:{sender.phone_number_id}")
    assert str(sender) in alert.text
    assert SendAttempt.objects.count() == 1  # the rest of the batch was not tried
    assert outgoing_drain().sent == 0  # paused

    outbound_send.phone_number_resume(phone_number=sender, actor=None)
    assert outgoing_drain().sent == 3
    assert sandbox.stats()["duplicates"] == 0


def test_a_dropped_connection_after_the_request_leaves_the_message_in_doubt_until_an_operator_resends(
    sandbox, sender
):
    (message,) = queued(sender)
    sandbox.config(messages_drop_next=1)

    assert outgoing_drain().in_doubt == 1

    message = fresh(message)
    assert message.status == S.IN_DOUBT
    assert message.wamid.startswith("wharf-")
    assert message.attempts_made.get().outcome == "in_doubt"
    assert sandbox.stats()["accepted"] == 1  # it did reach "Meta"
    assert outgoing_drain().sent == 0
    assert outgoing_sweep()["requeued"] == 0
    assert fresh(message).status == S.IN_DOUBT

    message_resend(message=message, actor=None)
    assert outgoing_drain().sent == 1
    assert sandbox.stats()["duplicates"] == 1  # the operator's choice, counted as such


def test_after_a_request_left_unanswered_the_rest_of_the_sender_s_batch_waits(sandbox, sender, no_worker):
    first, *rest = queued(sender, 3)
    sandbox.config(messages_drop_next=1)

    result = outgoing_drain()

    assert (result.in_doubt, result.released, result.sent) == (1, 2, 0)
    assert fresh(first).status == S.IN_DOUBT
    for message in rest:
        message = fresh(message)
        assert (message.status, message.attempts) == (S.QUEUED, 0)  # no attempt: nothing left
        assert message.due_at > timezone.now()
    assert not SendAttempt.objects.filter(message__in=rest).exists()
    assert sandbox.stats()["accepted"] == 1
    assert drain_at_due_time(no_worker)


def test_meta_s_statuses_carrying_our_id_settle_a_doubt_as_sent_and_nothing_is_resent(sandbox, sender):
    doubtful, unanswered = queued(sender, 2)
    sandbox.config(messages_drop_next=2)
    assert outgoing_drain().in_doubt == 1
    Message.objects.filter(pk=unanswered.pk).update(due_at=timezone.now())  # held back after the first
    assert outgoing_drain().in_doubt == 1
    wamid = sandbox.wamid_of(doubtful)
    for name, seconds in (("sent", 0), ("delivered", 1)):
        status = {"id": wamid, "status": name, "biz_opaque_callback_data": str(doubtful.pk)}
        PendingStatus.objects.create(
            wamid=wamid, status=name, timestamp=timezone.now() + timedelta(seconds=seconds), payload=status
        )

    assert outgoing_sweep()["resolved"] == 1

    doubtful = fresh(doubtful)
    assert (doubtful.wamid, doubtful.status) == (wamid, S.DELIVERED)
    assert doubtful.sent_at is not None and doubtful.delivered_at is not None
    assert not PendingStatus.objects.exists()
    assert fresh(unanswered).status == S.IN_DOUBT  # no status named it: the operator decides

    # An operator's resend looks for such statuses first.
    other = sandbox.wamid_of(unanswered)
    status = {"id": other, "status": "sent", "biz_opaque_callback_data": str(unanswered.pk)}
    PendingStatus.objects.create(wamid=other, status="sent", timestamp=timezone.now(), payload=status)
    assert message_resend(message=unanswered, actor=None).status == S.SENT
    assert fresh(unanswered).wamid == other
    assert outgoing_drain().sent == 0
    assert sandbox.stats()["duplicates"] == 0


def test_a_refused_connection_never_reached_meta_and_is_retried(sandbox, sender, settings):
    with socket_closed_port() as port:
        settings.WHATSAPP_GRAPH_URL = f"http://127.0.0.1:{port}/v23.0"
        (message,) = queued(sender)
        assert outgoing_drain().retrying == 1
    message = fresh(message)
    assert (message.status, message.attempts) == (S.QUEUED, 1)
    assert message.attempts_made.get().outcome == "retry"


@contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening, so no one else takes it)."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


def test_the_sweeper_requeues_claims_without_attempts_and_doubts_those_with_one(sandbox, sender):
    unsent, doubtful, recent = queued(sender, 3)
    long_ago = timezone.now() - timedelta(seconds=outbound_sweep.CLAIM_STALE_S() + 1)
    Message.objects.filter(pk__in=[unsent.pk, doubtful.pk]).update(
        status=S.SENDING, claimed_by="dead", claimed_at=long_ago
    )
    Message.objects.filter(pk=recent.pk).update(
        status=S.SENDING, claimed_by="alive", claimed_at=timezone.now()
    )
    SendAttempt.objects.create(message=doubtful, started_at=long_ago, worker="dead")

    assert outgoing_sweep() == {"requeued": 1, "in_doubt": 1, "resolved": 0, "woken": 1}

    assert fresh(unsent).status == S.QUEUED
    assert fresh(doubtful).status == S.IN_DOUBT
    assert doubtful.attempts_made.get().outcome == "in_doubt"
    assert fresh(recent).status == S.SENDING
    assert outgoing_drain().sent == 1  # only the requeued one
    assert sandbox.stats()["sends_by_callback"] == {str(unsent.pk): 1}


def test_a_group_swept_before_its_sends_were_cleared_is_queued_again_not_doubted_and_sent_once(
    sandbox, sender, monkeypatch
):
    """A worker that took a group's slots and started its attempts, then stopped before clearing
    them (dead, or only slow): the sweep queues the group again, for its requests never left, and
    the slow worker, finding its claims gone when it clears them, sends none of them."""
    messages = queued(sender, 3)
    clear = outbound_drain._attempts_clear
    swept = []

    def swept_first(sends, *, worker):
        if not swept:  # the worker stalls here, long enough for its claims to go stale
            Message.objects.filter(claimed_by=worker).update(claimed_at=timezone.now() - timedelta(hours=1))
            swept.append(outgoing_sweep())
        clear(sends, worker=worker)

    monkeypatch.setattr(outbound_drain, "_attempts_clear", swept_first)
    result = outgoing_drain()

    assert swept[0]["requeued"] >= 1 and swept[0]["in_doubt"] == 0
    assert result.in_doubt == 0
    assert sandbox.stats()["sends_by_callback"] == {str(m.pk): 1 for m in messages}
    assert {fresh(m).status for m in messages} == {S.SENT}
    never_left = SendAttempt.objects.filter(message__in=messages, error_title=outbound_sweep.NEVER_LEFT)
    assert never_left.count() >= 1  # the group whose attempts had started, closed by the sweep
    assert all(a.cleared_at is None and a.outcome == "retry" for a in never_left)
    sent = SendAttempt.objects.filter(message__in=messages, outcome="sent")
    assert sent.count() == 3 and all(a.cleared_at >= a.started_at for a in sent)


def test_the_sweeper_doubts_only_claims_whose_attempts_were_cleared_to_leave(sandbox, sender):
    cleared, uncleared = queued(sender, 2)
    long_ago = timezone.now() - timedelta(seconds=outbound_sweep.CLAIM_STALE_S() + 1)
    Message.objects.filter(pk__in=[cleared.pk, uncleared.pk]).update(
        status=S.SENDING, claimed_by="dead", claimed_at=long_ago
    )
    SendAttempt.objects.create(message=cleared, started_at=long_ago, cleared_at=long_ago, worker="dead")
    SendAttempt.objects.create(message=uncleared, started_at=long_ago, cleared_at=None, worker="dead")

    assert outbound_sweep_task.apply().get() == {"requeued": 1, "in_doubt": 1, "resolved": 0, "woken": 1}

    assert (fresh(cleared).status, fresh(uncleared).status) == (S.IN_DOUBT, S.QUEUED)
    assert cleared.attempts_made.get().outcome == "in_doubt"
    closed = uncleared.attempts_made.get()
    assert (closed.outcome, closed.error_title) == ("retry", outbound_sweep.NEVER_LEFT)
    assert outgoing_drain().sent == 1
    assert sandbox.stats()["sends_by_callback"] == {str(uncleared.pk): 1}


def test_a_slow_worker_whose_claim_was_swept_does_not_send(sandbox, sender):
    (message,) = queued(sender)
    (claimed,) = outbound_drain.outgoing_claim(phone_number=sender, batch_size=10, worker="slow")
    Message.objects.filter(pk=message.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    outgoing_sweep()  # requeued: no attempt had started
    outbound_drain.outgoing_claim(phone_number=sender, batch_size=10, worker="other")

    assert outgoing_message_send(claimed, phone_number=sender, worker="slow") == ""
    assert outgoing_message_send(claimed, phone_number=sender, worker="other") == "sent"
    assert sandbox.stats()["accepted"] == 1


@pytest.mark.django_db(transaction=True)
def test_two_drains_at_once_send_every_message_once(sandbox, sender):
    messages = queued(sender, 40)
    results, errors = [], []

    def drain():
        try:
            results.append(outgoing_drain(batch_size=5))
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert sum(result.sent for result in results) == 40
    assert all(result.sent for result in results), "both drains took part"
    stats = sandbox.stats()
    assert (stats["accepted"], stats["duplicates"], stats["rate_limited"]) == (40, 0, 0)
    assert SendAttempt.objects.count() == 40
    assert Message.objects.filter(pk__in=[m.pk for m in messages], status=S.SENT).count() == 40


@pytest.mark.django_db(transaction=True)
def test_two_drains_sharing_a_sender_keep_to_its_rate_as_the_sandbox_counts_it(sandbox, sender):
    rate = 40
    sender.rate_limit_per_s = rate
    sender.save()
    # Two drains pacing apart (80/s) would be answered 130429, and so would one drain's send that
    # left late in the same one of Meta's seconds as sends on time (the window is exact).
    sandbox.config(statuses=False, rate_limits={sender.phone_number_id: rate})
    queued(sender, 3 * rate)
    results = []

    def drain():
        try:
            results.append(outgoing_drain(batch_size=10))
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    while Message.objects.filter(status=S.QUEUED).exists():  # any that missed their slot
        results.append(outgoing_drain())

    stats = sandbox.stats()
    assert (stats["accepted"], stats["rate_limited"], stats["duplicates"]) == (3 * rate, 0, 0)
    assert max(stats["accepts"][sender.phone_number_id]["per_second"].values()) <= rate
    assert sum(result.sent for result in results) == 3 * rate
    assert all(result.sent for result in results[:2]), "both drains took part"


def drop_from(monkeypatch, sandbox, *, send: int, drops: int) -> None:
    """From the `send`-th request the drain hands over, the sandbox drops `drops` connections after
    accepting the message, as if Meta sent it and the answer was lost."""
    hand_over, handed = outbound_drain._Stream.hand_over, []

    def dropping(self, send_):
        handed.append(send_)
        if len(handed) == send:
            sandbox.config(messages_drop_next=drops)
        hand_over(self, send_)

    monkeypatch.setattr(outbound_drain._Stream, "hand_over", dropping)


def test_one_request_left_unanswered_among_answered_ones_does_not_stop_the_sender(
    sandbox, sender, monkeypatch
):
    sender.rate_limit_per_s = 20
    sender.save()
    queued(sender, 8)
    drop_from(monkeypatch, sandbox, send=3, drops=1)

    result = outgoing_drain()

    assert (result.sent, result.in_doubt, result.released) == (7, 1, 0)


def test_requests_left_unanswered_three_in_a_row_stop_the_sender_for_the_drain(sandbox, sender, monkeypatch):
    sender.rate_limit_per_s = 20
    sender.save()
    messages = queued(sender, 10)
    drop_from(monkeypatch, sandbox, send=2, drops=3)

    result = outgoing_drain()

    assert (result.sent, result.in_doubt) == (1, 3)
    assert result.released == 6
    assert Message.objects.filter(pk__in=[m.pk for m in messages], status=S.QUEUED).count() == 6
    assert sandbox.stats()["accepted"] == 4


def stall_once(monkeypatch, *, after: int, stall_s: float) -> None:
    """The dispatcher stops for `stall_s` before handing over the send after the `after`-th, as a
    process stops for a garbage collection or the CPU: the sends due meanwhile leave late."""
    hand_over, handed = outbound_drain._Stream.hand_over, []

    def stalling(self, send):
        handed.append(send)
        if len(handed) == after + 1:
            time.sleep(stall_s)  # the stall under test
        hand_over(self, send)

    monkeypatch.setattr(outbound_drain._Stream, "hand_over", stalling)


@pytest.mark.django_db(transaction=True)
def test_sends_that_left_late_move_the_sender_s_schedule_on_so_meta_s_seconds_stay_within_its_rate(
    sandbox, sender, monkeypatch
):
    rate = 40
    sender.rate_limit_per_s = rate
    sender.save()
    sandbox.config(statuses=False, rate_limits={sender.phone_number_id: rate})
    queued(sender, 3 * rate)
    # 80 ms late: without moving the schedule on, the sends a second later would be answered 130429.
    stall_once(monkeypatch, after=rate // 2, stall_s=0.08)

    result = outgoing_drain()

    stats = sandbox.stats()
    assert (stats["accepted"], stats["rate_limited"], stats["duplicates"]) == (3 * rate, 0, 0)
    assert result.sent == 3 * rate
    assert result.late >= 1  # sent late, none held back
    assert not SendAttempt.objects.exclude(outcome="sent").exists()


@pytest.mark.django_db(transaction=True)
def test_a_slow_sender_s_send_that_would_leave_late_is_queued_again_unsent(sandbox, sender, monkeypatch):
    rate = 5  # one send a group: the next slot may be another drain's already
    sender.rate_limit_per_s = rate
    sender.save()
    sandbox.config(statuses=False, rate_limits={sender.phone_number_id: rate})
    messages = queued(sender, 2 * rate)
    stall_once(monkeypatch, after=3, stall_s=0.08)

    result = outgoing_drain()

    def all_sent() -> bool:
        result.sent += outgoing_drain().sent
        return not Message.objects.filter(status=S.QUEUED).exists()

    wait_until(all_sent, interval=0, message="the messages queued again sent by later drains")

    stats = sandbox.stats()
    assert (stats["accepted"], stats["rate_limited"], stats["duplicates"]) == (2 * rate, 0, 0)
    assert (result.sent, result.late) == (2 * rate, 1)
    late = SendAttempt.objects.get(outcome="retry")
    assert late.error_title.startswith("Not sent: it would have left")
    assert late.http_status is None
    assert all(fresh(m).status == S.SENT for m in messages)


def test_a_message_held_back_by_its_recipient_s_spacing_waits_in_the_queue_for_a_slot_of_its_own(
    sandbox, sender, settings
):
    settings.WHATSAPP_RECIPIENT_SPACING_S = 0.5
    sandbox.config(pair_spacing_ms=400)  # ours less the jitter of arrivals
    busy = ContactFactory(last_inbound_at=timezone.now())
    first, second, third = queued(sender, 3, contact=busy)
    others = queued(sender, 5)

    result = outgoing_drain()

    assert (result.sent, result.deferred) == (6, 2)
    assert fresh(first).status == S.SENT
    for message in (second, third):  # back in the queue, due at the recipient's turn, untried
        message = fresh(message)
        assert (message.status, message.attempts, message.claimed_by) == (S.QUEUED, 0, "")
        assert message.due_at > fresh(first).sent_at
        assert not message.attempts_made.exists()
    sent = [6]

    def all_sent() -> bool:
        sent.append(outgoing_drain().sent)
        return sum(sent) >= 8

    wait_until(all_sent, message="the held messages sent at their recipient's turns")
    stats = sandbox.stats()
    assert (stats["accepted"], stats["pair_limited"], stats["duplicates"]) == (8, 0, 0)
    assert all(fresh(m).status == S.SENT for m in (first, second, third, *others))
    assert SendAttempt.objects.count() == 8  # one each: the held ones were never tried at a slot


def test_mark_as_read_tells_meta_for_inbound_messages_only(api_client, sandbox, sender):
    client = api_client("messaging.add_message")
    inbound = MessageFactory(phone_number=sender)
    sandbox_received(inbound.wamid)
    answer = client.post(f"/api/v1/messages/{inbound.pk}/read/")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["read_at"] is not None
    assert sandbox.stats()["reads"] == 1

    outbound_message = MessageFactory(phone_number=sender, direction="outbound")
    answer = client.post(f"/api/v1/messages/{outbound_message.pk}/read/")
    assert answer.status_code == 400
    assert "message" in answer.json()

    # Meta refusing for good is the client's to deal with (409, Meta's code and words); Meta
    # failing is not (502): both documented.
    unknown = MessageFactory(phone_number=PhoneNumberFactory(phone_number_id="999"), wamid="wamid.nope")
    sandbox.fault(status=400, code=100, message="Invalid parameter")
    answer = client.post(f"/api/v1/messages/{unknown.pk}/read/")
    assert answer.status_code == 409
    assert answer.json()["error"] == {"code": 100, "title": "Invalid parameter", "details": ""}
    assert "Invalid parameter" in answer.json()["detail"]
    sandbox.fault(status=500, code=1, message="An unknown error occurred")
    answer = client.post(f"/api/v1/messages/{unknown.pk}/read/")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == 1
    assert Message.objects.get(pk=unknown.pk).read_at is None


def test_messages_swept_from_a_slow_drain_and_claimed_again_by_it_are_sent_once(
    sandbox, sender, monkeypatch, settings
):
    """The drain looks for due messages again (ROUND_S) while the swept messages it had claimed
    are still in its queue: claiming them again under the same token must not make them twice."""
    messages = queued(sender, 3)
    clear = outbound_drain._attempts_clear
    swept = []

    def swept_first(sends, *, worker):
        if not swept:
            Message.objects.filter(claimed_by=worker).update(claimed_at=timezone.now() - timedelta(hours=1))
            swept.append(outgoing_sweep())
        clear(sends, worker=worker)

    monkeypatch.setattr(outbound_drain, "_attempts_clear", swept_first)
    refill = outbound_drain._Stream.refill

    def looking(self, *, look=False, probe=False):  # every round looks (as ROUND_S apart would)
        return refill(self, look=True, probe=probe)

    monkeypatch.setattr(outbound_drain._Stream, "refill", looking)
    settings.WHATSAPP_RECIPIENT_SPACING_S = 0  # no recipient's turn holds a copy back
    outgoing_drain()

    assert swept[0]["requeued"] >= 1
    assert sandbox.stats()["sends_by_callback"] == {str(m.pk): 1 for m in messages}
    assert {fresh(m).status for m in messages} == {S.SENT}
