"""Read receipts and typing indicators, through the doors: the conversation page, the API and the
reply box's typing endpoint publish a task; the task tells the sandbox Graph API over HTTP, once."""

import time
from datetime import timedelta
from uuid import uuid4

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from config.celery import app as celery_app
from core.models import AuditLog
from core.queues import queues_ensure
from messaging.inbound.events import inbound_events_drain
from messaging.models import Conversation, Message
from messaging.receipts import RETRIES_MAX, TYPING_INTERVAL
from tests.factories import MessageFactory, PhoneNumberFactory, UserFactory, sandbox_received
from tests.messaging.test_conversations import body
from tests.messaging.test_outbound_send import Sandbox
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, celery_publishing_to, webhook_post
from tests.platform.conftest import wait_for, worker_running

RECEIPT_TASK = "messaging.read_receipt_send"
SEND = "messaging.add_message"


@pytest.fixture
def sandbox(settings):
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    yield sandbox
    sandbox.post("reset")


@pytest.fixture
def number(db):
    return PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Runs what the app does after commit (publishing tasks) when each block ends."""

    def block():
        return django_capture_on_commit_callbacks(execute=True)

    return block


def customer_writes(wamid: str, text: str, *, at: int | None = None) -> Message:
    """A signed webhook from Meta, applied as the `incoming` worker does (inline); the sandbox is told
    of the message, as Meta knows the messages it delivers."""
    sandbox_received(wamid)
    assert webhook_post(Client(), body(wamid, text, at=at)).status_code == 200
    inbound_events_drain()
    return Message.objects.get(wamid=wamid)


def receipts_run(broker, *, times: int = 2) -> list[tuple[list, dict]]:
    """Runs, as the `default` worker would, the receipt tasks published since the last call; each
    twice by default, as SQS may deliver it. Their (args, kwargs)."""
    ran = []
    for published in broker.published("default"):
        assert published.task == RECEIPT_TASK, published
        for _ in range(times):
            celery_app.tasks[RECEIPT_TASK].apply(args=published.args, kwargs=published.kwargs)
        ran.append((published.args, published.kwargs))
    return ran


def page_url(contact_id: int) -> str:
    return f"/admin/messaging/message/conversation/{contact_id}/"


def typing_url(contact_id: int, sender: int | str) -> str:
    return f"{page_url(contact_id)}typing/?sender={sender}"


# -- read receipts ----------------------------------------------------------------------------------


def test_opening_a_conversation_marks_the_customer_s_messages_read_with_meta_once(
    admin_client, api_client, number, sandbox, broker, committed
):
    first = customer_writes("wamid.rr-1", "Hello?")
    latest = customer_writes("wamid.rr-2", "Is anyone there?")

    with committed():
        assert admin_client.get(page_url(latest.contact_id)).status_code == 200

    assert receipts_run(broker) == [([latest.pk], {"typing": False})]
    stats = sandbox.stats()
    assert (stats["reads"], stats["read_wamids"], stats["typing_wamids"]) == (1, ["wamid.rr-2"], [])
    for message in (first, latest):
        message.refresh_from_db()
        assert message.read_at is not None  # Meta marks the earlier ones read too

    # opened again, read through the API, nothing new: nothing is sent
    conversation = Conversation.objects.get()
    api = api_client("messaging.change_conversation", "messaging.view_conversation")
    with committed():
        admin_client.get(page_url(latest.contact_id))
        assert api.post(f"/api/v1/conversations/{conversation.pk}/read/").status_code == 200
    assert receipts_run(broker) == []
    assert sandbox.stats()["reads"] == 1


def test_the_api_s_read_tells_meta_through_the_same_service(api_client, number, sandbox, broker, committed):
    client = api_client("messaging.change_conversation", "messaging.view_conversation")
    message = customer_writes("wamid.rr-api-1", "Where is my order?")
    conversation = Conversation.objects.get()

    with committed():
        answer = client.post(f"/api/v1/conversations/{conversation.pk}/read/")
    assert answer.status_code == 200, answer.json()
    assert receipts_run(broker) == [([message.pk], {"typing": False})]

    with committed():
        client.post(f"/api/v1/conversations/{conversation.pk}/read/")
    assert receipts_run(broker) == []  # nothing new

    newer = customer_writes("wamid.rr-api-2", "Hello?")
    with committed():
        client.post(f"/api/v1/conversations/{conversation.pk}/read/")
    assert receipts_run(broker) == [([newer.pk], {"typing": False})]
    assert sandbox.stats()["read_wamids"] == ["wamid.rr-api-1", "wamid.rr-api-2"]


def test_a_number_with_read_receipts_off_or_paused_sends_none(
    admin_client, number, sandbox, broker, committed
):
    answer = admin_client.get(f"/admin/messaging/phonenumber/{number.pk}/change/")
    assert "Send read receipts" in answer.text
    form = {
        "phone_number_id": number.phone_number_id,
        "display_phone_number": number.display_phone_number,
        "verified_name": number.verified_name,
        "waba_id": number.waba_id,
        "rate_limit_per_s": number.rate_limit_per_s,
        "quality_rating": "",
        "messaging_limit": "",
        # read_receipts unchecked
    }
    saved = admin_client.post(f"/admin/messaging/phonenumber/{number.pk}/change/", form)
    assert saved.status_code == 302, saved.context["adminform"].errors if saved.context else saved
    number.refresh_from_db()
    assert number.read_receipts is False

    message = customer_writes("wamid.rr-off-1", "Hello?")
    with committed():
        admin_client.get(page_url(message.contact_id))
    assert receipts_run(broker) == []

    number.read_receipts = True
    number.paused_at = timezone.now()
    number.save()
    customer_writes("wamid.rr-off-2", "Anyone?")
    with committed():
        admin_client.get(page_url(message.contact_id))
    assert receipts_run(broker) == []
    assert sandbox.stats()["reads"] == 0


def test_a_receipt_queued_before_the_number_stopped_sending_them_sends_nothing(
    admin_client, number, sandbox, broker, committed
):
    message = customer_writes("wamid.rr-late-1", "Hello?")
    with committed():
        admin_client.get(page_url(message.contact_id))
    number.read_receipts = False
    number.save()

    assert len(receipts_run(broker)) == 1
    assert sandbox.stats()["reads"] == 0
    message.refresh_from_db()
    assert message.read_at is None


def test_a_retryable_failure_is_tried_again_and_a_permanent_one_recorded_not_raised(
    admin_client, number, sandbox, broker, committed
):
    message = customer_writes("wamid.rr-fail-1", "Hello?")
    sandbox.fault(status=503, code=131000, message="Something went wrong")
    with committed():
        admin_client.get(page_url(message.contact_id))
    (published,) = broker.published("default")
    result = celery_app.tasks[RECEIPT_TASK].apply(args=published.args, kwargs=published.kwargs)
    assert result.get() is True  # the retry (immediate when run inline) got through
    stats = sandbox.stats()
    assert (stats["errors"], stats["read_wamids"]) == ({"131000": 1}, ["wamid.rr-fail-1"])

    newer = customer_writes("wamid.rr-fail-2", "Still there?")
    sandbox.fault(status=400, code=100, message="Invalid parameter")
    with committed():
        page = admin_client.get(page_url(message.contact_id))
    assert page.status_code == 200
    (published,) = broker.published("default")
    assert celery_app.tasks[RECEIPT_TASK].apply(args=published.args, kwargs=published.kwargs).get() is False
    newer.refresh_from_db()
    assert newer.read_at is None
    failure = AuditLog.objects.get(action="message.read_receipt_fail")
    assert (failure.target_id, failure.source) == (str(newer.pk), AuditLog.Source.SYSTEM)
    assert "(#100) Invalid parameter" in failure.changes["error"]


def test_retryable_failures_end_recorded_after_the_last_retry(
    admin_client, number, sandbox, broker, committed
):
    message = customer_writes("wamid.rr-busy-1", "Hello?")
    sandbox.fault(status=503, code=131000, message="Something went wrong", times=RETRIES_MAX + 1)
    with committed():
        admin_client.get(page_url(message.contact_id))
    (published,) = broker.published("default")

    assert celery_app.tasks[RECEIPT_TASK].apply(args=published.args, kwargs=published.kwargs).get() is False

    assert sandbox.stats()["errors"] == {"131000": RETRIES_MAX + 1}
    failure = AuditLog.objects.get(action="message.read_receipt_fail")
    assert failure.changes["error"].endswith(f"(after {RETRIES_MAX + 1} tries)")


# -- typing indicators ------------------------------------------------------------------------------


def test_typing_shows_an_indicator_at_most_once_per_25_s_per_conversation(
    admin_client, number, sandbox, broker, committed
):
    first = customer_writes("wamid.rr-typing-1", "Hello?")
    latest = customer_writes("wamid.rr-typing-2", "Can you help?")
    url = typing_url(latest.contact_id, number.pk)

    with committed():
        answers = [admin_client.post(url), admin_client.post(url)]

    assert [answer.status_code for answer in answers] == [204, 204]
    assert receipts_run(broker, times=1) == [([latest.pk], {"typing": True})]
    stats = sandbox.stats()
    assert (stats["typing_wamids"], stats["read_wamids"]) == (["wamid.rr-typing-2"], ["wamid.rr-typing-2"])
    first.refresh_from_db()
    assert first.read_at is not None  # the indicator marks read too

    # 10 s later (the last one shown 10 s ago), still nothing; 25 s later, another one
    conversation = Conversation.objects.get()
    for ago_s, shown in ((10, []), (TYPING_INTERVAL.total_seconds() + 1, [([latest.pk], {"typing": True})])):
        Conversation.objects.filter(pk=conversation.pk).update(
            typing_sent_at=timezone.now() - timedelta(seconds=ago_s)
        )
        with committed():
            assert admin_client.post(url).status_code == 204
        assert receipts_run(broker, times=1) == shown
    assert sandbox.stats()["typing_wamids"] == ["wamid.rr-typing-2"] * 2
    # only typing_sent_at moved: the live pages' token did not
    assert Conversation.objects.get().updated_at == conversation.updated_at


def test_typing_sends_nothing_without_a_customer_message_an_open_window_or_read_receipts(
    admin_client, number, sandbox, broker, committed
):
    reply = MessageFactory(phone_number=number, direction="outbound")
    Conversation.objects.create(contact=reply.contact, phone_number=number)
    with committed():
        assert admin_client.post(typing_url(reply.contact_id, number.pk)).status_code == 204
    assert receipts_run(broker) == []

    old = customer_writes("wamid.rr-old", "Hello?", at=int(time.time()) - 25 * 3600)
    with committed():
        assert admin_client.post(typing_url(old.contact_id, number.pk)).status_code == 204
    assert receipts_run(broker) == []  # the 24-hour window is closed

    recent = customer_writes("wamid.rr-recent", "Hello again?")
    number.read_receipts = False
    number.save()
    with committed():
        assert admin_client.post(typing_url(recent.contact_id, number.pk)).status_code == 204
    assert receipts_run(broker) == []
    assert sandbox.stats()["reads"] == 0


def test_the_typing_endpoint_is_a_csrf_protected_post_for_senders_who_see_the_number(admin_client, number):
    message = customer_writes("wamid.rr-doors", "Hello?")
    url = typing_url(message.contact_id, number.pk)

    assert admin_client.get(url).status_code == 405
    assert admin_client.post(f"{page_url(message.contact_id)}typing/").status_code == 400
    assert admin_client.post(f"{page_url(message.contact_id)}typing/?sender=x").json() == {
        "sender": "The id of the sender number the reply is typed for."
    }
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert strict.post(url).status_code == 403

    reader = Client()
    reader.force_login(UserFactory(is_staff=True, permissions=["messaging.view_message"]))
    assert reader.post(url).status_code == 403

    outsider = Client()
    outsider.force_login(UserFactory(is_staff=True, permissions=["messaging.view_message", SEND]))
    number.groups.create(name="another team")
    assert outsider.post(url).status_code == 404


# -- end to end -------------------------------------------------------------------------------------


@pytest.fixture
def queue_prefix(transactional_db, settings):
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    queues_ensure(visibility_timeout_override=30)
    with celery_publishing_to(queue_prefix=prefix):
        yield prefix


@pytest.mark.e2e
def test_a_real_worker_marks_the_opened_conversation_read_with_meta(
    queue_prefix, sandbox, tmp_path, monkeypatch
):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID)
    message = customer_writes("wamid.rr-e2e", "Hello?")
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True))
    with worker_running(
        queues=["default"], queue_prefix=queue_prefix, log_path=tmp_path / "worker.log"
    ) as worker:
        assert operator.get(page_url(message.contact_id)).status_code == 200
        wait_for(
            lambda: "wamid.rr-e2e" in sandbox.stats()["read_wamids"],
            timeout_s=60,
            worker=worker,
            what="the read receipt at Meta",
        )
        read = wait_for(
            lambda: Message.objects.filter(pk=message.pk, read_at__isnull=False).first(),
            timeout_s=10,
            worker=worker,
            what="the message marked read",
        )
    assert read.read_at is not None
    assert sandbox.stats()["reads"] == 1
    assert "Task messaging.read_receipt_send" in worker.log()
    assert settings.CELERY_TASK_ROUTES["messaging.read_receipt_*"] == {"queue": "default"}
