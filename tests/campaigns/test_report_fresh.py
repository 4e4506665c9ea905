"""A campaign's report stays true after it finishes (late statuses write it again, it states its
moment), downloads as a CSV (escaped, contact data only for who may read it), and its recipients
show their messages' real state."""

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Campaign, Recipient
from campaigns.reports import campaign_report_task, campaign_reports_refresh
from campaigns.services import campaign_chunk_feed, campaign_start, campaign_template_batch
from core.storage import reports_storage
from messaging.models import Message
from messaging.statuses import status_record
from tests.campaigns.conftest import contacts, whatsapp_campaign
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.usefixtures("transactional_db", "no_worker")


def s3_json(key: str) -> dict:
    with reports_storage().open(key.removeprefix(settings.REPORTS_PREFIX)) as file:
        return json.loads(file.read())


def sent_campaign(sender, template, n: int = 3, **fields) -> Campaign:
    """A completed campaign whose messages Meta accepted (sent, with their wamids)."""
    campaign = campaign_start(
        campaign=whatsapp_campaign(sender, template, **fields), actor=None, source="api"
    )
    campaign_chunk_feed(campaign=campaign, batch=campaign_template_batch(campaign), limit=n)
    for message in Message.objects.filter(campaign_recipient__campaign=campaign):
        Message.objects.filter(pk=message.pk).update(
            status="sent", wamid=f"wamid.{message.pk}", sent_at=timezone.now()
        )
    Campaign.objects.filter(pk=campaign.pk).update(status="completed", finished_at=timezone.now())
    campaign.refresh_from_db()
    return campaign


def test_a_late_status_writes_the_report_again_once_stating_its_moment(
    sender, template, monkeypatch, admin_client
):
    contacts(3)
    campaign = sent_campaign(sender, template)
    campaign_report_task.apply(args=[campaign.pk]).get()
    campaign.refresh_from_db()
    first = s3_json(campaign.report_key)
    assert first["deliveredCount"] == 0
    assert first["asOf"] == campaign.report_written_at.isoformat()
    monkeypatch.setattr("campaigns.reports.REPORT_REFRESH_EVERY_S", 0)
    assert campaign_reports_refresh() == []  # nothing changed since

    late = Message.objects.filter(campaign_recipient__campaign=campaign).order_by("id").first()
    status_record(wamid=late.wamid, status="delivered", at=timezone.now(), payload={})
    change_page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    assert "statuses received since: 1" in change_page.content.decode()
    monkeypatch.setattr("campaigns.reports.REPORT_REFRESH_EVERY_S", 300)
    assert campaign_reports_refresh() == []  # written less than 5 minutes ago: it waits
    monkeypatch.setattr("campaigns.reports.REPORT_REFRESH_EVERY_S", 0)
    assert campaign_reports_refresh() == [campaign.pk]

    campaign_report_task.apply(args=[campaign.pk]).get()
    campaign_report_task.apply(args=[campaign.pk]).get()  # twice: the same report

    campaign.refresh_from_db()
    second = s3_json(campaign.report_key)
    assert (second["deliveredCount"], second["sentCount"]) == (1, 3)
    assert second["asOf"] == campaign.report_written_at.isoformat() > first["asOf"]
    assert campaign_reports_refresh() == []
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    moment = campaign.report_written_at.astimezone(UTC)
    assert f'Report as of <time datetime="{campaign.report_written_at.isoformat()}">' in page
    assert f"{moment:%Y-%m-%d %H:%M} UTC" in page and "statuses received since" not in page


def test_a_report_is_not_written_again_a_week_after_the_end(sender, template, monkeypatch):
    contacts(2)
    campaign = sent_campaign(sender, template)
    campaign_report_task.apply(args=[campaign.pk]).get()
    Campaign.objects.filter(pk=campaign.pk).update(finished_at=datetime(2020, 1, 1, tzinfo=UTC))
    late = Message.objects.filter(campaign_recipient__campaign=campaign).first()
    status_record(wamid=late.wamid, status="read", at=timezone.now(), payload={})
    monkeypatch.setattr("campaigns.reports.REPORT_REFRESH_EVERY_S", 0)

    assert campaign_reports_refresh() == []


