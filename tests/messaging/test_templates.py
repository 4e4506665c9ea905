"""Templates: synced from the sandbox's Graph API over HTTP, kept current by Meta's template
webhooks (through the parser), and filled in for a send."""

import copy
import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings

from config.celery import app
from core.models import OperatorAlert
from messaging.inbound.apply import inbound_payload_apply
from messaging.models import Template
from messaging.templates import (
    TemplateSlot,
    template_components_build,
    template_get_approved,
    template_parameters_expected,
    template_slots,
    template_webhook_apply,
    templates_sync,
    templates_sync_task,
)
from tests.factories import InboundEventFactory, PhoneNumberFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"
WABA = "102938475610293"  # the fixtures' entry id


def webhook(name: str, **value) -> dict:
    payload = json.loads((FIXTURES / f"{name}.json").read_text())
    payload = copy.deepcopy(payload)
    payload["entry"][0]["changes"][0]["value"].update(value)
    return payload


def apply(payload: dict) -> None:
    inbound_payload_apply(event=InboundEventFactory(payload=payload))


def order_shipped(**fields) -> Template:
    values = {
        "waba_id": WABA,
        "meta_id": "594425479261596",
        "name": "order_shipped",
        "language": "en_GB",
        "status": "PENDING",
        "category": "UTILITY",
        "quality_score": "GREEN",
        "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way."}],
    }
    return Template.objects.create(**(values | fields))


# -- webhooks through the parser ------------------------------------------------------------------


def test_status_quality_and_category_webhooks_update_the_template():
    template = order_shipped()

    apply(webhook("message_template_status_update"))
    template.refresh_from_db()
    assert template.status == "APPROVED" and template.category == "UTILITY"

    apply(webhook("message_template_quality_update"))
    template.refresh_from_db()
    assert template.quality_score == "YELLOW"

    apply(webhook("template_category_update"))
    template.refresh_from_db()
    assert template.category == "MARKETING"

    apply(webhook("message_template_status_update", event="PAUSED"))
    template.refresh_from_db()
    assert template.status == "PAUSED"
    assert template_get_approved(waba_id=WABA, name="order_shipped", language="en_GB") is None

    apply(webhook("message_template_status_update", event="REINSTATED"))
    template.refresh_from_db()
    assert template.status == "APPROVED"
    assert template_get_approved(waba_id=WABA, name="order_shipped", language="en_GB") == template


def syncs_published(broker) -> list[str]:
    """The WABAs of the template syncs published to SQS since the last look."""
    published = broker.published("default")
    assert {task.task for task in published} <= {templates_sync_task.name}
    return [waba_id for task in published for waba_id in task.args]


def test_events_that_are_not_statuses(django_capture_on_commit_callbacks, broker):
    template = order_shipped(status="APPROVED")

    with django_capture_on_commit_callbacks(execute=True):
        apply(webhook("message_template_status_update", event="FLAGGED"))
    template.refresh_from_db()
    assert template.status == "APPROVED" and syncs_published(broker) == []  # flagged ones stay approved

    with django_capture_on_commit_callbacks(execute=True):
        apply(webhook("message_template_status_update", event="UNARCHIVED"))
    template.refresh_from_db()
    assert template.status == "APPROVED" and syncs_published(broker) == [WABA]  # Meta is asked what it is now


def test_a_status_webhook_for_an_unknown_template_makes_its_row():
    apply(webhook("message_template_status_update", event="REJECTED"))
    template = Template.objects.get()
    assert (template.waba_id, template.name, template.language) == (WABA, "order_shipped", "en_GB")
    assert template.meta_id == "594425479261596" and template.status == "REJECTED"


def test_a_webhook_finds_its_template_by_meta_id_after_a_rename():
    template = order_shipped(name="old_name")
    apply(webhook("message_template_status_update", event="DISABLED"))
    template.refresh_from_db()
    assert template.status == "DISABLED" and Template.objects.count() == 1


