"""Campaign reports in S3: their content, a multipart upload when large, the presigned link."""

import json

import httpx
import pytest
from django.conf import settings
from django.db import connection

from campaigns.models import Campaign, Recipient
from campaigns.reports import campaign_report_task, campaign_report_url, campaign_report_write
from campaigns.services import campaign_cancel, campaign_start
from core.aws import multipart_uploads_pending, object_head
from core.storage import reports_storage
from messaging.outbound.drain import outgoing_drain
from tests.campaigns.conftest import contacts, feed_step, whatsapp_campaign

pytestmark = pytest.mark.usefixtures("transactional_db", "no_worker")


def s3_json(key: str) -> dict:
    """The report at `key`, read back through the reports storage."""
    with reports_storage().open(key.removeprefix(settings.REPORTS_PREFIX)) as file:
        return json.loads(file.read())


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
    answer = httpx.get(campaign_report_url(campaign=campaign))
    assert json.loads(answer.content) == document
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="campaign-{campaign.pk}-spring-offer.json"; '
        f"filename*=UTF-8''campaign-{campaign.pk}-spring-offer.json"
    )


def test_a_large_report_is_streamed_in_parts(sender, template, settings):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_contact (phone, wa_id, user_id, name, email, tags, language, attributes,"
            " opt_in_source, opt_out_source, created_at, updated_at)"
            " SELECT '+44740' || lpad(n::text, 7, '0'), '', '', 'Person ' || n, '', ARRAY['spring'], 'en',"
            " '{\"code\": \"x\"}', '', '', now(), now() FROM generate_series(1, 40000) n"
        )
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    campaign = campaign_cancel(campaign=campaign, actor=None, source="api")
    settings.AWS_S3_FILE_BUFFER_SIZE = 5 * 1024 * 1024  # S3's least part

    key = campaign_report_write(campaign=campaign)

    assert object_head(key)["ETag"].strip('"').endswith(("-2", "-3")), "a multipart upload of 2 or 3 parts"
    document = s3_json(key)
    assert (document["totalRecipients"], document["cancelledCount"]) == (40000, 40000)
    assert len(document["recipients"]) == 40000
    assert Recipient.objects.filter(campaign=campaign).count() == 40000
    assert Campaign.objects.get(pk=campaign.pk).report_written_at is not None


def test_a_report_that_fails_half_way_leaves_the_previous_one_and_no_upload(sender, template, monkeypatch):
    contacts(2)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    campaign = campaign_cancel(campaign=campaign, actor=None, source="api")
    key = campaign_report_write(campaign=campaign)
    before = s3_json(key)

    def broken(campaign, as_of):
        yield '{"jobId": 1, "recipients": ['
        raise RuntimeError("the database went away")

    monkeypatch.setattr("campaigns.reports._document", broken)
    with pytest.raises(RuntimeError, match="went away"):
        campaign_report_write(campaign=campaign)

    assert s3_json(key) == before
    assert multipart_uploads_pending(key) == []