def csv_rows(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_report_lists_every_recipient_escaped_with_contact_data_only_for_who_may_read_it(
    sender, template, admin_client, client
):
    ContactFactory(tags=["spring"], name='=HYPERLINK("http://x")', attributes={"code": "C1"})
    ContactFactory(tags=["spring"], name="Ana", attributes={"code": "C2"})
    campaign = sent_campaign(sender, template, n=2)
    first, second = Message.objects.filter(campaign_recipient__campaign=campaign).order_by("id")
    status_record(wamid=first.wamid, status="read", at=timezone.now(), payload={})
    status_record(
        wamid=second.wamid,
        status="failed",
        at=timezone.now(),
        payload={"errors": [{"code": 131026, "title": "Message undeliverable"}]},
    )
    url = reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk])

    full = admin_client.get(url)
    rows = csv_rows(full)

    assert full["Content-Type"] == "text/csv; charset=utf-8"
    assert full["Content-Disposition"].startswith(
        f'attachment; filename="campaign-{campaign.pk}-spring-offer-'
    )
    assert [row["name"] for row in rows] == ['\'=HYPERLINK("http://x")', "Ana"]
    assert [(row["status"], row["message_status"]) for row in rows] == [
        ("queued", "read"),
        ("queued", "failed"),
    ]
    assert (rows[1]["error_code"], rows[1]["error_title"]) == ("131026", "Message undeliverable")
    assert rows[0]["phone"].startswith("+") and rows[0]["read_at"] and rows[0]["sent_at"]
    assert rows[1]["failed_at"] and not rows[1]["read_at"]

    client.force_login(UserFactory(is_staff=True, permissions=["campaigns.view_campaign"]))
    ids_only = csv_rows(client.get(url))
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()

    assert list(ids_only[0]) == [
        "recipient_id",
        "contact_id",
        "status",
        "message_status",
        "error_code",
        "error_title",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
    ]
    assert [row["contact_id"] for row in ids_only] == [row["contact_id"] for row in rows]
    assert url in page and "Ana" not in page
    assert reverse("admin:campaigns_campaign_report", args=[campaign.pk]) not in page
    api = APIClient()
    api.force_authenticate(UserFactory(permissions=["campaigns.view_campaign"]))
    answer = api.get(f"/api/v1/campaigns/{campaign.pk}/report/csv/")
    assert answer.status_code == 200 and "HYPERLINK" not in b"".join(answer.streaming_content).decode()
    api.force_authenticate(UserFactory(permissions=["contacts.view_contact"]))
    assert api.get(f"/api/v1/campaigns/{campaign.pk}/report/csv/").status_code == 403


def test_recipients_show_their_message_s_real_state_filtered_by_campaign_and_state(
    sender, template, admin_client
):
    contacts(3)
    campaign = sent_campaign(sender, template)
    other = sent_campaign(sender, template, name="Other")  # the same contacts, another campaign
    messages = list(Message.objects.filter(campaign_recipient__campaign=campaign).order_by("id"))
    status_record(wamid=messages[0].wamid, status="read", at=timezone.now(), payload={})
    status_record(
        wamid=messages[1].wamid,
        status="failed",
        at=timezone.now(),
        payload={"errors": [{"code": 131049, "title": "Meta chose not to deliver"}]},
    )
    changelist = reverse("admin:campaigns_recipient_changelist")

    page = admin_client.get(f"{changelist}?campaign={campaign.pk}")
    failed = admin_client.get(f"{changelist}?campaign={campaign.pk}&state=failed")
    change_page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    shown = [row.state for row in page.context["cl"].result_list]
    assert shown == ["read", "failed", "sent"]
    assert "Queued" not in page.content.decode() and ">read<" in page.content.decode()
    assert [row.pk for row in failed.context["cl"].result_list] == [
        Recipient.objects.get(message=messages[1]).pk
    ]
    assert "131049 Meta chose not to deliver" in failed.content.decode()
    assert f"{changelist}?campaign={campaign.pk}" in change_page.content.decode()
    assert {row.campaign_id for row in admin_client.get(changelist).context["cl"].result_list} == {
        campaign.pk,
        other.pk,
    }


def test_the_recipients_page_takes_as_many_queries_for_30_rows_as_for_3(sender, template, admin_client):
    contacts(3)
    small = sent_campaign(sender, template, n=3)
    contacts(27)
    large = sent_campaign(sender, template, n=30, name="Large")
    changelist = reverse("admin:campaigns_recipient_changelist")
    admin_client.get(changelist)  # the session, content types: cached after the first page

    counted = []
    for campaign in (small, large):
        with CaptureQueriesContext(connection) as queries:
            answer = admin_client.get(f"{changelist}?campaign={campaign.pk}")
        assert len(answer.context["cl"].result_list) == campaign.total_recipients
        counted.append(len(queries))

    assert counted[0] == counted[1]