def test_a_components_update_syncs_the_waba_after_commit(django_capture_on_commit_callbacks, broker):
    template = order_shipped(status="APPROVED")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        apply(webhook("message_template_components_update"))
        assert syncs_published(broker) == []  # not before the commit
    assert callbacks and syncs_published(broker) == [WABA]
    template.refresh_from_db()
    assert template.status == "APPROVED"


def test_a_webhook_naming_nothing_is_only_recorded():
    assert template_webhook_apply(field="message_template_status_update", waba_id=WABA, value={}) is None
    assert template_webhook_apply(field="account_update", waba_id=WABA, value={"event": "X"}) is None
    assert not Template.objects.exists()


# -- approved templates and their parameters ------------------------------------------------------


def test_only_an_approved_template_of_that_waba_and_language_is_sendable():
    approved = order_shipped(status="APPROVED")
    order_shipped(language="fr", status="PENDING")
    order_shipped(waba_id="999", status="APPROVED")
    assert template_get_approved(waba_id=WABA, name="order_shipped", language="en_GB") == approved
    assert template_get_approved(waba_id=WABA, name="order_shipped", language="fr") is None
    assert template_get_approved(waba_id=WABA, name="order_shipped", language="de") is None


def test_slots_and_components_for_header_body_and_url_button():
    template = order_shipped(
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, order {{2}} ships {{2}}."},
            {"type": "FOOTER", "text": "Reply STOP"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "OK"},
                    {"type": "URL", "text": "Track", "url": "https://example.com/t/{{1}}"},
                ],
            },
        ]
    )
    slots = template_slots(template=template)
    assert slots == [
        TemplateSlot("header", "1"),
        TemplateSlot("body", "1"),
        TemplateSlot("body", "2"),
        TemplateSlot("button", "1", 1),
    ]
    values = {"header-0-1": "A1", "body-0-1": "Ann", "body-0-2": "A1", "button-1-1": "A1"}
    assert template_components_build(template=template, values=values) == [
        {"type": "header", "parameters": [{"type": "text", "text": "A1"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "A1"}]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "A1"}]},
    ]


def test_named_parameters_and_a_media_header():
    template = order_shipped(
        components=[
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "Hi {{customer_name}}"},
        ]
    )
    values = {"header-0-IMAGE": "https://example.com/a.png", "body-0-customer_name": "Ann"}
    assert template_components_build(template=template, values=values) == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/a.png"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ann", "parameter_name": "customer_name"}]},
    ]
    assert [slot.label for slot in template_slots(template=template)] == [
        "header image link",
        "body {{customer_name}}",
    ]


def test_the_parameters_each_header_format_takes():
    """Per Meta's template reference: a media header takes one parameter of its type, a LOCATION
    header one `location` parameter (not a medium), a TEXT header its placeholders."""
    body = {"type": "BODY", "text": "Hi {{1}}"}
    button = {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "OK", "url": "{{1}}"}]}
    for header, wants in (
        ({"type": "HEADER", "format": "IMAGE"}, ["image"]),
        ({"type": "HEADER", "format": "video"}, ["video"]),
        ({"type": "HEADER", "format": "DOCUMENT"}, ["document"]),
        ({"type": "HEADER", "format": "LOCATION"}, ["location"]),
        ({"type": "HEADER", "format": "TEXT", "text": "Order {{1}} {{2}} {{1}}"}, ["text", "text"]),
    ):
        assert template_parameters_expected([header, body, button]) == {"header": wants, "body": ["text"]}
    assert template_parameters_expected([{"type": "HEADER", "format": "TEXT", "text": "Hello"}]) == {}


def test_a_location_header_is_filled_in_with_coordinates():
    template = order_shipped(components=[{"type": "HEADER", "format": "LOCATION"}, *BODY])
    assert [slot.label for slot in template_slots(template=template)] == [
        "header location latitude",
        "header location longitude",
        "header location name",
        "header location address",
        "body {{1}}",
    ]
    values = {
        "header-0-LOCATION.latitude": "51.5",
        "header-0-LOCATION.longitude": "-0.12",
        "header-0-LOCATION.name": "Depot",
        "header-0-LOCATION.address": "1 Quay St",
        "body-0-1": "Ann",
    }
    location = {"latitude": 51.5, "longitude": -0.12, "name": "Depot", "address": "1 Quay St"}
    assert template_components_build(template=template, values=values) == [
        {"type": "header", "parameters": [{"type": "location", "location": location}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]},
    ]


