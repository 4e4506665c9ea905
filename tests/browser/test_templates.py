"""A manager writes a template in the console, sees it as WhatsApp will show it, submits it to
Meta (the sandbox), and the page shows Meta's approval once its webhook has come back."""

import httpx
import pytest
from django.db import connection
from playwright.sync_api import expect

from config.celery import app
from messaging.models import Template
from tests.factories import PhoneNumberFactory
from tests.messaging.test_templates import sandbox_root
from tests.waiting import wait_until

WABA = "100000000000001"  # the sandbox's own


@pytest.fixture
def meta_reviews(live_server, settings, monkeypatch):
    """The sandbox reviews at once and posts its webhooks to this test's live server, processed
    inline (a Celery that runs tasks eagerly)."""

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    answer = httpx.post(
        f"{sandbox_root()}/sandbox/config",
        json={
            "webhook_url": f"{live_server.url}/webhooks/whatsapp/",
            "app_secret": settings.WHATSAPP_APP_SECRET,
            "template_review_ms": 500,
        },
    )
    assert answer.status_code == 200, answer.text
    yield
    app.conf.task_always_eager = eager
    httpx.post(f"{sandbox_root()}/sandbox/reset")


def test_a_manager_writes_a_template_and_meta_approves_it(admin_page, screenshot, meta_reviews):
    PhoneNumberFactory(waba_id=WABA)
    page = admin_page
    page.goto("/admin/messaging/template/")
    page.get_by_role("link", name="Add template").click()
    expect(page.get_by_role("heading", name="Add template")).to_be_visible()

    # the manager names it and writes a body with a variable: its example's input appears
    page.get_by_label("Name").fill("table_ready")
    page.get_by_label("Language").select_option("en_GB")
    body = page.get_by_label("Body")
    body.fill("Hello {{1}}, your table is ready. Please come to the front desk.")
    screenshot(page, "body-typed")
    example = page.get_by_label("Example for {{1}}")
    expect(example).to_be_visible()
    preview = page.locator("#template-preview")
    expect(preview.locator("mark")).to_have_text("{{1}}")  # no example yet: the variable is marked
    example.fill("Ada")
    page.get_by_label("Footer").fill("Wharf Bistro")
    page.get_by_label("Quick reply buttons").fill("On my way\nCancel")
    expect(preview).to_contain_text("Hello Ada, your table is ready.")
    expect(preview.locator(".wharf-preview-footer")).to_have_text("Wharf Bistro")
    expect(preview.locator(".wharf-preview-button")).to_have_text(["On my way", "Cancel"])
    screenshot(page, "form-with-preview")

    # submitted to Meta, it is PENDING review
    page.get_by_role("button", name="Submit to Meta for review").click()
    sent = "Sent to Meta: table_ready (en_GB) is PENDING review."
    expect(page.locator(".messagelist")).to_contain_text(sent)
    expect(page.locator("#template-preview")).to_contain_text("Hello Ada, your table is ready.")
    screenshot(page, "pending")

    # Meta approves it; its webhook reaches Wharf and the page says so
    wait_until(
        lambda: Template.objects.filter(name="table_ready", status="APPROVED").exists(),
        timeout=15,
        message="Meta's approval through the webhook",
    )
    page.reload()
    expect(page.locator("#template-status")).to_have_text("APPROVED")
    screenshot(page, "approved")
