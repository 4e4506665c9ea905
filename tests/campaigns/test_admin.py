"""The campaigns console: build with the audience's count, confirm then start, pause, resume,
cancel; progress with failures by code; the report through a presigned link."""

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from campaigns.reports import campaign_report_write
from campaigns.services import campaign_start
from messaging.models import Message
from tests.campaigns.conftest import contacts, whatsapp_campaign

pytestmark = pytest.mark.usefixtures("no_worker")


def test_build_a_campaign_and_see_its_audience(admin_client, sender, template):
    contacts(4)
    answer = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "Spring offer",
            "channel": "WHATSAPP",
            "phone_number": sender.pk,
            "template": template.pk,
            "template_parameters": '{"header": ["{{name}}"], "body": ["{{name}}", "{{attributes.code}}"]}',
            "audience_tags": "spring",
            "audience_filters": "{}",
            "failure_pause_pct": 20,
        },
    )
    assert answer.status_code == 302, answer.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "4 contacts</strong> now" in page
    assert "<label>Actions:</label>" in page  # the start button's row is named, not a bare colon
    assert reverse("admin:campaigns_campaign_action", args=[campaign.pk, "start"]) in page


def test_actions_ask_for_confirmation_then_run(admin_client, sender, template):
    contacts(3)
    campaign = whatsapp_campaign(sender, template)
    url = reverse("admin:campaigns_campaign_action", args=[campaign.pk, "start"])

    confirm = admin_client.get(url)
    assert "The audience holds <strong>3</strong> contacts now." in confirm.content.decode()
    assert Campaign.objects.get().status == "draft"

    admin_client.post(url)
    assert Campaign.objects.get().status == "running"
    admin_client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "pause"]))
    assert Campaign.objects.get().status == "paused"
    admin_client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "resume"]))
    assert Campaign.objects.get().status == "running"
    answer = admin_client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "resume"]))
    assert answer.status_code == 302  # refused with a message: it is running
    admin_client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "cancel"]))
    assert Campaign.objects.get().status == "cancelled"


def test_progress_shows_failures_by_code_and_the_report_downloads(admin_client, sender, template):
    contacts(3)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    from campaigns.services import campaign_chunk_feed, campaign_template_batch

    campaign_chunk_feed(campaign=campaign, batch=campaign_template_batch(campaign), limit=3)
    Message.objects.filter(pk=Message.objects.order_by("id").first().pk).update(
        status="failed", error_code=131026, error_title="Message undeliverable"
    )
    Message.objects.exclude(status="failed").update(status="delivered")

    panel = admin_client.get(
        reverse("admin:campaigns_campaign_progress", args=[campaign.pk])
    ).content.decode()
    assert "131026" in panel and "Message undeliverable" in panel
    assert "delivered <strong>2</strong>" in panel

    campaign_report_write(campaign=campaign)
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    report_url = reverse("admin:campaigns_campaign_report", args=[campaign.pk])
    assert report_url in page
    redirect = admin_client.get(report_url)
    assert redirect.status_code == 302 and "X-Amz-Signature" in redirect["Location"]
    assert admin_client.get(reverse("admin:campaigns_campaign_changelist")).status_code == 200


def test_without_contacts_view_the_console_hides_the_audience_its_count_the_report_and_recipients(
    client, sender, template
):
    from tests.factories import UserFactory

    contacts(3, name="Ana Secret")
    campaign = whatsapp_campaign(sender, template)
    manager = UserFactory(
        is_staff=True,
        permissions=[
            "campaigns.view_campaign",
            "campaigns.change_campaign",
            "campaigns.run_campaign",
            "campaigns.view_recipient",
        ],
    )
    client.force_login(manager)
    change_url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    draft = client.get(change_url).content.decode()
    confirm = client.get(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "start"]))
    campaign = campaign_start(campaign=campaign, actor=None, source="api")
    campaign_report_write(campaign=campaign)
    started = client.get(change_url).content.decode()
    report = client.get(reverse("admin:campaigns_campaign_report", args=[campaign.pk]))
    recipients = client.get(reverse("admin:campaigns_recipient_changelist"))

    assert "contacts</strong> now" not in draft and "Ana Secret" not in draft
    assert 'name="audience_csv"' not in draft
    assert "hidden: contact data needs the contacts.view_contact permission" in draft
    assert confirm.status_code == 200 and "The audience holds" not in confirm.content.decode()
    assert reverse("admin:campaigns_campaign_report", args=[campaign.pk]) not in started
    assert (report.status_code, recipients.status_code) == (403, 403)


def test_an_audience_csv_past_its_limit_is_a_form_error_on_the_field(
    admin_client, sender, template, settings
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    people = contacts(30, tag="other")
    campaign = whatsapp_campaign(sender, template, audience_tags=[])
    settings.CSV_UPLOAD_MAX_BYTES = 100
    csv = ("phone\n" + "".join(f"{person.phone}\n" for person in people)).encode()

    answer = admin_client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        {
            "name": "Spring offer",
            "channel": "WHATSAPP",
            "phone_number": sender.pk,
            "template": template.pk,
            "template_parameters": '{"header": ["{{name}}"], "body": ["{{name}}", "{{attributes.code}}"]}',
            "audience_tags": "",
            "audience_filters": "{}",
            "failure_pause_pct": 20,
            "audience_csv": SimpleUploadedFile("list.csv", csv, content_type="text/csv"),
        },
    )

    assert answer.status_code == 200
    assert answer.context["adminform"].form.errors["audience_csv"] == [
        "The file is larger than 100 bytes, the most this takes."
    ]
    assert campaign.audience_contacts.count() == 0


def test_running_needs_the_run_permission(client, sender, template):
    from tests.factories import UserFactory

    user = UserFactory(is_staff=True, permissions=["campaigns.view_campaign", "campaigns.change_campaign"])
    client.force_login(user)
    campaign = whatsapp_campaign(sender, template)
    answer = client.post(reverse("admin:campaigns_campaign_action", args=[campaign.pk, "start"]))
    assert answer.status_code == 403
