"""A campaign is complete only when none of its recipients is in doubt: the admin and the API say
"completed with N in doubt" until an operator decides, and link to those messages, whose in-doubt
page shows the evidence (statuses of the number arriving, none for the message, when it left)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import campaign_chunk_feed, campaign_start, campaign_template_batch
from messaging.inbound.events import inbound_events_drain
from messaging.models import Message, SendAttempt
from tests.campaigns.conftest import contacts, feed_step, whatsapp_campaign
from tests.factories import MessageFactory, UserFactory
from tests.messaging.webhook_helpers import status_body, webhook_post

pytestmark = pytest.mark.usefixtures("no_worker")


@pytest.fixture
def completed_with_one_in_doubt(sender, template) -> tuple[Campaign, Message]:
    contacts(3)
    campaign = campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")
    campaign_chunk_feed(campaign=campaign, batch=campaign_template_batch(campaign), limit=3)
    first, doubtful, third = Message.objects.order_by("id")
    left = timezone.now() - timedelta(minutes=3)
    for message, wamid in ((first, "wamid.first"), (third, "wamid.third")):
        Message.objects.filter(pk=message.pk).update(status="sent", wamid=wamid, sent_at=left)
        SendAttempt.objects.create(message=message, started_at=left, cleared_at=left, outcome="sent")
    Message.objects.filter(pk=doubtful.pk).update(status="in_doubt")
    SendAttempt.objects.create(
        message=doubtful, started_at=left, cleared_at=left, outcome="in_doubt", worker="w1:4242:dead"
    )
    assert feed_step(campaign) == "completed"
    return Campaign.objects.get(pk=campaign.pk), doubtful


def test_the_admin_says_completed_with_one_in_doubt_and_links_to_it(
    admin_client, completed_with_one_in_doubt
):
    campaign, doubtful = completed_with_one_in_doubt
    elsewhere = MessageFactory(direction="outbound", status="in_doubt", phone_number=doubtful.phone_number)
    link = f"/admin/messaging/message/?in_doubt=yes&amp;campaign={campaign.pk}"

    listing = admin_client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert "completed with 1 in doubt" in listing and link in listing
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "completed with 1 in doubt" in page and link in page
    panel = admin_client.get(
        reverse("admin:campaigns_campaign_progress", args=[campaign.pk])
    ).content.decode()
    assert "completed with 1 in doubt" in panel and "in doubt <strong>1</strong>" in panel

    messages = admin_client.get(link.replace("&amp;", "&"))
    assert messages.status_code == 200
    shown = {message.pk for message in messages.context["cl"].result_list}
    assert shown == {doubtful.pk}  # not the other campaign's, nor one in doubt elsewhere
    evidence_url = reverse("admin:messaging_message_in_doubt", args=[doubtful.pk])
    assert evidence_url in messages.content.decode()
    assert elsewhere.pk not in shown


def test_the_in_doubt_page_gives_the_evidence_then_the_decision_completes_the_campaign(
    admin_client, client, api_client, completed_with_one_in_doubt
):
    campaign, doubtful = completed_with_one_in_doubt
    reader = api_client("campaigns.view_campaign")
    answer = reader.get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert (answer["status"], answer["status_display"]) == ("completed", "completed with 1 in doubt")
    assert (answer["progress"]["in_doubt"], answer["progress"]["abandoned"]) == (1, 0)

    # Meta keeps posting statuses for the number's other messages, none for this one.
    assert (
        webhook_post(
            client, status_body(wamid="wamid.third", status="delivered", timestamp=1767225600)
        ).status_code
        == 200
    )
    inbound_events_drain()
    url = reverse("admin:messaging_message_in_doubt", args=[doubtful.pk])
    page = admin_client.get(url)

    assert page.status_code == 200
    evidence = page.context["evidence"]
    assert (evidence.own_status, evidence.number_status, evidence.number_statuses_since) == (
        "",
        "delivered",
        1,
    )
    html = page.content.decode()
    assert "3\xa0minutes ago" in html  # its request left
    assert "delivered, received 0\xa0minutes ago" in html
    assert "most likely it never reached Meta" in html
    assert "w1:4242:dead" in html and 'value="resend"' in html

    decided = admin_client.post(url, {"decision": "abandon", "back": "evidence"})
    assert decided["Location"] == url
    assert Message.objects.get(pk=doubtful.pk).status == "abandoned"
    answer = reader.get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert (answer["status_display"], answer["progress"]["in_doubt"], answer["progress"]["abandoned"]) == (
        "completed",
        0,
        1,
    )
    listing = admin_client.get(reverse("admin:campaigns_campaign_changelist")).content.decode()
    assert "in doubt" not in listing.replace('title="in doubt"', "")


def test_the_in_doubt_page_needs_the_permission_to_view_messages(client, completed_with_one_in_doubt):
    _, doubtful = completed_with_one_in_doubt
    client.force_login(UserFactory(is_staff=True))
    assert client.get(reverse("admin:messaging_message_in_doubt", args=[doubtful.pk])).status_code == 403
