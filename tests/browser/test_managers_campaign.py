"""A manager's campaign, in a real browser against real worker processes: the manager writes a
template in the console → Meta (the sandbox) approves it, its signed webhook reaching this live
server and applied by the `incoming` worker → the manager builds a WhatsApp campaign whose template
parameter is each contact's city (the {{attributes.city}} chip), previewed for a sample contact →
saves and starts it (confirmed) → the progress panel follows the sends without a reload → pauses it
(confirmed): the recipients not sent yet stay pending → resumes it → it completes → the CSV report
holds one row per recipient with its message's status and phone, and the JSON report is linked →
once the dashboard's counters are rolled up, its campaigns chart shows the campaign, all sent."""

import csv
import re

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign, Recipient
from core.aws import storage_ensure_bucket
from dashboard.rollups import stats_recent_rollup
from messaging.models import Message, Template
from tests.browser.conftest import OPERATOR_PASSWORD
from tests.browser.test_dashboard import chart_data
from tests.factories import ContactFactory, PhoneNumberFactory, UserFactory
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID
from tests.waiting import wait_until

WABA = "100000000000001"  # the sandbox's own
CITIES = ["Lisbon", "Porto", "Braga", "Faro", "Coimbra", "Aveiro", "Évora", "Sintra"]
LIVE_MS = 10_000  # the progress panel's poll (2 s) and a worker's turn, on two shared cores
SENDING_MS = 90_000  # the campaign at one message a second, on two shared cores


@pytest.fixture
def operator(transactional_db):
    """A manager, not a superuser: writes templates, builds and runs campaigns, reads contacts
    (so the report's phones) and the dashboard."""
    return UserFactory(
        username="maria",
        password=OPERATOR_PASSWORD,
        is_staff=True,
        permissions=[
            "messaging.view_conversation",
            "messaging.view_template",
            "messaging.add_template",
            "messaging.change_template",
            "messaging.view_phonenumber",
            "campaigns.view_campaign",
            "campaigns.add_campaign",
            "campaigns.change_campaign",
            "campaigns.run_campaign",
            "contacts.view_contact",
            "dashboard.view_dashboard",
        ],
    )


def progress_counts(page) -> dict[str, int]:
    """The progress panel's figures ("total 8 · pending 5 · sent 3"), as the manager reads them."""
    figures = page.locator("#campaign-progress").inner_text().split("\n")[1]
    return {
        name.replace(" ", "_"): int(count.replace(",", ""))
        for name, count in re.findall(r"([a-z][a-z ]*?) (\d[\d,]*)", figures)
    }


