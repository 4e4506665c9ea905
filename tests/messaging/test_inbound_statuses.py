"""Bodies of statuses only, applied together by the drain (messaging/inbound/apply.py's
`inbound_statuses_apply`): the same rows as one event at a time, in a few statements."""

import json
import logging
import random
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging import statuses as statuses_module
from messaging.inbound import events as inbound_events
from messaging.inbound.events import inbound_event_record, inbound_events_drain
from messaging.models import AnalyticsEvent, InboundEvent, Message, PendingStatus, PhoneNumber, WebhookEvent
from tests.factories import ContactFactory, MessageFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, envelope, text_body

State = InboundEvent.State
NAMES = ["sent", "delivered", "read", "played", "failed", "deleted"]
STARTS = ["queued", "sent", "delivered", "read", "played", "failed", "deleted", "sending", "in_doubt"]
TIMES = ["sent_at", "delivered_at", "read_at", "played_at", "failed_at"]
T0 = 1767225600


def statuses_body(statuses: list[dict[str, Any]], *, phone_number_id: str = PHONE_NUMBER_ID) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "statuses": statuses,
    }
    return json.dumps(envelope(value)).encode()


def a_status(rng: random.Random, wamid: str) -> dict[str, Any]:
    status: dict[str, Any] = {
        "id": wamid,
        "status": rng.choice(NAMES),
        "timestamp": str(T0 + rng.randrange(0, 50)),
        "recipient_id": "447700900123",
        "pricing": {
            "billable": True,
            "pricing_model": "PMP",
            "category": rng.choice(["marketing", "utility"]),
        },
    }
    if status["status"] == "failed" and rng.random() < 0.8:
        code = rng.choice([131047, 131026, 130472])
        status["errors"] = [{"code": code, "title": f"error {code}", "message": f"details {code}"}]
    if rng.random() < 0.1:
        status["biz_opaque_callback_data"] = str(rng.randrange(10**8, 10**9))
    return status


def scenario(seed: int, *, contact, number) -> None:
    """Messages in every state, then a batch's worth of bodies: statuses out of order, duplicated,
    of unknown wamids, of an inbound message, a few bodies of other kinds among them."""
    rng = random.Random(seed)
    wamids = [f"wamid.PROP{seed}.{index}" for index in range(25)]
    for wamid in wamids[:18]:
        times = {field: datetime.fromtimestamp(T0 + 5, UTC) for field in TIMES if rng.random() < 0.15}
        MessageFactory(
            wamid=wamid,
            direction="outbound",
            status=rng.choice(STARTS),
            contact=contact,
            phone_number=number,
            **times,
        )
    inbound = MessageFactory(wamid=f"wamid.PROP{seed}.inbound", contact=contact, phone_number=number)
    for index in range(60):
        roll = rng.random()
        if roll < 0.05:
            body = text_body(wamid=f"wamid.PROP{seed}.text{index}", text=f"hello {index}")
        elif roll < 0.08:
            body = statuses_body([a_status(rng, inbound.wamid)])
        else:
            count = 1 if rng.random() < 0.8 else rng.randrange(2, 4)
            body = statuses_body(
                [a_status(rng, rng.choice(wamids)) for _ in range(count)],
                phone_number_id=PHONE_NUMBER_ID if rng.random() < 0.9 else "999000999",
            )
        inbound_event_record(body=body)


def snapshot(since: datetime) -> dict[str, Any]:
    messages = {
        row["wamid"]: {**row, "updated_at": row["updated_at"] >= since}
        for row in Message.objects.values(
            "wamid", "status", *TIMES, "error_code", "error_title", "error_details", "updated_at"
        )
    }
    return {
        "messages": messages,
        "analytics": sorted(
            AnalyticsEvent.objects.values_list(
                "kind", "wamid", "status", "message__wamid", "occurred_at", "data"
            ),
            key=repr,
        ),
        "pending": sorted(
            PendingStatus.objects.values_list("wamid", "status", "timestamp", "payload"), key=repr
        ),
        "events": sorted(
            InboundEvent.objects.values_list(
                "body_sha256", "state", "fields", "unknown_phone_number", "unknown_fields", "attempts"
            )
        ),
        "webhook_events": sorted(
            WebhookEvent.objects.values_list(
                "inbound_event__body_sha256", "position", "field", "event", "known"
            )
        ),
    }


class Undo(Exception):
    def __init__(self, found: dict[str, Any]) -> None:
        self.found = found


def outcome(seed: int, *, contact, number) -> dict[str, Any]:
    """What a drain leaves of the scenario; everything is rolled back afterwards."""
    try:
        with transaction.atomic():
            scenario(seed, contact=contact, number=number)
            since = timezone.now()
            result = inbound_events_drain(batch_size=100)
            assert result.processed == InboundEvent.objects.count()
            raise Undo(snapshot(since))
    except Undo as undo:
        return undo.found


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_statuses_applied_together_leave_the_same_rows_as_one_event_at_a_time(seed, monkeypatch):
    contact = ContactFactory()
    number = PhoneNumber.objects.create(phone_number_id=PHONE_NUMBER_ID)

    together = outcome(seed, contact=contact, number=number)
    with monkeypatch.context() as patch:
        patch.setattr(inbound_events, "inbound_statuses_apply", lambda **kwargs: {})
        one_by_one = outcome(seed, contact=contact, number=number)

    assert together == one_by_one
    moved = [row for row in together["messages"].values() if row["updated_at"]]
    assert moved, "the scenario moves messages"
    assert together["pending"], "the scenario has unknown wamids"
    assert any(row["error_code"] for row in together["messages"].values()), "the scenario fails messages"
    keys = [(kind, wamid, status) for kind, wamid, status, *_ in together["analytics"]]
    assert len(keys) == len(set(keys))


