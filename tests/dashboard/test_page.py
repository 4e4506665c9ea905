import json
import re
from datetime import UTC, timedelta

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone

from dashboard.rollups import stats_range_rollup
from tests.dashboard.seed import (
    RE_ENGAGEMENT,
    archive_run,
    at,
    business_sends,
    campaign_with,
    customer_writes,
)
from tests.factories import PhoneNumberFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/admin/dashboard/"
CHART_JS = "vendor/chartjs/4.6.1/chart.umd.min.js"


def chart(response, name: str) -> dict:
    found = re.search(
        rf'<script id="chart-{name}-data" type="application/json">(.*?)</script>', response.content.decode()
    )
    assert found, f"no data for chart {name}"
    return json.loads(found.group(1))


@pytest.fixture
def today():
    return timezone.now().astimezone(UTC).date()


@pytest.fixture
def week(today):
    """Two numbers over the last days: customers writing, replies read, delivered and failed, a
    campaign, an archive run."""
    sales = PhoneNumberFactory(at_meta=False, display_phone_number="15550000001")
    support = PhoneNumberFactory(at_meta=False, display_phone_number="15550000002")
    yesterday = today - timedelta(days=1)
    for n in range(4):
        customer_writes(number=sales, wa_id=f"4477009{n:05d}", when=at(yesterday, 9, n), wamid=f"wamid.S{n}")
    customer_writes(number=support, wa_id="447700950000", when=at(today, 0, 1), wamid="wamid.T0")
    business_sends(number=sales, when=at(yesterday, 10), reached="read")
    business_sends(number=sales, when=at(yesterday, 10), reached="delivered")
    business_sends(number=support, when=at(yesterday, 11), error=RE_ENGAGEMENT)
    business_sends(number=support, when=at(yesterday, 11), error=RE_ENGAGEMENT)
    campaign_with(
        name="Spring",
        number=sales,
        started=at(yesterday, 12),
        reached=["read", "delivered", "sent"],
        failed=1,
    )
    archive_run(when=at(today - timedelta(days=3), 2), messages=1200, size=345_678)
    stats_range_rollup(since=today - timedelta(days=8), until=today)
    return sales, support


def test_the_page_needs_the_permission(client, db):
    assert client.get(URL).status_code == 302  # not logged in: to the login page
    client.force_login(UserFactory(is_staff=True, permissions=["messaging.view_conversation"]))
    assert client.get(URL).status_code == 403
    client.force_login(UserFactory(is_staff=True, permissions=["dashboard.view_dashboard"]))
    response = client.get(URL)
    assert response.status_code == 200
    assert "No messages in this period" in response.content.decode()


def test_the_charts_data_is_the_period_s_figures(admin_client, week, today):
    response = admin_client.get(URL, {"days": "7"})
    assert response.status_code == 200
    days = [(today - timedelta(days=back)).isoformat() for back in range(6, -1, -1)]

    messages = chart(response, "messages")
    assert messages["labels"] == days
    by_label = {dataset["label"]: dataset["data"] for dataset in messages["datasets"]}
    assert by_label == {
        "15550000001 received": [0, 0, 0, 0, 0, 4, 0],
        "15550000001 sent": [0, 0, 0, 0, 0, 6, 0],  # two replies and four campaign messages
        "15550000002 received": [0, 0, 0, 0, 0, 0, 1],
        "15550000002 sent": [0, 0, 0, 0, 0, 2, 0],
    }
    funnel = chart(response, "funnel")
    assert funnel["labels"] == ["Sent", "Delivered", "Read", "Failed"]
    assert funnel["datasets"][0]["data"] == [8, 4, 2, 3]
    failures = chart(response, "failures")
    assert failures["labels"] == ["131047: Re-engagement message", "131026: Message undeliverable"]
    assert failures["datasets"][0]["data"] == [2, 1]

    campaigns = chart(response, "campaigns")
    assert campaigns["labels"] == ["Spring"]
    assert campaigns["recipients"] == [4]
    assert {dataset["key"]: dataset["data"] for dataset in campaigns["datasets"]} == {
        "sent": [100.0],
        "delivered": [50.0],
        "read": [25.0],
        "failed": [25.0],
    }
    archival = chart(response, "archival")
    assert archival["datasets"][0]["data"] == [0, 0, 0, 1200, 0, 0, 0]
    assert archival["datasets"][1]["data"] == [0, 0, 0, 345_678, 0, 0, 0]

    cards = response.context["cards"]
    assert cards["messages_today"] == 1
    assert cards["delivery_rate"] == 50.0
    assert cards["read_rate"] == 25.0
    assert cards["failed"] == 3
    assert 'src="/static/vendor/chartjs/4.6.1/chart.umd.min.js"' in response.content.decode()


def test_the_number_filter_and_the_period(admin_client, week, today):
    _sales, support = week
    response = admin_client.get(URL, {"days": "30", "number": str(support.pk)})
    messages = chart(response, "messages")
    assert len(messages["labels"]) == 30
    assert [dataset["label"] for dataset in messages["datasets"]] == [
        "15550000002 received",
        "15550000002 sent",
    ]
    assert chart(response, "funnel")["datasets"][0]["data"] == [2, 0, 0, 2]
    assert "No campaigns started in this period" in response.content.decode()  # Spring was sent from sales


@pytest.mark.parametrize("query", [{"days": "abc"}, {"days": "8"}, {"number": "²"}, {"number": "9" * 40}])
def test_odd_parameters_fall_back_to_the_defaults(admin_client, query):
    response = admin_client.get(URL, query)
    assert response.status_code == 200
    assert response.context["days"] == 30
    assert response.context["number_id"] is None


def test_the_dashboard_is_linked_for_those_who_may_see_it(client, db):
    client.force_login(UserFactory(is_staff=True, permissions=["dashboard.view_dashboard"]))
    assert 'href="/admin/dashboard/"' in client.get("/admin/").content.decode()
    client.force_login(UserFactory(is_staff=True))
    assert 'href="/admin/dashboard/"' not in client.get("/admin/").content.decode()


def test_chart_js_is_bundled_and_served(client, db, settings):
    path = finders.find(CHART_JS)
    assert path, "Chart.js is not among the static files"
    with open(path, encoding="utf-8") as vendored:
        assert vendored.read(40).startswith("/*!\n * Chart.js v4.6.1")
    settings.DEBUG = True  # whitenoise serves from the finders without collectstatic
    response = client.get(f"/static/{CHART_JS}")
    assert response.status_code == 200
    assert b"Chart.js v4.6.1" in b"".join(response.streaming_content)[:100]