# -- sync from the sandbox over HTTP ------------------------------------------------------------------


def sandbox_root() -> str:
    parts = urlsplit(settings.WHATSAPP_GRAPH_URL)
    return f"{parts.scheme}://{parts.netloc}"


def sandbox_templates(*templates: dict) -> str:
    """Defines templates in a WABA of their own at the sandbox; returns its id."""
    waba_id = str(uuid.uuid4().int)[:15]
    response = httpx.post(
        f"{sandbox_root()}/sandbox/templates",
        json={"templates": [template | {"waba_id": waba_id} for template in templates]},
    )
    assert response.status_code == 200, response.text
    return waba_id


def sandbox_templates_remove(waba_id: str, name: str) -> None:
    """The sandbox clears templates only all at once: put back every other one."""
    kept = httpx.get(f"{sandbox_root()}/sandbox/templates").json()["data"]
    kept = [t for t in kept if not (t["waba_id"] == waba_id and t["name"] == name)]
    assert httpx.delete(f"{sandbox_root()}/sandbox/templates").status_code == 200
    assert httpx.post(f"{sandbox_root()}/sandbox/templates", json={"templates": kept}).status_code == 200


BODY = [{"type": "BODY", "text": "Hi {{1}}"}]


def test_sync_reads_every_page_and_marks_vanished_templates_deleted(monkeypatch):
    monkeypatch.setattr("messaging.templates.PAGE_SIZE", 2)
    waba_id = sandbox_templates(
        {"name": "alpha", "language": "en_US", "components": BODY},
        {"name": "alpha", "language": "de", "status": "PENDING"},
        {"name": "beta", "language": "en_US", "category": "MARKETING"},
        {"name": "gamma", "language": "en_US", "status": "PAUSED"},
        {"name": "delta", "language": "en_US"},
    )
    Template.objects.create(waba_id="other", name="alpha", language="en_US", status="APPROVED")

    assert templates_sync(waba_id=waba_id) == 5
    rows = {(t.name, t.language): t for t in Template.objects.filter(waba_id=waba_id)}
    assert len(rows) == 5
    alpha = rows[("alpha", "en_US")]
    assert (alpha.status, alpha.category, alpha.components) == ("APPROVED", "UTILITY", BODY)
    assert alpha.meta_id and alpha.synced_at is not None
    assert rows[("beta", "en_US")].category == "MARKETING"
    assert template_get_approved(waba_id=waba_id, name="alpha", language="en_US") == alpha
    assert template_get_approved(waba_id=waba_id, name="gamma", language="en_US") is None

    sandbox_templates_remove(waba_id, "beta")
    assert templates_sync(waba_id=waba_id) == 4
    assert templates_sync(waba_id=waba_id) == 4  # twice changes nothing more
    assert Template.objects.filter(waba_id=waba_id).count() == 5
    assert Template.objects.get(waba_id=waba_id, name="beta").status == "DELETED"
    assert Template.objects.get(waba_id="other").status == "APPROVED"  # another WABA is not touched


def test_sync_picks_up_status_changes_made_at_meta():
    waba_id = sandbox_templates({"name": "alpha", "language": "en_US"})
    templates_sync(waba_id=waba_id)
    template = Template.objects.get(waba_id=waba_id)
    response = httpx.post(
        f"{sandbox_root()}/sandbox/templates/{template.meta_id}/status", json={"status": "PAUSED"}
    )
    assert response.status_code == 200, response.text

    templates_sync(waba_id=waba_id)
    template.refresh_from_db()
    assert template.status == "PAUSED"


def test_the_beat_task_syncs_every_waba_of_the_sender_numbers(broker):
    PhoneNumberFactory(waba_id="111"), PhoneNumberFactory(waba_id="111"), PhoneNumberFactory(waba_id="222")
    PhoneNumberFactory(waba_id="")
    assert templates_sync_task() == 2
    assert sorted(syncs_published(broker)) == ["111", "222"]

    waba_id = sandbox_templates({"name": "alpha", "language": "en_US"})
    assert templates_sync_task(waba_id) == 1
    assert Template.objects.filter(waba_id=waba_id).count() == 1


