"""A campaign's lifecycle edges: past its draft it is read-only, under way it cannot be deleted
(service, console, API); a finished one is history, deletable with the delete permission."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Campaign, Recipient
from campaigns.services import campaign_delete, campaign_pause, campaign_start, campaign_update
from core.models import AuditLog
from tests.campaigns.conftest import contacts, whatsapp_campaign
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("no_worker")


def running(sender, template, n: int = 2) -> Campaign:
    contacts(n)
    return campaign_start(campaign=whatsapp_campaign(sender, template), actor=None, source="api")


def finished(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(status="completed", finished_at=timezone.now())
    campaign.refresh_from_db()
    return campaign


def test_services_refuse_to_change_or_delete_a_campaign_under_way(sender, template):
    campaign = running(sender, template)

    with pytest.raises(ValidationError) as changed:
        campaign_update(campaign=campaign, actor=None, source="api", name="Renamed")
    with pytest.raises(ValidationError) as deleted:
        campaign_delete(campaign=campaign, actor=None, source="api")
    paused = campaign_pause(campaign=campaign, actor=None, source="api")
    with pytest.raises(ValidationError) as deleted_paused:
        campaign_delete(campaign=paused, actor=None, source="api")

    assert changed.value.message_dict == {
        "status": [
            "A running campaign cannot be changed: only a draft can (pause, resume or cancel it instead)."
        ]
    }
    assert deleted.value.message_dict == {
        "status": ["A running campaign cannot be deleted: cancel it first."]
    }
    assert "A paused campaign cannot be deleted" in deleted_paused.value.messages[0]
    assert Campaign.objects.get().name == "Spring offer"


def test_an_update_from_a_stale_draft_does_not_undo_a_start(sender, template):
    contacts(1)
    draft = whatsapp_campaign(sender, template)
    stale = Campaign.objects.get(pk=draft.pk)
    campaign_start(campaign=draft, actor=None, source="api")

    with pytest.raises(ValidationError, match="running campaign cannot be changed"):
        campaign_update(campaign=stale, actor=None, source="api", name="Renamed")

    assert Campaign.objects.get().status == "running"


def test_a_finished_campaign_is_deleted_with_its_recipients(sender, template):
    campaign = finished(running(sender, template))
    with pytest.raises(ValidationError, match=r"completed campaign cannot be changed: only a draft can\.'"):
        campaign_update(campaign=campaign, actor=None, source="api", name="Renamed")

    campaign_delete(campaign=campaign, actor=None, source="api")

    assert not Campaign.objects.exists() and not Recipient.objects.exists()
    assert AuditLog.objects.filter(action="campaign.delete").count() == 1


def test_a_running_campaign_s_page_is_read_only_with_its_controls(admin_client, sender, template):
    campaign = running(sender, template)
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    page = admin_client.get(url).content.decode()
    post = admin_client.post(url, {"name": "Renamed"})

    assert 'name="_save"' not in page and 'name="_continue"' not in page
    # its parameters as the form labelled them, not as JSON
    assert "<strong>Body {{2}}</strong>: {{attributes.code}}" in page
    assert '"body": [' not in page
    assert reverse("admin:campaigns_campaign_delete", args=[campaign.pk]) not in page
    assert reverse("admin:campaigns_campaign_action", args=[campaign.pk, "pause"]) in page
    assert reverse("admin:campaigns_campaign_action", args=[campaign.pk, "cancel"]) in page
    assert post.status_code == 403
    assert (
        admin_client.post(reverse("admin:campaigns_campaign_delete", args=[campaign.pk])).status_code == 403
    )
    assert Campaign.objects.get().name == "Spring offer"


def test_a_draft_keeps_its_save_buttons_and_a_finished_one_its_delete_link(admin_client, sender, template):
    draft = whatsapp_campaign(sender, template, name="Draft")
    done = finished(running(sender, template))

    draft_page = admin_client.get(
        reverse("admin:campaigns_campaign_change", args=[draft.pk])
    ).content.decode()
    done_page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[done.pk])).content.decode()

    assert 'name="_save"' in draft_page
    assert 'name="_save"' not in done_page
    assert reverse("admin:campaigns_campaign_delete", args=[done.pk]) in done_page


def test_the_delete_action_refuses_campaigns_under_way_naming_them(admin_client, sender, template):
    under_way = running(sender, template)
    draft = whatsapp_campaign(sender, template, name="Autumn draft")
    changelist = reverse("admin:campaigns_campaign_changelist")

    answer = admin_client.post(
        changelist,
        {"action": "delete_selected", "_selected_action": [under_way.pk, draft.pk], "post": "yes"},
        follow=True,
    )

    assert (
        "Nothing was deleted: Spring offer (running) is under way. Cancel a campaign before deleting it; "
        "drafts and finished campaigns can be deleted." in answer.content.decode()
    )
    assert Campaign.objects.count() == 2


def test_the_delete_action_deletes_finished_campaigns_and_their_recipients(admin_client, sender, template):
    done = finished(running(sender, template, n=3))
    changelist = reverse("admin:campaigns_campaign_changelist")

    confirm = admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [done.pk]})
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "3 recipients" in page and "have permission" not in page

    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [done.pk], "post": "yes"})
    assert not Campaign.objects.exists() and not Recipient.objects.exists()


def test_the_delete_page_of_a_finished_campaign_counts_its_recipients(admin_client, sender, template):
    done = finished(running(sender, template, n=3))
    url = reverse("admin:campaigns_campaign_delete", args=[done.pk])

    assert "3 recipients" in admin_client.get(url).content.decode()
    admin_client.post(url, {"post": "yes"})

    assert not Campaign.objects.exists()


def test_the_api_answers_400_naming_the_status_for_a_campaign_under_way(sender, template):
    campaign = running(sender, template)
    client = APIClient()
    client.force_authenticate(
        UserFactory(
            permissions=["campaigns.view_campaign", "campaigns.change_campaign", "campaigns.delete_campaign"]
        )
    )

    changed = client.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "Renamed"}, format="json")
    deleted = client.delete(f"/api/v1/campaigns/{campaign.pk}/")

    assert changed.status_code == 400 and "running campaign cannot be changed" in changed.json()["status"][0]
    assert deleted.status_code == 400 and deleted.json() == {
        "status": ["A running campaign cannot be deleted: cancel it first."]
    }
    assert Campaign.objects.get().name == "Spring offer"
