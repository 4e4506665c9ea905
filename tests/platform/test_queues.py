import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from config.queues import (
    DLQ_RETENTION_S,
    LONG_POLL_S,
    QUEUES,
    QueueError,
    dlq_list,
    dlq_replay,
    queues_ensure,
)
from core.aws import sqs_client
from tests.platform.conftest import receive_all

TASK = "messaging.tasks.message_send_task"


def attributes(url: str) -> dict[str, str]:
    return sqs_client().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_queues_ensure_gives_every_queue_a_dlq_and_a_redrive_policy(queue_prefix):
    states = queues_ensure()

    assert [state.name for state in states] == list(QUEUES)
    for state in states:
        assert state.sqs_name == f"{queue_prefix}{state.name}"
        assert state.dlq_sqs_name == f"{queue_prefix}{state.name}-dlq"
        source, dlq = attributes(state.url), attributes(state.dlq_url)
        policy = json.loads(source["RedrivePolicy"])
        assert policy["deadLetterTargetArn"] == dlq["QueueArn"] == state.dlq_arn
        assert int(policy["maxReceiveCount"]) == (3 if state.name == "archival" else 5)
        assert source["VisibilityTimeout"] == str(QUEUES[state.name].visibility_timeout)
        assert source["ReceiveMessageWaitTimeSeconds"] == str(LONG_POLL_S)
        assert dlq["MessageRetentionPeriod"] == str(DLQ_RETENTION_S)
        assert "RedrivePolicy" not in dlq


def test_queues_ensure_is_idempotent_and_converges_on_the_spec(queue_prefix):
    # given a queue created by someone else (kombu creates missing queues) with other attributes
    sqs_client().create_queue(QueueName=f"{queue_prefix}default", Attributes={"VisibilityTimeout": "30"})

    first = queues_ensure()
    shortened = queues_ensure(visibility_timeout_override=2)
    shortened_timeouts = {attributes(state.url)["VisibilityTimeout"] for state in shortened}
    again = queues_ensure()

    assert (
        [state.url for state in first] == [state.url for state in shortened] == [state.url for state in again]
    )
    assert {state.visibility_timeout for state in shortened} == {2}
    assert shortened_timeouts == {"2"}
    default = next(state for state in again if state.name == "default")
    assert attributes(default.url)["VisibilityTimeout"] == "300"
    assert json.loads(attributes(default.url)["RedrivePolicy"])["deadLetterTargetArn"] == default.dlq_arn
    prefixed = sqs_client().list_queues(QueueNamePrefix=queue_prefix)["QueueUrls"]
    assert len(prefixed) == 2 * len(QUEUES)


def test_dlq_list_decodes_celery_messages_and_leaves_them_in_the_queue(dead_letter_put):
    first = dead_letter_put(TASK, [41], {"force": True})
    second = dead_letter_put("archival.tasks.archive_run_task", [], queue="archival")

    letters = dlq_list(queue="default", limit=10)

    assert len(letters) == 1
    (letter,) = letters
    assert letter.message_id == first.message_id
    assert letter.task == TASK
    assert letter.task_id == first.task_id
    assert letter.args == [41]
    assert letter.kwargs == {"force": True}
    assert letter.argsrepr == "[41] {'force': True}"
    assert letter.receive_count == 1  # this listing's own receive
    assert abs(letter.first_seen - datetime.now(UTC)) < timedelta(minutes=1)
    # not consumed: visible again at once, to the next listing
    assert [letter.message_id for letter in dlq_list(queue="default", limit=10)] == [first.message_id]
    assert [letter.message_id for letter in dlq_list(queue="archival", limit=10)] == [second.message_id]


def test_dlq_list_reads_past_ten_messages_up_to_its_limit(dead_letter_put):
    ids = {dead_letter_put(TASK, [n]).message_id for n in range(12)}

    assert {letter.message_id for letter in dlq_list(queue="default", limit=50)} == ids
    assert len(dlq_list(queue="default", limit=11)) == 11
    assert len(dlq_list(queue="default", limit=50)) == 12


def test_dlq_list_shows_a_message_that_is_not_celerys(queues):
    body = base64.b64encode(b"not json").decode()
    message_id = sqs_client().send_message(QueueUrl=queues["default"].dlq_url, MessageBody=body)["MessageId"]

    (letter,) = dlq_list(queue="default", limit=10)

    assert (letter.message_id, letter.task, letter.args, letter.argsrepr) == (message_id, None, None, "?")


def test_dlq_replay_by_id_moves_those_messages_back_with_their_bodies_unchanged(queues, dead_letter_put):
    letters = [dead_letter_put(TASK, [n]) for n in range(3)]

    replayed = dlq_replay(
        queue="default", message_ids={letters[0].message_id, letters[2].message_id, "no-id"}
    )

    assert replayed == 2
    assert [letter.message_id for letter in dlq_list(queue="default", limit=10)] == [letters[1].message_id]
    returned = receive_all(queues["default"].url)
    assert sorted(message["Body"] for message in returned) == sorted([letters[0].body, letters[2].body])


def test_dlq_replay_all_and_with_a_limit(queues, dead_letter_put):
    for n in range(13):
        dead_letter_put(TASK, [n])

    assert dlq_replay(queue="default", limit=4) == 4
    assert len(dlq_list(queue="default", limit=50)) == 9
    assert dlq_replay(queue="default") == 9
    assert dlq_list(queue="default", limit=50) == []
    returned = receive_all(queues["default"].url)
    assert sorted(
        json.loads(base64.b64decode(message["Body"]))["headers"]["argsrepr"] for message in returned
    ) == (sorted(f"[{n}]" for n in range(13)))


def test_dlq_replay_of_unknown_ids_leaves_the_queue_as_it_was(dead_letter_put):
    message_id = dead_letter_put(TASK, [1]).message_id

    assert dlq_replay(queue="default", message_ids={"no-such-id"}) == 0
    assert dlq_replay(queue="default", message_ids=set()) == 0
    assert [letter.message_id for letter in dlq_list(queue="default", limit=10)] == [message_id]


def test_unknown_and_missing_queues_are_named(queue_prefix):
    with pytest.raises(QueueError, match="unknown queue 'nope'"):
        dlq_list(queue="nope", limit=10)
    with pytest.raises(QueueError, match="unknown queue 'default-dlq'"):
        dlq_replay(queue="default-dlq")
    with pytest.raises(
        QueueError, match=f"{queue_prefix}default-dlq does not exist; run manage.py queues_setup"
    ):
        dlq_list(queue="default", limit=10)
