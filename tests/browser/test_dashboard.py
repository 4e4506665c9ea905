"""A manager opens the dashboard in a real browser: the charts Chart.js draws hold the seeded
figures, for the whole month, then for one sender number over a week."""

from collections import defaultdict
from datetime import UTC, timedelta

from django.utils import timezone
from playwright.sync_api import expect

from contacts.models import Contact
from dashboard.rollups import stats_range_rollup
from tests.dashboard.seed import (
    RE_ENGAGEMENT,
    UNDELIVERABLE,
    archive_run,
    at,
    business_sends,
    campaign_with,
    customer_writes,
)
from tests.factories import PhoneNumberFactory

CHARTS = ("messages", "funnel", "failures", "campaigns", "opt-outs", "archival")


def a_month_of_traffic(today):
    """Two numbers over 30 days, busier on weekdays; three campaigns; opt-outs; two archive runs.
    Returns what each day should show."""
    sales = PhoneNumberFactory(at_meta=False, display_phone_number="15550000001", verified_name="Sales")
    support = PhoneNumberFactory(at_meta=False, display_phone_number="15550000002", verified_name="Support")
    expected = defaultdict(lambda: [0] * 30)
    serial = 0
    for back in range(29, -1, -1):
        day = today - timedelta(days=back)
        weekday = day.weekday() < 5
        for number, name, base in ((sales, "15550000001", 3), (support, "15550000002", 2)):
            received = base + (back * 7) % 4 + (2 if weekday else 0)
            sent = max(1, received - 1 - back % 2)
            for n in range(received):
                serial += 1
                customer_writes(
                    number=number,
                    wa_id=f"4477{serial:08d}",
                    when=at(day, 8 + n % 10, n),
                    wamid=f"wamid.D{serial}",
                )
            for n in range(sent):
                failed = (back + n) % 9 == 0
                reached = "read" if n % 3 else "delivered"
                error = (RE_ENGAGEMENT if n % 2 else UNDELIVERABLE) if failed else None
                business_sends(
                    number=number,
                    when=at(day, 9 + n % 10, n),
                    reached="sent" if failed else reached,
                    error=error,
                )
            expected[f"{name} received"][29 - back] = received
            expected[f"{name} sent"][29 - back] = sent
    campaigns = [
        ("Spring launch", 20, ["read"] * 9 + ["delivered"] * 5 + ["sent"] * 3, 3),
        ("Back in stock", 12, ["read"] * 4 + ["delivered"] * 6 + ["sent"] * 1, 1),
        ("Weekend offer", 4, ["read"] * 6 + ["delivered"] * 1, 1),
    ]
    for name, back, reached, failed in campaigns:
        campaign_with(
            name=name,
            number=sales,
            started=at(today - timedelta(days=back), 10),
            reached=reached,
            failed=failed,
        )
        expected["15550000001 sent"][29 - back] += len(reached) + failed
    for back, count in ((25, 2), (18, 1), (12, 4), (5, 1), (1, 2)):
        for n in range(count):
            Contact.objects.create(
                phone=f"+4474001{back:02d}{n:03d}", opted_out_at=at(today - timedelta(days=back), 11)
            )
    Contact.objects.create(phone="+447400199001", sms_opted_out_at=at(today - timedelta(days=12), 15))
    archive_run(when=at(today - timedelta(days=16), 2), messages=18_400, size=2_380_000)
    archive_run(when=at(today - timedelta(days=2), 2), messages=21_950, size=2_910_000)
    stats_range_rollup(since=today - timedelta(days=29), until=today)
    return sales, support, expected


def chart_data(page, name: str) -> dict:
    return page.evaluate(
        """(id) => {
            const chart = Chart.getChart(document.getElementById(id));
            const datasets = chart.data.datasets.map((d) => ({label: d.label, data: d.data}));
            return {labels: chart.data.labels, datasets: datasets};
        }""",
        f"chart-{name}",
    )


def test_a_manager_reads_the_dashboard(admin_page, screenshot):
    today = timezone.now().astimezone(UTC).date()
    _sales, support, expected = a_month_of_traffic(today)
    page = admin_page

    # when the manager opens the dashboard from the header
    page.locator("#user-tools").get_by_role("link", name="Dashboard").click()

    # then every chart is drawn, each holding the month's figures
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    for name in CHARTS:
        expect(page.locator(f"canvas#chart-{name}")).to_be_visible()
    page.wait_for_function(
        "ids => ids.every((id) => window.Chart && Chart.getChart(document.getElementById(id)))",
        arg=[f"chart-{name}" for name in CHARTS],
    )
    messages = chart_data(page, "messages")
    assert messages["labels"] == [(today - timedelta(days=back)).isoformat() for back in range(29, -1, -1)]
    assert {dataset["label"]: dataset["data"] for dataset in messages["datasets"]} == dict(expected)
    campaigns = chart_data(page, "campaigns")
    assert campaigns["labels"] == ["Spring launch", "Back in stock", "Weekend offer"]
    assert campaigns["datasets"][2]["data"] == [45.0, 33.3, 75.0]  # read
    archival = chart_data(page, "archival")
    assert sum(archival["datasets"][0]["data"]) == 18_400 + 21_950
    opt_outs = chart_data(page, "opt-outs")
    assert [sum(dataset["data"]) for dataset in opt_outs["datasets"]] == [10, 0, 1]  # WhatsApp, email, SMS
    expect(page.locator("[data-card=opt_outs]")).to_have_text("11")
    screenshot(page, "the-month")

    # when they look at one number over the last week
    page.get_by_role("link", name="7 days").click()
    page.get_by_label("Sender number", exact=True).select_option(str(support.pk))

    # then the charts show that number only, and nothing of the sales number's campaigns
    expect(page.get_by_label("Sender number", exact=True)).to_have_value(str(support.pk))
    expect(page.get_by_role("link", name="7 days")).to_have_attribute("aria-current", "page")
    expect(page.get_by_text("No campaigns started in this period.")).to_be_visible()
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-messages'))")
    week = chart_data(page, "messages")
    assert {dataset["label"]: dataset["data"] for dataset in week["datasets"]} == {
        "15550000002 received": expected["15550000002 received"][-7:],
        "15550000002 sent": expected["15550000002 sent"][-7:],
    }
    funnel = chart_data(page, "funnel")["datasets"][0]["data"]
    assert funnel[0] == sum(expected["15550000002 sent"][-7:])
    screenshot(page, "support-this-week")
