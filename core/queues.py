"""The Celery queues on SQS, each with its dead-letter queue and redrive policy.

A task that fails is rejected, not acked (`task_acks_late`, `task_acks_on_failure_or_timeout =
False`), and kombu's SQS transport leaves a rejected message in a queue that has a redrive policy.
SQS delivers it again once its visibility timeout expires and, at the first receive after the
`max_receive_count`-th, moves it to `<name>-dlq` with its body, message id and enqueue time intact:
a task that keeps failing runs `max_receive_count` times, one visibility timeout apart. (Celery's
own retries publish a new message each time, and each of those starts its count afresh.)

Dead letters are read, replayed and deleted here (`manage.py dlq`, and the admin's Core > Dead
letters through core/deadletters.py, which audits them). SQS has no peek: reading receives the
messages, holds them invisible while the page is gathered, then makes them visible again; a reader
that dies leaves them invisible only until `PEEK_HOLD_S` passes. A replay sends each message to its
source queue before it deletes it from the dead-letter queue, so an interrupted replay can leave a
message in both, never in neither; tasks are idempotent, so the copy is harmless.
"""

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from core.aws import sqs_client

logger = logging.getLogger(__name__)


def task_publish(
    task,
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    countdown: float | None = None,
    what: str,
    fallback: str,
) -> bool:
    """Publish `task` once, without the broker client's retries, so that no request or worker waits
    on SQS; on failure log a warning naming `what` and who picks it up instead, and return False.
    Callers publish after commit; the rows they publish for are the record, so nothing is lost."""
    try:
        task.apply_async(args, kwargs, countdown=countdown, retry=False)
    except Exception as error:
        logger.warning("could not enqueue %s; %s will: %s: %s", what, fallback, type(error).__name__, error)
        return False
    return True


LONG_POLL_S = 20  # ReceiveMessageWaitTimeSeconds of the work queues: the SQS maximum
DLQ_RETENTION_S = 14 * 24 * 3600  # the SQS maximum; the source queues keep the 4-day default
PEEK_HOLD_S = 30  # how long a listing or a replay holds the messages it has received
_RECEIVE_WAIT_S = 1  # a long poll asks every SQS server, so a small queue is not reported empty


@dataclass(frozen=True)
class QueueSpec:
    name: str
    visibility_timeout: int  # seconds; longer than the slowest task on the queue
    max_receive_count: int = 5  # receives before SQS moves a message to the DLQ

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"


QUEUES: dict[str, QueueSpec] = {
    spec.name: spec
    for spec in (
        QueueSpec("incoming", visibility_timeout=120),
        QueueSpec("outgoing", visibility_timeout=120),
        QueueSpec("analytics", visibility_timeout=120),  # the dashboard's daily counters (dashboard/tasks.py)
        QueueSpec("archival", visibility_timeout=1800, max_receive_count=3),
        QueueSpec("default", visibility_timeout=300),
    )
}


class QueueError(Exception):
    """A queue that is not one of QUEUES, or one that does not exist in SQS yet."""


