import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from config.queues import dlq_list
from core.aws import sqs_client

TASK = "messaging.tasks.message_send_task"


def run(*args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(*args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_queues_setup_prints_each_queue_with_its_dlq_and_max_receive_count(queue_prefix):
    out, _ = run("queues_setup")

    lines = out.splitlines()
    assert len(lines) == 5
    assert lines[3].split() == [
        f"{queue_prefix}archival",
        "dead", "letters", "to", f"{queue_prefix}archival-dlq", "after", "3", "receives,",
        "visibility", "timeout", "1800", "s",
    ]  # fmt: skip
    assert f"{queue_prefix}default-dlq after 5 receives, visibility timeout 300 s" in lines[4]


def test_queues_setup_visibility_timeout_option(queue_prefix):
    out, _ = run("queues_setup", "--visibility-timeout", "2")

    assert out.count("visibility timeout 2 s") == 5
    url = sqs_client().get_queue_url(QueueName=f"{queue_prefix}incoming")["QueueUrl"]
    attributes = sqs_client().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "2"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 5


def test_dlq_list_prints_a_table(dead_letter_put, queue_prefix):
    first = dead_letter_put(TASK, [7, "hello"])
    second = dead_letter_put(TASK, ["x" * 100], {"retry": False})

    out, _ = run("dlq", "list", "default")

    header, *rows, total = out.splitlines()
    assert header.split() == ["MESSAGE", "ID", "TASK", "ARGS", "RECEIVES", "FIRST", "SEEN", "(UTC)"]
    assert len(rows) == 2
    assert rows[0].startswith(first.message_id)
    assert f"{TASK}  [7, 'hello']" in rows[0]
    assert rows[1].startswith(second.message_id)
    assert "['xxxxx" in rows[1] and "…" in rows[1] and "retry" not in rows[1]  # long arguments are cut
    assert total == f"2 dead letter(s) in {queue_prefix}default-dlq"


def test_dlq_list_says_when_it_stopped_at_the_limit(dead_letter_put, queue_prefix):
    for n in range(3):
        dead_letter_put(TASK, [n])

    out, _ = run("dlq", "list", "default", "--limit", "2")

    assert (
        out.splitlines()[-1]
        == f"2 dead letter(s) in {queue_prefix}default-dlq (the limit; there may be more)"
    )


def test_dlq_list_of_an_empty_dlq(queues, queue_prefix):
    out, _ = run("dlq", "list", "outgoing")

    assert out == f"no dead letters in {queue_prefix}outgoing-dlq\n"


def test_dlq_replay_by_id_then_all(dead_letter_put, queue_prefix):
    letters = [dead_letter_put(TASK, [n]) for n in range(4)]

    out, err = run("dlq", "replay", "default", "--id", letters[0].message_id, "no-such-id")
    assert out == f"replayed 1 dead letter(s) from {queue_prefix}default-dlq to {queue_prefix}default\n"
    assert err == "1 of the given message ids were not in the dead-letter queue\n"

    out, _ = run("dlq", "replay", "default", "--id", letters[1].message_id, "--id", letters[2].message_id)
    assert out.startswith("replayed 2 dead letter(s)")
    assert [letter.message_id for letter in dlq_list(queue="default", limit=10)] == [letters[3].message_id]

    out, _ = run("dlq", "replay", "default", "--all")
    assert out.startswith("replayed 1 dead letter(s)")
    assert dlq_list(queue="default", limit=10) == []


def test_dlq_replay_with_a_limit(dead_letter_put):
    for n in range(3):
        dead_letter_put(TASK, [n])

    out, _ = run("dlq", "replay", "default", "--limit", "2")

    assert out.startswith("replayed 2 dead letter(s)")
    assert len(dlq_list(queue="default", limit=10)) == 1


@pytest.mark.parametrize(
    "args",
    [("dlq", "list", "nope"), ("dlq", "replay", "nope", "--all"), ("dlq", "replay", "default-dlq", "--all")],
)
def test_dlq_names_an_unknown_queue(args, queues):
    with pytest.raises(CommandError, match=f"unknown queue '{args[2]}'; the queues are: incoming, outgoing"):
        run(*args)


def test_dlq_replay_needs_to_be_told_which(queues):
    with pytest.raises(CommandError, match="one of the arguments --all --id --limit is required"):
        run("dlq", "replay", "default")


def test_dlq_on_queues_not_set_up(queue_prefix):
    with pytest.raises(
        CommandError, match=f"{queue_prefix}default-dlq does not exist; run manage.py queues_setup"
    ):
        run("dlq", "list", "default")