@pytest.mark.django_db
def test_a_batch_of_statuses_takes_a_few_statements_whatever_its_size(django_assert_max_num_queries):
    contact = ContactFactory()
    number = PhoneNumber.objects.create(phone_number_id=PHONE_NUMBER_ID)
    messages = [
        MessageFactory(direction="outbound", status="sent", contact=contact, phone_number=number)
        for _ in range(30)
    ]
    for step, name in enumerate(["delivered", "read"]):
        for message in messages:
            inbound_event_record(
                body=statuses_body([{"id": message.wamid, "status": name, "timestamp": str(T0 + step)}])
            )
    for index in range(20):
        inbound_event_record(
            body=statuses_body([{"id": f"wamid.NOTYET{index}", "status": "sent", "timestamp": str(T0)}])
        )

    with django_assert_max_num_queries(20):
        result = inbound_events_drain(batch_size=100)

    assert result.processed == 80
    assert Message.objects.filter(pk__in=[m.pk for m in messages], status="read").count() == 30
    assert AnalyticsEvent.objects.filter(kind="status_changed").count() == 60
    assert PendingStatus.objects.filter(wamid__startswith="wamid.NOTYET").count() == 20
    assert list(InboundEvent.objects.order_by().values_list("state", "fields").distinct()) == [
        (State.PROCESSED, ["messages"])
    ]


@pytest.mark.django_db
def test_a_poisoned_status_fails_alone_and_the_rest_of_its_batch_is_applied(monkeypatch):
    contact = ContactFactory()
    number = PhoneNumber.objects.create(phone_number_id=PHONE_NUMBER_ID)
    messages = [
        MessageFactory(direction="outbound", status="sent", contact=contact, phone_number=number)
        for _ in range(5)
    ]
    poisoned = MessageFactory(direction="outbound", status="sent", contact=contact, phone_number=number)
    events = [
        inbound_event_record(body=statuses_body([{"id": m.wamid, "status": "read", "timestamp": str(T0)}]))[0]
        for m in [*messages[:3], poisoned, *messages[3:]]
    ]
    status_data = statuses_module._status_data

    def refusing(payload: dict) -> dict:
        if payload.get("id") == poisoned.wamid:
            raise ValueError("a status the database refuses")
        return status_data(payload)

    monkeypatch.setattr(statuses_module, "_status_data", refusing)

    result = inbound_events_drain(batch_size=100)

    assert (result.processed, result.retrying) == (5, 1)
    states = dict(InboundEvent.objects.values_list("id", "state"))
    assert [states[event.pk] for event in events] == ["processed"] * 3 + ["pending"] + ["processed"] * 2
    assert InboundEvent.objects.get(pk=events[3].pk).attempts == 1
    assert set(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("status", flat=True)) == {
        "read"
    }
    assert Message.objects.get(pk=poisoned.pk).status == "sent"
    assert AnalyticsEvent.objects.filter(kind="status_changed").count() == 5


def test_two_drains_of_statuses_of_the_same_messages_at_once_wait_for_each_other(transactional_db, caplog):
    contact = ContactFactory()
    number = PhoneNumber.objects.create(phone_number_id=PHONE_NUMBER_ID)
    messages = [
        MessageFactory(direction="outbound", status="queued", contact=contact, phone_number=number)
        for _ in range(8)
    ]
    wamids = [message.wamid for message in messages] + [f"wamid.LATER{index}" for index in range(4)]
    for step, name in enumerate(["read", "sent", "delivered"]):
        for index, wamid in enumerate(wamids):
            # each body names two wamids, so concurrent batches share messages in crossed orders
            pair = [wamid, wamids[(index * 5 + step) % len(wamids)]]
            inbound_event_record(
                body=statuses_body([{"id": one, "status": name, "timestamp": str(T0 + step)} for one in pair])
            )
    results = []
    barrier = threading.Barrier(2)

    def drain() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(inbound_events_drain(batch_size=6))
        finally:
            connection.close()

    with caplog.at_level(logging.INFO, logger="messaging.inbound.events"):
        threads = [threading.Thread(target=drain) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert all(result.processed for result in results)  # both took a share
    assert sum(result.processed for result in results) == 36
    assert not [record for record in caplog.records if "one event at a time" in record.getMessage()]
    assert set(Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("status", flat=True)) == {
        "read"
    }
    assert AnalyticsEvent.objects.filter(kind="status_changed").count() == 8 * 3
    assert PendingStatus.objects.filter(wamid__startswith="wamid.LATER").count() == 4 * 3