@dataclass(frozen=True)
class QueueState:
    """A queue and its dead-letter queue as SQS holds them."""

    name: str  # the Celery queue, e.g. "default"
    sqs_name: str  # with SQS_QUEUE_PREFIX
    url: str
    dlq_sqs_name: str
    dlq_url: str
    dlq_arn: str
    max_receive_count: int
    visibility_timeout: int


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue, with the Celery task it carries when it carries one."""

    message_id: str
    task: str | None
    task_id: str | None
    args: list | None
    kwargs: dict | None
    argsrepr: str  # what the producer chose to show (Celery's argsrepr/kwargsrepr headers)
    receive_count: int  # every receive: the source queue's, then each listing's own
    first_seen: datetime | None


def sqs_queue_name(name: str) -> str:
    return f"{settings.SQS_QUEUE_PREFIX}{name}"


def queue_spec(name: str) -> QueueSpec:
    try:
        return QUEUES[name]
    except KeyError:
        raise QueueError(f"unknown queue {name!r}; the queues are: {', '.join(QUEUES)}") from None


def queues_ensure(
    *, visibility_timeout_override: int | None = None, prefix: str | None = None
) -> list[QueueState]:
    """Create every queue and its DLQ, or set their attributes again so a changed spec converges.

    The queues are created without attributes, because CreateQueue fails on an existing queue
    whose attributes differ, and then given them with SetQueueAttributes. The override shortens
    every visibility timeout, so that tests and development see redeliveries within seconds.
    `prefix` replaces SQS_QUEUE_PREFIX: the broker connection's own, when it makes lost queues again.
    """
    client = sqs_client()
    states = []
    prefix = settings.SQS_QUEUE_PREFIX if prefix is None else prefix
    for spec in QUEUES.values():
        dlq_sqs_name = f"{prefix}{spec.dlq_name}"
        dlq_url = client.create_queue(QueueName=dlq_sqs_name)["QueueUrl"]
        client.set_queue_attributes(
            QueueUrl=dlq_url, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
        )
        dlq_attributes = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        dlq_arn = dlq_attributes["Attributes"]["QueueArn"]
        visibility_timeout = (
            spec.visibility_timeout if visibility_timeout_override is None else visibility_timeout_override
        )
        sqs_name = f"{prefix}{spec.name}"
        url = client.create_queue(QueueName=sqs_name)["QueueUrl"]
        client.set_queue_attributes(
            QueueUrl=url,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_S),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count}
                ),
            },
        )
        states.append(
            QueueState(
                name=spec.name,
                sqs_name=sqs_name,
                url=url,
                dlq_sqs_name=dlq_sqs_name,
                dlq_url=dlq_url,
                dlq_arn=dlq_arn,
                max_receive_count=spec.max_receive_count,
                visibility_timeout=visibility_timeout,
            )
        )
    return states


_DEPTH_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")


def dead_letter_depths() -> dict[str, int]:
    """How many messages each dead-letter queue holds, visible or held by a reader, by the name of
    its source queue. Raises QueueError when one does not exist."""
    client = sqs_client()
    depths = {}
    for spec in QUEUES.values():
        url = _queue_url(client, sqs_queue_name(spec.dlq_name))
        attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTH_ATTRIBUTES))
        depths[spec.name] = sum(int(attributes["Attributes"].get(name, 0)) for name in _DEPTH_ATTRIBUTES)
    return depths


def dlq_list(*, queue: str, limit: int) -> list[DeadLetter]:
    """Up to `limit` dead letters of `queue` (the source queue's name, e.g. "default").

    They are sorted by when they were first seen; SQS hands them out in no particular order.
    """
    spec = queue_spec(queue)
    client = sqs_client()
    dlq_url = _queue_url(client, sqs_queue_name(spec.dlq_name))
    held: dict[str, dict] = {}
    try:
        while len(held) < limit:
            messages = _receive(client, dlq_url, count=limit - len(held))
            seen = len(held)
            held.update((message["MessageId"], message) for message in messages)
            if len(held) == seen:  # empty, or only messages whose hold has run out
                break
    finally:
        _release(client, dlq_url, held.values())
    letters = [_dead_letter(message) for message in list(held.values())[:limit]]
    return sorted(letters, key=lambda letter: letter.first_seen or datetime.max.replace(tzinfo=UTC))


def dlq_replay(*, queue: str, message_ids: set[str] | None = None, limit: int | None = None) -> int:
    """Move the dead letters of `queue` back to it: all, those in `message_ids`, or `limit` of them.

    Each message is sent to the source queue with its body unchanged, then deleted from the DLQ.
    Returns how many were moved.
    """
    spec = queue_spec(queue)
    client = sqs_client()
    source_url = _queue_url(client, sqs_queue_name(spec.name))

    def replay(message: dict) -> None:
        send = {"QueueUrl": source_url, "MessageBody": message["Body"]}
        if message.get("MessageAttributes"):
            send["MessageAttributes"] = message["MessageAttributes"]
        client.send_message(**send)

    replayed = _dlq_take(client, spec, message_ids=message_ids, limit=limit, act=replay)
    logger.info("replayed %d dead letter(s) to %s", replayed, sqs_queue_name(spec.name))
    return replayed


def dlq_delete(*, queue: str, message_ids: set[str]) -> int:
    """Delete the dead letters of `queue` in `message_ids` for good; returns how many were deleted."""
    spec = queue_spec(queue)
    deleted = _dlq_take(sqs_client(), spec, message_ids=message_ids, limit=None, act=lambda message: None)
    logger.info("deleted %d dead letter(s) from %s", deleted, sqs_queue_name(spec.dlq_name))
    return deleted


def _dlq_take(
    client, spec: QueueSpec, *, message_ids: set[str] | None, limit: int | None, act: Callable[[dict], None]
) -> int:
    """Receive the DLQ's messages and, for each chosen one (all, those in `message_ids`, at most
    `limit`), `act` on it and then delete it; the others are made visible again. Returns how many."""
    dlq_url = _queue_url(client, sqs_queue_name(spec.dlq_name))
    wanted = set(message_ids) if message_ids is not None else None
    skipped: dict[str, dict] = {}  # received but not chosen: made visible again at the end
    taken = 0

    def more() -> bool:
        return (limit is None or taken < limit) and (wanted is None or bool(wanted))

    try:
        while more():
            messages = _receive(client, dlq_url, count=10 if limit is None else limit - taken)
            if not messages:
                break
            fresh = 0
            for message in messages:
                message_id = message["MessageId"]
                fresh += message_id not in skipped
                if not more() or (wanted is not None and message_id not in wanted):
                    skipped[message_id] = message
                    continue
                act(message)
                client.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                taken += 1
                if wanted is not None:
                    wanted.discard(message_id)
            if not fresh:  # only messages whose hold has run out: the queue has been read through
                break
    finally:
        _release(client, dlq_url, skipped.values())
    return taken


# -- SQS calls ----------------------------------------------------------------------------------


def _queue_url(client, sqs_name: str) -> str:
    try:
        return client.get_queue_url(QueueName=sqs_name)["QueueUrl"]
    except client.exceptions.QueueDoesNotExist:
        raise QueueError(f"SQS queue {sqs_name} does not exist; run manage.py queues_setup") from None


def _receive(client, url: str, *, count: int) -> list[dict]:
    response = client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max(1, min(count, 10)),
        VisibilityTimeout=PEEK_HOLD_S,
        WaitTimeSeconds=_RECEIVE_WAIT_S,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return response.get("Messages", [])


def _release(client, url: str, messages) -> None:
    """Make received messages visible again at once, ten per call."""
    entries = [
        {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
        for index, message in enumerate(messages)
    ]
    for start in range(0, len(entries), 10):
        response = client.change_message_visibility_batch(QueueUrl=url, Entries=entries[start : start + 10])
        for failure in response.get("Failed", []):
            logger.warning("could not release a message in %s: %s", url, failure.get("Code"))


# -- kombu's envelope ---------------------------------------------------------------------------


def _dead_letter(message: dict) -> DeadLetter:
    attributes = message.get("Attributes", {})
    first_seen_ms = attributes.get("ApproximateFirstReceiveTimestamp") or attributes.get("SentTimestamp")
    envelope = _json_dict(message["Body"])
    headers = envelope.get("headers") or {}
    payload = _task_payload(envelope)
    args = kwargs = None
    if isinstance(payload, list) and len(payload) >= 2:  # Celery's protocol 2: [args, kwargs, embed]
        args, kwargs = payload[0], payload[1]
    elif isinstance(payload, dict):  # protocol 1: the whole request in the body
        args, kwargs = payload.get("args"), payload.get("kwargs")
        headers = {"task": payload.get("task"), "id": payload.get("id"), **headers}
    return DeadLetter(
        message_id=message["MessageId"],
        task=headers.get("task"),
        task_id=headers.get("id"),
        args=args,
        kwargs=kwargs,
        argsrepr=_argsrepr(headers, args, kwargs),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        first_seen=datetime.fromtimestamp(int(first_seen_ms) / 1000, tz=UTC) if first_seen_ms else None,
    )


def _json_dict(text: str) -> dict:
    """kombu's envelope: JSON, base64-encoded unless the transport's sqs_base64_encoding is off."""
    for candidate in (text, _b64decode(text)):
        if candidate is None:
            continue
        try:
            data = json.loads(candidate)
        except (ValueError, TypeError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def _task_payload(envelope: dict) -> Any:
    body = envelope.get("body")
    if not isinstance(body, str):
        return None
    if (envelope.get("properties") or {}).get("body_encoding") == "base64":
        body = _b64decode(body)
    if body is None or "json" not in (envelope.get("content-type") or ""):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _b64decode(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, ValueError):
        return None


def _argsrepr(headers: dict, args: list | None, kwargs: dict | None) -> str:
    shown_args = headers.get("argsrepr")
    if shown_args is None:
        shown_args = json.dumps(args) if args is not None else "?"
    shown_kwargs = headers.get("kwargsrepr")
    if shown_kwargs is None:
        shown_kwargs = json.dumps(kwargs) if kwargs else ""
    return shown_args if shown_kwargs in ("", "{}") else f"{shown_args} {shown_kwargs}"
