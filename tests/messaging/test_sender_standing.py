"""Sender numbers' standing at Meta (quality rating, messaging limit): the sandbox's phone number
endpoints and control over HTTP, Wharf's reads of them, the phone_number_quality_update webhook
through the signed endpoint, and the sender numbers' admin."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.conf import settings

from config.celery import app
from core.models import AuditLog, OperatorAlert
from messaging.inbound.events import inbound_events_drain
from messaging.models import PhoneNumber
from messaging.numbers import (
    Standing,
    messaging_limit_text,
    phone_number_quality_webhook_apply,
    phone_number_standing_apply,
    phone_number_sync,
    phone_number_sync_task,
    phone_numbers_sync,
    phone_numbers_sync_task,
)
from tests.factories import UserFactory
from tests.messaging.test_sandbox import assert_graph_error, graph, sandbox_root  # noqa: F401
from tests.messaging.test_sandbox_send import configure, receiver  # noqa: F401
from tests.messaging.webhook_helpers import sign, webhook_post
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


def new_id() -> str:
    return str(uuid.uuid4().int)[:15]


def at_meta(*, waba_id: str, display: str = "", verified_name: str = "Hart Teas") -> str:
    """A number registered at the sandbox in `waba_id`; its phone number id."""
    phone_number_id = new_id()
    number = {
        "phone_number_id": phone_number_id,
        "waba_id": waba_id,
        "display_phone_number": display or f"1555{phone_number_id[-7:]}",
        "verified_name": verified_name,
    }
    httpx.post(f"{sandbox_root()}/sandbox/numbers", json=number).raise_for_status()
    return phone_number_id


def meta_changes(phone_number_id: str, **changes) -> dict:
    response = httpx.post(f"{sandbox_root()}/sandbox/numbers/{phone_number_id}/quality", json=changes)
    assert response.status_code == 200, response.text
    return response.json()


def sender(phone_number_id: str, *, waba_id: str, display: str = "") -> PhoneNumber:
    return PhoneNumber.objects.create(
        phone_number_id=phone_number_id, waba_id=waba_id, display_phone_number=display or "x"
    )


# -- the sandbox ------------------------------------------------------------------------------------


def test_the_sandbox_reads_a_number_with_the_fields_asked_for(graph):  # noqa: F811
    number = at_meta(waba_id=new_id(), display="15550142424")

    default = graph.get(number).json()
    asked = graph.get(number, params={"fields": "quality_rating,messaging_limit_tier,throughput,name_status"})

    assert default == {
        "verified_name": "Hart Teas",
        "code_verification_status": "VERIFIED",
        "display_phone_number": "+1 555-014-2424",
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "id": number,
    }
    assert asked.json() == {
        "quality_rating": "GREEN",
        "messaging_limit_tier": "TIER_1K",
        "throughput": {"level": "STANDARD"},
        "name_status": "APPROVED",
        "id": number,
    }
    error = assert_graph_error(
        graph.get(number, params={"fields": "quality_rating,colour"}), status=400, code=100
    )
    assert "nonexisting field (colour)" in error["message"]
    error = assert_graph_error(graph.get("998877665544332"), status=400, code=100)
    assert error["error_subcode"] == 33 and "998877665544332" in error["message"]


def test_the_sandbox_lists_a_wabas_numbers_a_page_at_a_time(graph):  # noqa: F811
    waba_id = new_id()
    numbers = [at_meta(waba_id=waba_id) for _ in range(3)]
    at_meta(waba_id=new_id())  # another WABA's

    first = graph.get(f"{waba_id}/phone_numbers", params={"limit": 2, "fields": "id,quality_rating"}).json()
    second = httpx.get(
        first["paging"]["next"], headers={"Authorization": f"Bearer {settings.WHATSAPP_ACCESS_TOKEN}"}
    ).json()

    assert first["data"] == [
        {"id": numbers[0], "quality_rating": "GREEN"},
        {"id": numbers[1], "quality_rating": "GREEN"},
    ]
    assert second["data"] == [{"id": numbers[2], "quality_rating": "GREEN"}]
    assert "next" not in second["paging"]
    assert_graph_error(graph.get(f"{new_id()}/phone_numbers"), status=400, code=100)
    assert_graph_error(
        graph.get(f"{waba_id}/phone_numbers", params={"fields": "bogus"}), status=400, code=100
    )


def test_a_change_at_the_sandbox_posts_metas_signed_quality_webhook(graph, receiver):  # noqa: F811
    waba_id = new_id()
    number = at_meta(waba_id=waba_id, display="15550143434")
    configure(webhook_url=receiver.url, app_secret=settings.WHATSAPP_APP_SECRET)
    try:
        answer = meta_changes(number, quality_rating="RED", messaging_limit="TIER_250")
        wait_until(lambda: len(receiver.posts) == 1, message="the quality webhook")
    finally:
        httpx.post(f"{sandbox_root()}/sandbox/reset")

    assert (answer["event"], answer["webhook"]) == ("DOWNGRADE", True)
    headers, raw = receiver.posts[0]
    assert headers["X-Hub-Signature-256"] == sign(raw)
    entry = json.loads(raw)["entry"][0]
    assert entry["id"] == waba_id and isinstance(entry["time"], int)
    assert entry["changes"][0]["field"] == "phone_number_quality_update"
    assert entry["changes"][0]["value"] == {
        "display_phone_number": "15550143434",
        "event": "DOWNGRADE",
        "old_limit": "TIER_1K",
        "current_limit": "TIER_250",
        "max_daily_conversations_per_business": "TIER_250",
    }
    # the reset put the number back as it started
    assert (
        graph.get(number, params={"fields": "quality_rating,messaging_limit_tier"}).json()["quality_rating"]
        == "GREEN"
    )


def test_the_sandbox_control_refuses_what_meta_has_not():
    number = at_meta(waba_id=new_id())
    refused = httpx.post(
        f"{sandbox_root()}/sandbox/numbers/{number}/quality", json={"quality_rating": "PURPLE"}
    )
    unknown = httpx.post(
        f"{sandbox_root()}/sandbox/numbers/{new_id()}/quality", json={"quality_rating": "RED"}
    )
    assert refused.status_code == 400 and "GREEN, YELLOW, RED" in refused.json()["error"]["message"]
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 100


# -- reads from Meta --------------------------------------------------------------------------------


def test_a_sync_reads_the_number_over_http_and_audits_only_a_change():
    waba_id = new_id()
    number = sender(at_meta(waba_id=waba_id, display="15550145454"), waba_id=waba_id)

    phone_number_sync(phone_number=number)

    number.refresh_from_db()
    assert (number.quality_rating, number.messaging_limit, number.throughput_level) == (
        "GREEN",
        "TIER_1K",
        "STANDARD",
    )
    assert (number.name_status, number.verified_name) == ("APPROVED", "Hart Teas")
    assert number.display_phone_number == "+1 555-014-5454"
    assert number.synced_at is not None and number.standing_at is not None
    assert AuditLog.objects.filter(action="phone_number.standing").count() == 1

    synced_at = number.synced_at
    phone_number_sync(phone_number=number)
    number.refresh_from_db()
    assert number.synced_at > synced_at
    assert AuditLog.objects.filter(action="phone_number.standing").count() == 1  # nothing changed


def test_a_waba_sync_reads_every_page_and_only_the_numbers_wharf_sends_from(monkeypatch):
    monkeypatch.setattr("messaging.numbers.PAGE_SIZE", 1)
    waba_id = new_id()
    first, second, unknown = (at_meta(waba_id=waba_id) for _ in range(3))
    sender(first, waba_id=waba_id), sender(second, waba_id=waba_id)
    meta_changes(second, quality_rating="YELLOW", messaging_limit="TIER_10K")

    assert phone_numbers_sync(waba_id=waba_id) == 2

    standings = dict(PhoneNumber.objects.values_list("phone_number_id", "quality_rating"))
    assert standings == {first: "GREEN", second: "YELLOW"}
    assert PhoneNumber.objects.get(phone_number_id=second).messaging_limit == "TIER_10K"
    assert not PhoneNumber.objects.filter(phone_number_id=unknown).exists()


def test_a_red_rating_and_a_lowered_limit_alert_once():
    waba_id = new_id()
    number = sender(at_meta(waba_id=waba_id), waba_id=waba_id)
    phone_number_sync(phone_number=number)
    assert not OperatorAlert.objects.exists()
    meta_changes(number.phone_number_id, quality_rating="RED", messaging_limit="TIER_250")

    phone_number_sync(phone_number=number)
    phone_number_sync(phone_number=number)

    alerts = {alert.key: alert for alert in OperatorAlert.objects.all()}
    assert set(alerts) == {
        f"sender-quality:{number.phone_number_id}",
        f"sender-limit:{number.phone_number_id}",
    }
    assert "RED" in alerts[f"sender-quality:{number.phone_number_id}"].text
    assert (
        "from 1,000 customers / 24 h to 250 customers / 24 h"
        in alerts[f"sender-limit:{number.phone_number_id}"].text
    )

    OperatorAlert.objects.update(acknowledged_at=datetime.now(UTC))
    phone_number_sync(phone_number=number)  # still RED: no change, no alert reopened
    assert not OperatorAlert.objects.filter(acknowledged_at__isnull=True).exists()


def test_an_older_report_never_overwrites_a_newer_one():
    number = sender(new_id(), waba_id=new_id())
    now = datetime.now(UTC).replace(microsecond=0)
    newer = Standing(quality_rating="RED", messaging_limit="TIER_250")
    older = Standing(quality_rating="GREEN", messaging_limit="TIER_10K")

    phone_number_standing_apply(phone_number=number, standing=newer, as_of=now, actor=None, source="webhook")
    phone_number_standing_apply(
        phone_number=number,
        standing=older,
        as_of=now - timedelta(seconds=5),
        actor=None,
        source="system",
        synced=True,
    )

    number.refresh_from_db()
    assert (number.quality_rating, number.messaging_limit, number.standing_at) == ("RED", "TIER_250", now)
    assert number.synced_at is not None  # the read happened, and lost
    phone_number_standing_apply(
        phone_number=number, standing=older, as_of=now + timedelta(seconds=1), actor=None, source="system"
    )
    number.refresh_from_db()
    assert (number.quality_rating, number.messaging_limit) == ("GREEN", "TIER_10K")


def test_a_refused_token_raises_an_alert_instead_of_retrying(settings):
    waba_id = new_id()
    number = sender(at_meta(waba_id=waba_id), waba_id=waba_id)
    settings.WHATSAPP_ACCESS_TOKEN = "not-the-sandbox-token"

    assert phone_numbers_sync_task(waba_id) == 0
    assert phone_number_sync_task(number.pk) is False

    keys = set(OperatorAlert.objects.values_list("key", flat=True))
    assert keys == {f"phone-numbers-sync-auth:WABA {waba_id}", f"phone-numbers-sync-auth:number {number}"}
    assert "(#190)" in OperatorAlert.objects.first().text


def test_the_beat_task_reads_each_waba_and_each_number_without_one(broker):
    first, second = new_id(), new_id()
    sender(new_id(), waba_id=first), sender(new_id(), waba_id=first), sender(new_id(), waba_id=second)
    loose = sender(new_id(), waba_id="")

    assert phone_numbers_sync_task() == 3

    published = sorted((task.task, task.args) for task in broker.published("default"))
    assert published == sorted(
        [
            ("messaging.phone_numbers_sync", [first]),
            ("messaging.phone_numbers_sync", [second]),
            ("messaging.phone_number_sync", [loose.pk]),
        ]
    )


def test_the_read_runs_hourly_on_the_default_queue():

    for name in ("messaging.phone_numbers_sync", "messaging.phone_number_sync"):
        assert app.amqp.router.route({}, name)["queue"].name == "default"
    assert settings.CELERY_BEAT_SCHEDULE["phone-numbers-sync"] == {
        "task": "messaging.phone_numbers_sync",
        "schedule": 3600.0,
    }


# -- the webhook --------------------------------------------------------------------------------------


def quality_body(*, waba_id: str, display: str, event: str, limit: str, time: int, **extra) -> dict:
    value = {"display_phone_number": display, "event": event, "current_limit": limit, **extra}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": time,
                "changes": [{"value": value, "field": "phone_number_quality_update"}],
            }
        ],
    }


def test_the_quality_webhook_applies_once_through_the_signed_endpoint(client):
    waba_id = new_id()
    number = sender(new_id(), waba_id=waba_id, display="+1 555-014-6464")
    other = sender(new_id(), waba_id=new_id(), display="+1 555-014-6464")  # same digits, another WABA
    body = quality_body(
        waba_id=waba_id, display="15550146464", event="FLAGGED", limit="TIER_250", time=1767225600
    )
    raw = json.dumps(body).encode()

    assert webhook_post(client, raw).status_code == 200
    inbound_events_drain()

    number.refresh_from_db()
    assert (number.quality_rating, number.messaging_limit) == ("RED", "TIER_250")
    assert number.standing_at == datetime.fromtimestamp(1767225600, UTC)
    other.refresh_from_db()
    assert (other.quality_rating, other.messaging_limit) == ("", "")
    audit = AuditLog.objects.get(action="phone_number.standing")
    assert audit.source == "webhook" and audit.changes["event"] == "FLAGGED"
    assert OperatorAlert.objects.filter(key=f"sender-quality:{number.phone_number_id}").exists()

    # Meta delivers it again (the same bytes, and the same report in other bytes): nothing more happens
    assert webhook_post(client, raw).status_code == 200
    assert webhook_post(client, json.dumps(body, indent=1).encode()).status_code == 200
    inbound_events_drain()
    assert AuditLog.objects.filter(action="phone_number.standing").count() == 1
    assert OperatorAlert.objects.count() == 1

    # an older report (a DOWNGRADE retried by Meta) arrives after a newer one: it changes nothing
    late = quality_body(
        waba_id=waba_id, display="15550146464", event="UPGRADE", limit="TIER_10K", time=1767225000
    )
    assert webhook_post(client, json.dumps(late).encode()).status_code == 200
    inbound_events_drain()
    number.refresh_from_db()
    assert number.messaging_limit == "TIER_250"


def test_a_throughput_upgrade_is_not_a_messaging_limit():

    waba_id = new_id()
    number = sender(new_id(), waba_id=waba_id, display="15550147474")
    number.messaging_limit = "TIER_10K"
    number.save()
    value = {
        "display_phone_number": "15550147474",
        "event": "THROUGHPUT_UPGRADE",
        "current_limit": "TIER_UNLIMITED",
    }

    phone_number_quality_webhook_apply(value=value, waba_id=waba_id, at=datetime.now(UTC))

    number.refresh_from_db()
    assert (number.throughput_level, number.messaging_limit) == ("HIGH", "TIER_10K")


@pytest.fixture
def celery_eager():

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager


def test_a_change_at_meta_reaches_the_number_through_our_webhook(live_server, transactional_db, celery_eager):
    """The sandbox posts Meta's signed webhook to Wharf's endpoint; the drain applies it and reads
    the number again, all inline."""
    waba_id = new_id()
    number = sender(at_meta(waba_id=waba_id, display="15550148484"), waba_id=waba_id, display="15550148484")
    phone_number_sync(phone_number=number)
    configured = httpx.post(
        f"{sandbox_root()}/sandbox/config", json={"webhook_url": f"{live_server.url}/webhooks/whatsapp/"}
    )
    assert configured.status_code == 200, configured.text
    try:
        assert meta_changes(number.phone_number_id, quality_rating="YELLOW", messaging_limit="TIER_10K")[
            "webhook"
        ]
        wait_until(
            lambda: PhoneNumber.objects.filter(
                pk=number.pk, messaging_limit="TIER_10K", quality_rating="YELLOW"
            ).exists(),
            message="the limit from Meta's webhook and the rating read after it",
        )
    finally:
        httpx.post(f"{sandbox_root()}/sandbox/reset")


# -- the admin ----------------------------------------------------------------------------------------


def test_the_list_shows_the_rating_as_a_named_badge_and_the_limit_in_words(admin_client):
    PhoneNumber.objects.create(phone_number_id=new_id(), quality_rating="GREEN", messaging_limit="TIER_1K")
    PhoneNumber.objects.create(
        phone_number_id=new_id(), quality_rating="RED", messaging_limit="TIER_UNLIMITED"
    )
    PhoneNumber.objects.create(phone_number_id=new_id())

    page = admin_client.get("/admin/messaging/phonenumber/").content.decode()

    assert "wharf-quality-green" in page and "Green · high</span>" in page
    assert "wharf-quality-red" in page and "Red · low</span>" in page
    assert "1,000 customers / 24 h" in page and "Unlimited" in page
    assert messaging_limit_text("TIER_250") == "250 customers / 24 h"


def test_the_change_page_syncs_from_meta_for_those_allowed(client, admin_client):
    waba_id = new_id()
    number = sender(at_meta(waba_id=waba_id), waba_id=waba_id)
    meta_changes(number.phone_number_id, quality_rating="YELLOW")
    url = f"/admin/messaging/phonenumber/{number.pk}/"

    before = admin_client.get(f"{url}change/").content.decode()
    synced = admin_client.post(f"{url}sync/", follow=True).content.decode()

    assert f'action="{url}sync/"' in before and "Last synced from Meta" in before
    assert "Synced from Meta" in synced and "Yellow · medium</span>" in synced
    number.refresh_from_db()
    assert number.quality_rating == "YELLOW" and number.synced_at is not None
    assert AuditLog.objects.get(action="phone_number.standing").actor.username == "admin"
    assert admin_client.get(f"{url}sync/").status_code == 405

    viewer = UserFactory(is_staff=True, permissions=["messaging.view_phonenumber"])
    client.force_login(viewer)
    assert f'action="{url}sync/"' not in client.get(f"{url}change/").content.decode()
    assert client.post(f"{url}sync/").status_code == 403
    action = {"action": "sync_from_meta", "_selected_action": [number.pk]}
    client.post("/admin/messaging/phonenumber/", action)
    number.refresh_from_db()
    assert AuditLog.objects.filter(action="phone_number.standing").count() == 1


def test_the_sync_action_reads_the_selected_numbers(admin_client):
    waba_id = new_id()
    numbers = [sender(at_meta(waba_id=waba_id), waba_id=waba_id) for _ in range(2)]
    gone = sender(new_id(), waba_id=waba_id)  # not at Meta

    answer = admin_client.post(
        "/admin/messaging/phonenumber/",
        {"action": "sync_from_meta", "_selected_action": [n.pk for n in [*numbers, gone]]},
        follow=True,
    ).content.decode()

    assert answer.count("Synced from Meta") == 2 and "(#100)" in answer
    assert set(
        PhoneNumber.objects.filter(pk__in=[n.pk for n in numbers]).values_list("quality_rating", flat=True)
    ) == {"GREEN"}
