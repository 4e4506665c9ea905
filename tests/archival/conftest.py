import gzip
import json
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from core.aws import storage_ensure_bucket
from core.storage import archive_storage
from messaging.models import AnalyticsEvent, Message, SendAttempt
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory
from tests.platform.conftest import queue_prefix  # noqa: F401 - a fixture for the e2e test


@pytest.fixture(autouse=True)
def one_worker(settings):
    """A test's rows are in its own transaction, which other connections do not see: one day at a
    time, on the test's connection (test_parallel runs days in parallel on committed rows)."""
    settings.ARCHIVE_WORKERS = 1


@pytest.fixture(scope="session")
def bucket():
    storage_ensure_bucket()
    return settings.AWS_STORAGE_BUCKET_NAME


@pytest.fixture
def archive_prefix(settings, bucket) -> str:
    """An archive prefix of the test's own in the session's bucket."""
    settings.ARCHIVE_PREFIX = f"archive-{timezone.now():%H%M%S%f}/"
    return settings.ARCHIVE_PREFIX


def days_ago(days: int, hour: int = 12) -> datetime:
    today = timezone.now().astimezone(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


@pytest.fixture
def old_messages(db):
    """Messages over three days beyond 90 days, with send attempts, a reply, an analytics row; and
    two recent ones that stay."""
    contacts = [ContactFactory(), ContactFactory()]
    sender = PhoneNumberFactory()
    made = []
    for days in (95, 95, 93, 91):
        for contact in contacts:
            made.append(
                MessageFactory(
                    contact=contact,
                    phone_number=sender,
                    timestamp=days_ago(days, hour=len(made) % 20),
                    payload={"text": {"body": f"hello {len(made)}"}, "nested": [1, "ü", None]},
                    text=f'line one\nline "two" \\ {len(made)} \u2603',
                )
            )
    outbound = MessageFactory(
        contact=contacts[0],
        phone_number=sender,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.FAILED,
        timestamp=days_ago(94),
        context_wamid=made[0].wamid,
        error_code=131026,
        error_title="Message undeliverable",
        error_details="details",
        media_key="whatsapp-media/x/y.jpg",
        media_state=Message.MediaState.STORED,
        media_size=123,
        sent_at=days_ago(94),
        failed_at=days_ago(94, hour=13),
        attempts=2,
    )
    for number in range(2):
        SendAttempt.objects.create(
            message=outbound,
            started_at=days_ago(94),
            finished_at=days_ago(94),
            http_status=500 if number == 0 else 400,
            error_code=131000 if number == 0 else 131026,
            outcome=SendAttempt.Outcome.RETRY if number == 0 else SendAttempt.Outcome.FAILED,
            latency_ms=30,
        )
    AnalyticsEvent.objects.create(
        kind=AnalyticsEvent.Kind.STATUS_CHANGED,
        wamid=outbound.wamid,
        status="failed",
        message=outbound,
        occurred_at=days_ago(94),
    )
    made.append(outbound)
    recent = [MessageFactory(contact=contacts[0], timestamp=days_ago(days)) for days in (1, 89)]
    return {"old": made, "recent": recent, "contacts": contacts}


def archive_objects(prefix: str) -> dict[str, list[dict]]:
    """Every message archive object under `prefix`, as its records."""
    objects = {}
    for key in storage_walk(archive_storage(), f"{prefix}messages"):
        with archive_storage().open(key) as file:
            objects[key] = [json.loads(line) for line in gzip.decompress(file.read()).splitlines()]
    return objects


def storage_walk(storage, folder: str) -> Iterator[str]:
    """The names of every file under `folder`, at any depth."""
    folders, files = storage.listdir(folder)
    for name in files:
        yield f"{folder}/{name}"
    for name in folders:
        yield from storage_walk(storage, f"{folder}/{name}")


def archived_wamids_of(prefix: str) -> Counter:
    """How many times each wamid is in the archive objects under `prefix`."""
    return Counter(record["wamid"] for records in archive_objects(prefix).values() for record in records)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
