"""Campaign reports in S3: their content, a multipart upload when large, the presigned link."""

import json

import httpx
import pytest
from django.db import connection

from campaigns import reports
from campaigns.models import Campaign, Recipient
from campaigns.reports import campaign_report_url, campaign_report_write
from campaigns.services import campaign_cancel, campaign_start
from campaigns.tasks import campaign_report_task
from config.aws import s3_client
from messaging.outbound import outgoing_drain
from tests.campaigns.conftest import contacts, feed_step, whatsapp_campaign

pytestmark = pytest.mark.usefixtures("transactional_db", "no_worker")


def s3_json(key: str) -> dict:
    from django.conf import settings

    return json.loads(s3_client().get_object(Bucket=settings.AWS_STORAGE_BUCKET_NAME, Key=key)["Body"].read())


def test_a_completed_campaign_s_report_lists_every_recipient_with_its_message(sandbox, sender, template):
    people = contacts(4)
    sandbox.fault(status=400, code=131026, message="Message undeliverable", times=1)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    for _ in range(5):
        if feed_step(campaign) == "completed":
            break
        outgoing_drain()
    campaign.refresh_from_db()
    assert campaign.status == "completed"

    assert campaign_report_task.apply(args=[campaign.pk]).get() == campaign_report_write(campaign=campaign)

    campaign.refresh_from_db()
    document = s3_json(campaign.report_key)
    assert campaign.report_key == f"reports/campaign-{campaign.pk}-spring-offer.json"
    assert {key: document[key] for key in ("jobId", "channel", "status", "totalRecipients")} == {
        "jobId": campaign.pk,
        "channel": "WHATSAPP",
        "status": "completed",
        "totalRecipients": 4,
    }
    assert (document["sentCount"], document["failedCount"], document["deliveredCount"]) == (3, 1, 0)
    assert document["startedAt"] and document["finishedAt"]
    rows = document["recipients"]
    assert [row["contact"] for row in rows] == [person.pk for person in people]
    failed = [row for row in rows if row["status"] == "failed"]
    assert failed[0]["error"]["code"] == "131026" and failed[0]["messageId"] is None
    sent = [row for row in rows if row["status"] == "sent"]
    assert all(row["messageId"].startswith("wamid.") and row["sentAt"] for row in sent)
    assert {row["address"] for row in rows} == {person.wa_id or person.phone.lstrip("+") for person in people}
    assert json.loads(httpx.get(campaign_report_url(campaign=campaign)).content) == document


def test_a_large_report_is_streamed_in_parts(sender, template, monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_contact (phone, wa_id, user_id, name, email, tags, language, attributes,"
            " opt_in_source, opt_out_source, created_at, updated_at)"
            " SELECT '+44740' || lpad(n::text, 7, '0'), '', '', 'Person ' || n, '', ARRAY['spring'], 'en',"
            " '{\"code\": \"x\"}', '', '', now(), now() FROM generate_series(1, 40000) n"
        )
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    campaign = campaign_cancel(campaign=campaign, actor=None, source="api")
    parts = []
    real = reports._S3Writer._part

    def counted(self):
        parts.append(len(self.buffer))
        real(self)

    monkeypatch.setattr(reports._S3Writer, "_part", counted)
    monkeypatch.setattr(reports, "PART_BYTES", 5 * 1024 * 1024)

    key = campaign_report_write(campaign=campaign)

    assert len(parts) >= 2
    document = s3_json(key)
    assert (document["totalRecipients"], document["cancelledCount"]) == (40000, 40000)
    assert len(document["recipients"]) == 40000
    assert Recipient.objects.filter(campaign=campaign).count() == 40000
    assert Campaign.objects.get(pk=campaign.pk).report_written_at is not None
