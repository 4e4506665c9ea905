"""The database stopped under real processes: gunicorn answering Meta's webhooks and a Celery worker
draining inbound events, both reaching PostgreSQL through a TCP proxy that the test cuts (every
connection closed, new ones refused) and opens again. Meta must be told to retry, its redelivery
stored and processed once, the operator's readiness probe must name the database, and the events a
worker held when the database went away must end processed once."""

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction

from contacts.models import Contact
from core.queues import queues_ensure
from devstack.stack import BASE_DIR, free_port, stop_process, wait_answering
from messaging.inbound import events as inbound_events
from messaging.models import InboundEvent, Message
from tests.messaging.webhook_helpers import WEBHOOK_URL, celery_publishing_to, sign, text_body, webhook_post
from tests.platform.conftest import database_url, wait_for, worker_running
from tests.waiting import lock_waiter, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.e2e]


# -- a database that can be stopped ---------------------------------------------------------------


@dataclass
class DatabaseProxy:
    """A TCP proxy in front of the test's PostgreSQL. `stop()` closes every proxied connection and
    refuses new ones, as a stopped server does; `start()` lets connections through again."""

    target: tuple[str, int] | str  # (host, port), or the path of PostgreSQL's Unix socket
    server: socket.socket = field(init=False)
    up: threading.Event = field(default_factory=threading.Event)
    closing: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    links: list[tuple[socket.socket, socket.socket, list[threading.Thread]]] = field(default_factory=list)
    accepted: int = 0

    def __post_init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.up.set()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def _upstream(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            return upstream
        return socket.create_connection(self.target)

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            if not self.up.is_set():
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # a reset, as from a port nothing listens on
                continue
            upstream = self._upstream()
            pumps = [
                threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
                threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
            ]
            with self.lock:
                self.links.append((client, upstream, pumps))
                self.accepted += 1
            for pump in pumps:
                pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.up.clear()
        with self.lock:
            links, self.links = self.links, []
        for client, upstream, pumps in links:
            for end in (client, upstream):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            for pump in pumps:
                pump.join(timeout=10)
            client.close()
            upstream.close()

    def start(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.stop()
        self.closing.set()
        self.thread.join()
        self.server.close()


@pytest.fixture
def database_proxy(transactional_db) -> Iterator[DatabaseProxy]:
    database = settings.DATABASES["default"]
    host, port = database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
    proxy = DatabaseProxy(f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
    try:
        yield proxy
    finally:
        proxy.close()


def through(proxy: DatabaseProxy) -> str:
    """DATABASE_URL of the test database, reached through the proxy."""
    return database_url({**settings.DATABASES["default"], "HOST": "127.0.0.1", "PORT": proxy.port})


@pytest.fixture
def queue_prefix(settings, monkeypatch) -> Iterator[str]:
    """Queues of the test's own, where this process's webhooks wake the worker; a failed drain's
    message comes back after 10 s."""
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    queues_ensure(visibility_timeout_override=10)
    with celery_publishing_to(queue_prefix=prefix):
        yield prefix


@dataclass
class Web:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def web_running(*, database: str, queue_prefix: str, log_path: Path) -> Iterator[Web]:
    """gunicorn with the production settings module, one worker, on a port of its own."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database,
        "SQS_QUEUE_PREFIX": queue_prefix,
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"), "config.wsgi",
                "--config", "python:config.gunicorn", "--bind", f"127.0.0.1:{port}",
            ],
            cwd=BASE_DIR,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_answering(process, f"{url}/healthz", name="gunicorn")
        yield Web(url, process, log_path)
    finally:
        stop_process(process, grace_s=10)


def wamids_of(events) -> list[str]:
    return sorted(event.payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] for event in events)


def processed_once(wamids: list[str]) -> bool:
    events = InboundEvent.objects.order_by("id")
    return (
        wamids_of(events) == sorted(wamids)
        and all(event.state == InboundEvent.State.PROCESSED for event in events)
        and sorted(Message.objects.values_list("wamid", flat=True)) == sorted(wamids)
    )


# -- the webhook ----------------------------------------------------------------------------------


def test_webhooks_while_the_database_is_down_are_refused_with_a_503_so_meta_retries_and_each_is_kept_once(
    database_proxy, queue_prefix, tmp_path
):
    call_command("storage_setup")
    bodies = {name: text_body(wamid=f"wamid.dbdown.{name}", text=f"message {name}") for name in "abc"}
    wamids = [f"wamid.dbdown.{name}" for name in "abc"]

    def deliver(http: httpx.Client, name: str) -> httpx.Response:
        body = bodies[name]
        return http.post(
            WEBHOOK_URL,
            content=body,
            headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
        )

    with (
        web_running(
            database=through(database_proxy), queue_prefix=queue_prefix, log_path=tmp_path / "web.log"
        ) as web,
        worker_running(
            queues=["incoming"],
            queue_prefix=queue_prefix,
            log_path=tmp_path / "worker.log",
            env={"DATABASE_URL": through(database_proxy)},
        ) as worker,
        httpx.Client(base_url=web.url, timeout=20) as http,
    ):
        assert deliver(http, "a").status_code == 200
        wait_for(lambda: processed_once(wamids[:1]), timeout_s=60, worker=worker, what="the first message")

        database_proxy.stop()
        refused = [deliver(http, name) for name in "bc"]

        assert [answer.status_code for answer in refused] == [503, 503], web.log()[-4000:]
        assert {answer.headers["Content-Type"] for answer in refused} == {"application/json"}
        assert {answer.headers["Retry-After"] for answer in refused} == {"60"}
        assert [answer.json() for answer in refused] == [
            {"error": "The database is unavailable; deliver this again later."}
        ] * 2
        assert web.log().count("webhook delivery not stored: the database is unavailable") == 2
        ready = wait_until(
            lambda: (answer := http.get("/readyz")).status_code == 503 and answer.json(),
            timeout=30,
            message="/readyz to report the database",
        )
        assert ready["failing"] == ["database"]
        assert ready["database"].startswith("unavailable: ")

        database_proxy.start()
        wait_until(lambda: http.get("/readyz").status_code == 200, timeout=30, message="/readyz ready again")
        redelivered = [deliver(http, name) for name in ("b", "c", "b", "a")]  # Meta's retries, twice
        assert [answer.status_code for answer in redelivered] == [200] * 4

        wait_for(lambda: processed_once(wamids), timeout_s=90, worker=worker, what="every message")
        assert web.process.poll() is None and worker.process.poll() is None

    assert InboundEvent.objects.count() == 3
    assert Message.objects.count() == 3
    assert "Traceback" not in web.log()


# -- a worker -------------------------------------------------------------------------------------


def test_a_worker_that_loses_the_database_mid_batch_processes_every_event_once_when_it_is_back(
    database_proxy, queue_prefix, tmp_path, client
):
    blocker = Contact.objects.create(wa_id="447700900999", name="Held")
    names = [f"447700900{index:03d}" for index in range(100, 110)]
    senders = [*names[:5], blocker.wa_id, *names[5:]]  # the sixth event waits on the held contact
    bodies = [
        text_body(wamid=f"wamid.worker.{index}", text=f"message {index}", wa_id=wa_id)
        for index, wa_id in enumerate(senders)
    ]
    wamids = [f"wamid.worker.{index}" for index in range(len(bodies))]
    first = text_body(wamid="wamid.worker.first", text="before", wa_id="447700900001")

    with worker_running(
        queues=["incoming"],
        queue_prefix=queue_prefix,
        log_path=tmp_path / "worker.log",
        env={"DATABASE_URL": through(database_proxy)},
    ) as worker:
        assert webhook_post(client, first).status_code == 200
        wait_for(
            lambda: processed_once(["wamid.worker.first"]), timeout_s=60, worker=worker, what="the first"
        )

        with psycopg.connect(database_url(settings.DATABASES["default"])) as holder:  # another session
            holder.execute("SELECT 1 FROM contacts_contact WHERE id = %s FOR UPDATE", [blocker.pk])
            with transaction.atomic():  # committed together: one wake, one batch
                answers = [webhook_post(client, body).status_code for body in bodies]
            assert answers == [200] * len(bodies)
            lock_waiter(timeout=60)
            database_proxy.stop()  # mid-batch: five events applied, none committed
        wait_for(
            lambda: "OperationalError" in worker.log(),
            timeout_s=60,
            worker=worker,
            what="the drain to fail on the lost connection",
        )
        assert InboundEvent.objects.filter(state=InboundEvent.State.PROCESSED).count() == 1
        assert Message.objects.count() == 1

        database_proxy.start()  # the failed drain's message comes back after its visibility timeout
        wait_for(
            lambda: processed_once(["wamid.worker.first", *wamids]),
            timeout_s=90,
            worker=worker,
            what="every event, after the database came back",
        )
        assert worker.process.poll() is None

    assert Message.objects.count() == len(wamids) + 1
    assert not InboundEvent.objects.filter(attempts__gt=0).exists()  # the outage was no event's fault