def test_a_refused_token_raises_an_operator_alert_instead_of_retrying(settings):
    settings.WHATSAPP_ACCESS_TOKEN = "not-the-sandbox-token"
    waba_id = sandbox_templates({"name": "alpha", "language": "en_US"})
    assert templates_sync_task(waba_id) == 0
    alert = OperatorAlert.objects.get()
    assert alert.key == f"templates-sync-auth:{waba_id}" and "(#190)" in alert.text
    assert not Template.objects.exists()


def test_the_admins_sync_now_button(admin_client):
    waba_id = sandbox_templates({"name": "alpha", "language": "en_US"}, {"name": "beta", "language": "en_US"})
    PhoneNumberFactory(waba_id=waba_id)
    response = admin_client.post("/admin/messaging/template/sync/", follow=True)
    assert f"WABA {waba_id}: 2 template(s) from Meta." in response.content.decode()
    assert Template.objects.filter(waba_id=waba_id).count() == 2
    assert admin_client.get("/admin/messaging/template/sync/").status_code == 405


# -- the beat's task on a real worker ---------------------------------------------------------------


def test_templates_sync_routes_to_the_default_queue_hourly():

    assert app.amqp.router.route({}, "messaging.templates_sync")["queue"].name == "default"
    assert settings.CELERY_BEAT_SCHEDULE["templates-sync"] == {
        "task": "messaging.templates_sync",
        "schedule": 3600.0,
    }


@pytest.mark.e2e
def test_the_beat_task_on_a_real_worker_syncs_every_waba(transactional_db, settings, tmp_path):
    from core.queues import queues_ensure
    from tests.messaging.webhook_helpers import celery_publishing_to
    from tests.platform.conftest import wait_for, worker_running

    first = sandbox_templates({"name": "alpha", "language": "en_US"}, {"name": "beta", "language": "en_US"})
    second = sandbox_templates({"name": "gamma", "language": "pt_BR"})
    PhoneNumberFactory(waba_id=first), PhoneNumberFactory(waba_id=second)
    prefix = f"wharf-test-{uuid.uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    queues_ensure(visibility_timeout_override=10)
    with (
        celery_publishing_to(queue_prefix=prefix),
        worker_running(queues=["default"], queue_prefix=prefix, log_path=tmp_path / "worker.log") as worker,
    ):
        templates_sync_task.delay()  # as beat sends it: no WABA
        wait_for(
            lambda: Template.objects.filter(waba_id__in=[first, second]).count() == 3,
            timeout_s=60,
            worker=worker,
            what="the templates of both WABAs",
        )
    assert worker.log().count("Task messaging.templates_sync[") >= 3


@pytest.fixture
def celery_eager():

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager


def test_a_status_change_at_meta_reaches_the_template_through_our_webhook(
    live_server, transactional_db, celery_eager
):
    """The sandbox posts Meta's signed webhook to Wharf's real endpoint (processed inline)."""
    waba_id = sandbox_templates({"name": "alpha", "language": "en_US"})
    templates_sync(waba_id=waba_id)
    template = Template.objects.get(waba_id=waba_id)
    configured = httpx.post(
        f"{sandbox_root()}/sandbox/config", json={"webhook_url": f"{live_server.url}/webhooks/whatsapp/"}
    )
    assert configured.status_code == 200, configured.text
    try:
        url = f"{sandbox_root()}/sandbox/templates/{template.meta_id}/status"
        assert httpx.post(url, json={"status": "DISABLED", "reason": "LOW"}).json()["webhook"] is True
        wait_until(
            lambda: Template.objects.filter(pk=template.pk, status="DISABLED").exists(),
            message="the template disabled by Meta's webhook",
        )
        template.refresh_from_db()
    finally:
        httpx.post(f"{sandbox_root()}/sandbox/reset")
    assert template.status == "DISABLED"
    assert template_get_approved(waba_id=waba_id, name="alpha", language="en_US") is None
