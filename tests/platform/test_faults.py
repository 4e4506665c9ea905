"""Faults injected into real processes: a supervised child killed, SQS's queues deleted under a
publisher and a running worker, and a broker that accepts connections and never answers."""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest

import devstack.stack as stack
from core.aws import sqs_client
from core.queues import QUEUES, queues_ensure, task_publish
from devstack.stack import BASE_DIR, Kept, restart_delay, stop_process
from messaging.inbound import events as inbound_events
from messaging.models import InboundEvent
from tests.messaging.webhook_helpers import WEBHOOK_URL, celery_publishing_to, sign, text_body
from tests.platform.conftest import broker_connection, receive_all, wait_for, worker_running
from tests.platform.e2e_tasks import e2e_add
from tests.waiting import wait_until

pytestmark = pytest.mark.fault


# -- the supervisor ------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_supervisor_starts_a_killed_child_again_with_backoff_and_stops_only_when_asked(tmp_path):
    log_path = tmp_path / "supervisor.log"

    def pid_of(name: str) -> int | None:
        path = tmp_path / f"{name}.pid"
        return int(path.read_text()) if path.exists() else None

    def log() -> str:
        return log_path.read_text(errors="replace")

    def restarted(name: str, old: int) -> int | None:
        pid = pid_of(name)
        return pid if pid not in (None, old) else None

    with log_path.open("wb") as output:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tests.platform.supervised", str(tmp_path), "worker", "web"],
            cwd=BASE_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        first = wait_until(lambda: pid_of("worker"), timeout=30, message=lambda: f"the worker; log:\n{log()}")
        web = wait_until(lambda: pid_of("web"), timeout=30, message=lambda: f"web; log:\n{log()}")

        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: restarted("worker", first), timeout=30, message=lambda: log())
        os.kill(second, signal.SIGKILL)
        third = wait_until(lambda: restarted("worker", second), timeout=30, message=lambda: log())

        assert "worker exited with -9; starting it again in 1 s" in log()
        assert "worker exited with -9; starting it again in 2 s" in log()  # a second death in a row
        assert log().count("worker started again") == 2
        assert alive(third) and alive(web) and pid_of("web") == web  # the others run on
        assert supervisor.poll() is None  # a death stops nothing

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        assert not alive(third) and not alive(web)
    finally:
        stop_process(supervisor, grace_s=5)


def test_restarts_wait_longer_after_each_death_in_a_row_and_a_minute_of_health_forgets_them(monkeypatch):
    assert [restart_delay(deaths) for deaths in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(stack, "time", SimpleNamespace(monotonic=lambda: clock.now))
    monkeypatch.setattr(stack, "log", lambda message: None)

    class StandIn:
        def __init__(self):
            self.code = None
            self.process = SimpleNamespace(poll=lambda: self.code)

        def stop(self):
            pass

    started: list[StandIn] = []
    kept = Kept("worker", lambda: started.append(StandIn()) or started[-1])

    def die_and_come_back() -> float:
        started[-1].code = -9
        kept.check()
        wait = kept.start_at - clock.now
        clock.now += wait
        kept.check()
        return wait

    assert [die_and_come_back() for _ in range(3)] == [1, 2, 4]
    clock.now += stack.HEALTHY_AFTER_S
    kept.check()  # running, and healthy for a minute
    assert die_and_come_back() == 1
    assert len(started) == 5


# -- queues lost ---------------------------------------------------------------------------------


def queues_delete(prefix: str) -> None:
    client = sqs_client()
    for url in client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
        client.delete_queue(QueueUrl=url)
    assert not client.list_queues(QueueNamePrefix=prefix).get("QueueUrls")


def redrive_target(url: str) -> str:
    attributes = sqs_client().get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    return attributes["Attributes"].get("RedrivePolicy", "")


def test_a_publish_that_finds_its_queues_gone_makes_them_again_with_their_dlqs_and_is_delivered(
    db, queue_prefix
):
    states = {state.name: state for state in queues_ensure()}
    with celery_publishing_to(queue_prefix=queue_prefix):
        assert task_publish(e2e_add, args=(1, 2), what="a sum", fallback="nobody")  # the URL is cached
        queues_delete(queue_prefix)

        assert task_publish(e2e_add, args=(3, 4), what="a sum", fallback="nobody")

    messages = receive_all(states["default"].url)
    assert len(messages) == 1  # the first went with the queue
    assert "default-dlq" in redrive_target(states["default"].url)
    assert {state.dlq_url for state in queues_ensure()} == {state.dlq_url for state in states.values()}

    queues_delete(queue_prefix)
    with broker_connection(queue_prefix) as connection:  # a process that looks the queue up afresh
        e2e_add.apply_async((5, 6), connection=connection, retry=False)
    assert len(receive_all(states["default"].url)) == 1
    assert "default-dlq" in redrive_target(states["default"].url)  # not a bare queue of kombu's


@pytest.mark.e2e
def test_a_worker_whose_queues_are_deleted_makes_them_again_and_runs_what_comes_next(
    transactional_db, queue_prefix, tmp_path
):
    queues_ensure()
    with worker_running(
        queues=list(QUEUES), queue_prefix=queue_prefix, log_path=tmp_path / "worker.log",
        include=["tests.platform.e2e_tasks"],
    ) as worker, broker_connection(queue_prefix) as connection:  # fmt: skip
        before = e2e_add.apply_async((2, 3), connection=connection)
        wait_for(before.ready, timeout_s=60, worker=worker, what="the first sum")

        queues_delete(queue_prefix)
        wait_for(
            lambda: "is missing: creating the queues again" in worker.log(),
            timeout_s=60,
            worker=worker,
            what="the worker to find its queues gone",
        )
        after = e2e_add.apply_async((4, 5), connection=connection)

        wait_for(after.ready, timeout_s=60, worker=worker, what="the sum sent after the queues were lost")
        assert (before.result, after.result) == (5, 9)
        assert worker.process.poll() is None


# -- a frozen broker -----------------------------------------------------------------------------


@pytest.fixture
def frozen_broker() -> Iterator[int]:
    """The port of a TCP server that accepts connections and never answers: SQS frozen."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def test_a_frozen_broker_does_not_hold_up_webhooks_and_the_next_ones_skip_it(
    live_server, frozen_broker, monkeypatch, caplog
):
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    caplog.set_level(logging.INFO, logger="messaging.inbound.events")
    bodies = [text_body(wamid=f"wamid.frozen.{index}", text=f"message {index}") for index in range(3)]
    broker_url = f"sqs://testing:testing@127.0.0.1:{frozen_broker}"

    with (
        celery_publishing_to(queue_prefix="wharf-test-frozen-", broker_url=broker_url),
        httpx.Client(base_url=live_server.url, timeout=10) as http,  # a hang fails the test
    ):
        answers = [
            http.post(WEBHOOK_URL, content=body, headers={"X-Hub-Signature-256": sign(body)})
            for body in bodies
        ]

    assert [answer.status_code for answer in answers] == [200] * 3
    stored = InboundEvent.objects.filter(state=InboundEvent.State.PENDING)  # for the sweeper's drain
    assert sorted(
        event.payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] for event in stored
    ) == [f"wamid.frozen.{index}" for index in range(3)]
    assert caplog.text.count("could not enqueue an inbound drain (wake)") == 1  # it timed out
    assert caplog.text.count("SQS failed moments ago") == 2  # the others did not wait on it