def test_a_manager_runs_a_campaign(admin_page, operator, screenshot, sandbox, workers):
    storage_ensure_bucket()  # the JSON report's
    sandbox.config(template_review_ms=500)
    sender = PhoneNumberFactory(
        phone_number_id=PHONE_NUMBER_ID,
        waba_id=WABA,
        display_phone_number="15550783881",
        verified_name="Wharf Shop",
    )
    contacts = [
        ContactFactory(
            name=f"Customer {n + 1}",
            phone=f"+4474001234{n:02d}",
            tags=["regulars"],
            attributes={"city": city},
        )
        for n, city in enumerate(CITIES)
    ]
    ContactFactory(name="Not a regular", phone="+447400123499", tags=["press"], attributes={"city": "Tavira"})
    page = admin_page

    # the manager writes a template and submits it to Meta
    page.goto("/admin/messaging/template/add/")
    page.get_by_label("Name").fill("shop_week")
    page.get_by_label("Category").select_option("MARKETING")  # an offer: Meta rejects it as a utility
    page.get_by_label("Language").select_option("en_GB")
    page.get_by_label("Body").fill("Hello from our shop in {{1}}! Show this message at the till for 10% off.")
    page.get_by_label("Example for {{1}}").fill("Lisbon")
    expect(page.locator("#template-preview")).to_contain_text("Hello from our shop in Lisbon!")
    page.get_by_role("button", name="Submit to Meta for review").click()
    expect(page.locator(".messagelist")).to_contain_text("Sent to Meta: shop_week (en_GB) is PENDING review.")
    screenshot(page, "template-pending")

    # Meta approves it: its webhook reaches Wharf and the `incoming` worker applies it
    wait_until(
        lambda: Template.objects.filter(name="shop_week", status="APPROVED").exists(),
        timeout=30,
        message=lambda: (
            f"Meta's approval through the webhook: {list(Template.objects.values('name', 'status'))}"
        ),
    )
    page.reload()
    expect(page.locator("#template-status")).to_have_text("APPROVED")
    screenshot(page, "template-approved")

    # the manager builds the campaign: each contact's city fills the template's parameter
    page.goto("/admin/campaigns/campaign/add/")
    page.get_by_label("Name:").fill("Shop week")
    page.get_by_label("Sender number:").select_option(str(sender.pk))
    page.get_by_label("Template:").select_option(label="shop_week (en_GB)")
    city = page.get_by_label("Body {{1}}")
    expect(city).to_have_attribute("placeholder", "e.g. Lisbon")
    city.click()
    page.get_by_role("button", name="{{attributes.city}}").click()
    expect(city).to_have_value("{{attributes.city}}")
    page.get_by_label("regulars", exact=True).check()
    expect(page.locator(".campaign-audience-count")).to_have_text(f"{len(CITIES)} contacts match now")
    page.get_by_label("Preview for").select_option(str(contacts[1].pk))
    expect(page.locator(".campaign-bubble")).to_contain_text("Hello from our shop in Porto!")
    page.get_by_label("Rate limit per s:").fill("1")  # slow enough to pause half way
    screenshot(page, "campaign-form")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator(".campaign-start-blocked")).to_have_count(0)
    campaign = Campaign.objects.get()
    assert campaign.template_parameters == {"body": ["{{attributes.city}}"]}
    assert campaign.rate_limit_per_s == 1

    # starts it, confirmed
    page.get_by_role("link", name="Start", exact=True).click()
    expect(page.get_by_text(f"The audience holds {len(CITIES)} contacts now.")).to_be_visible()
    screenshot(page, "start-confirmation")
    page.get_by_role("button", name="Yes, start it").click()
    expect(page.locator(".messagelist")).to_contain_text("Shop week: running.")

    # the progress panel follows the sends without a reload
    panel = page.locator("#campaign-progress")
    page.evaluate("window.wharfNotReloaded = true")
    expect(panel).to_contain_text(re.compile(r"sent [1-9]"), timeout=SENDING_MS)
    assert page.evaluate("window.wharfNotReloaded") is True
    screenshot(page, "sending")

    # pauses it, confirmed: what is under way finishes, the rest waits
    page.get_by_role("link", name="Pause", exact=True).click()
    screenshot(page, "pause-confirmation")
    page.get_by_role("button", name="Yes, pause it").click()
    expect(page.locator(".messagelist")).to_contain_text("Shop week: paused.")
    expect(panel).to_contain_text("paused")
    wait_until(
        lambda: (
            not Message.objects.filter(
                campaign_recipient__campaign=campaign,
                status__in=[Message.Status.QUEUED, Message.Status.SENDING],
            ).exists()
        ),
        timeout=30,
        message="the sends under way at the pause to finish",
    )
    page.reload()
    expect(page.get_by_role("link", name="Resume", exact=True)).to_be_visible()
    counts = progress_counts(page)
    screenshot(page, "paused")
    pending = Recipient.objects.filter(campaign=campaign, status=Recipient.Status.PENDING)
    assert pending.exists(), "the campaign finished before the pause: nothing was left to pause"
    assert not pending.filter(message__isnull=False).exists()
    assert counts["pending"] == pending.count()
    assert counts["sent"] + counts["pending"] == len(CITIES)

    # resumes it, confirmed: it completes
    page.get_by_role("link", name="Resume", exact=True).click()
    page.get_by_role("button", name="Yes, resume it").click()
    expect(page.locator(".messagelist")).to_contain_text("Shop week: running.")
    expect(panel).to_contain_text("completed", timeout=SENDING_MS)
    expect(panel).to_contain_text(f"sent {len(CITIES)}")
    wait_until(
        lambda: Campaign.objects.filter(pk=campaign.pk).exclude(report_key="").exists(),
        timeout=30,
        message="the JSON report to be written",
    )
    page.reload()
    expect(page.get_by_role("link", name="JSON", exact=True)).to_be_visible()
    screenshot(page, "completed")

    # the CSV report: one row per recipient, with its message's status and phone
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV (as of now)").click()
    assert re.fullmatch(r".+\.csv", download.value.suggested_filename)
    with open(download.value.path(), newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["phone"] for row in rows) == sorted(contact.phone for contact in contacts)
    assert {row["status"] for row in rows} == {"queued"}
    assert {row["message_status"] for row in rows} <= {"sent", "delivered", "read"}

    # the dashboard, its counters rolled up: the campaign, every recipient sent
    wait_until(
        lambda: (
            Message.objects.filter(campaign_recipient__campaign=campaign, read_at__isnull=False).count()
            == len(CITIES)
        ),
        timeout=60,
        message="Meta's read statuses for every message",
    )
    stats_recent_rollup()
    page.goto("/admin/dashboard/")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-campaigns'))")
    campaigns = chart_data(page, "campaigns")
    assert campaigns["labels"] == ["Shop week"]
    sent = next(dataset for dataset in campaigns["datasets"] if dataset["label"] == "sent %")
    assert sent["data"] == [100.0]
    figures = page.evaluate("() => JSON.parse(document.getElementById('chart-campaigns-data').textContent)")
    assert figures["recipients"] == [len(CITIES)]
    funnel = chart_data(page, "funnel")["datasets"][0]["data"]
    assert funnel[:3] == [len(CITIES)] * 3  # sent, delivered, read
    screenshot(page, "dashboard")
