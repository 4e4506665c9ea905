"""The campaign form without JSON: the channel's fields only, parameters from labelled inputs, the
preview and audience count of the unsaved form, and what stops a draft from starting."""

import json

import pytest
from django.urls import reverse

from campaigns.models import Campaign
from messaging.models import Template
from tests.campaigns.conftest import contacts, whatsapp_campaign
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.usefixtures("no_worker")

ADD = "admin:campaigns_campaign_add"
PREVIEW = "admin:campaigns_campaign_form_preview"
AUDIENCE = "admin:campaigns_campaign_form_audience"
WELCOME_COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Hi {{1}}", "example": {"header_text": ["Ana"]}},
    {
        "type": "BODY",
        "text": "Our shop in {{1}} opens on {{2}}.",
        "example": {"body_text": [["Lisbon", "Monday"]]},
    },
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {
        "type": "BUTTONS",
        "buttons": [
            {
                "type": "URL",
                "text": "Directions",
                "url": "https://shop.example/{{1}}",
                "example": ["https://shop.example/lx"],
            }
        ],
    },
]


@pytest.fixture
def welcome(sender):
    return Template.objects.create(
        waba_id=sender.waba_id,
        name="shop_opening",
        language="en",
        status="APPROVED",
        components=WELCOME_COMPONENTS,
    )


def form(**fields) -> dict:
    return {
        "name": "Opening",
        "channel": "WHATSAPP",
        "audience_filters": "{}",
        "failure_pause_pct": 20,
    } | fields


def test_a_campaign_keeps_only_its_channel_s_fields(admin_client, sender, welcome):
    answer = admin_client.post(
        reverse(ADD),
        form(
            channel="EMAIL",
            phone_number=sender.pk,
            template=welcome.pk,
            **{"param-body-0-1": "{{attributes.city}}"},
            subject="Hello {{first_name|there}}",
            body="We open soon.",
        ),
    )
    assert answer.status_code == 302, answer.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert (campaign.phone_number, campaign.template, campaign.template_parameters) == (None, None, {})
    assert (campaign.subject, campaign.body) == ("Hello {{first_name|there}}", "We open soon.")

    change = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    answer = admin_client.post(change, form(channel="SMS", subject="left over", body="Open on Monday"))
    assert answer.status_code == 302, answer.context["adminform"].form.errors
    campaign.refresh_from_db()
    assert (campaign.subject, campaign.body) == ("", "Open on Monday")

    answer = admin_client.post(change, form(phone_number=sender.pk, body="left over"))
    campaign.refresh_from_db()
    assert (campaign.channel, campaign.body) == ("WHATSAPP", "")


def test_parameters_come_from_labelled_inputs_and_are_stored_by_component(admin_client, sender, welcome):
    answer = admin_client.post(
        reverse(ADD),
        form(
            phone_number=sender.pk,
            template=welcome.pk,
            template_parameters='{"body": ["stale"]}',  # a browser with the script posts the inputs
            **{
                "param-header-0-1": "{{first_name|there}}",
                "param-body-0-1": "{{attributes.city}}",
                "param-body-0-2": "Monday",
                "param-button-0-1": "{{attributes.city|lx}}",
            },
        ),
    )
    assert answer.status_code == 302, answer.context["adminform"].form.errors
    campaign = Campaign.objects.get()
    assert campaign.template_parameters == {
        "header": ["{{first_name|there}}"],
        "body": ["{{attributes.city}}", "Monday"],
        "button.0": ["{{attributes.city|lx}}"],
    }
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    config = json.loads(
        page.content.decode()
        .split('id="campaign-form-config" type="application/json">')[1]
        .split("</script>")[0]
    )
    slots = config["templates"][str(welcome.pk)]["slots"]
    assert [(slot["label"], slot["example"]) for slot in slots] == [
        ("Header {{1}}", "Ana"),
        ("Body {{1}}", "Lisbon"),
        ("Body {{2}}", "Monday"),
        ("Button 1 {{1}}", "https://shop.example/lx"),
    ]
    assert config["values"] == {
        "header-0-1": "{{first_name|there}}",
        "body-0-1": "{{attributes.city}}",
        "body-0-2": "Monday",
        "button-0-1": "{{attributes.city|lx}}",
    }


def test_an_unknown_placeholder_is_an_error_on_the_form(admin_client, sender, welcome):
    answer = admin_client.post(
        reverse(ADD), form(phone_number=sender.pk, template=welcome.pk, **{"param-body-0-1": "{{nickname}}"})
    )
    assert answer.status_code == 200
    assert (
        "Unknown placeholder {{nickname}}"
        in answer.context["adminform"].form.errors["template_parameters"][0]
    )
    assert not Campaign.objects.exists()


def test_the_preview_fills_the_template_for_the_sample_contact_with_the_send_path_s_renderer(
    admin_client, sender, welcome
):
    ana = ContactFactory(name="Ana Lima", tags=["shop"], attributes={"city": "Porto"})
    nameless = ContactFactory(name="", tags=["shop"], attributes={})
    state = form(
        phone_number=sender.pk,
        template=welcome.pk,
        audience_tags="shop",
        **{
            "param-header-0-1": "{{first_name|there}}",
            "param-body-0-1": "{{attributes.city|your town}}",
            "param-body-0-2": "",
            "param-button-0-1": "x",
        },
    )

    first = admin_client.post(reverse(PREVIEW), state).json()
    picked = admin_client.post(reverse(PREVIEW), state | {"preview_contact": nameless.pk}).json()

    assert first["contact"] == {"id": ana.pk, "label": str(ana)}
    assert [each["id"] for each in first["contacts"]] == [ana.pk, nameless.pk]
    assert first["parts"] == {
        "header": "Hi Ana",
        "media": "",
        "body": "Our shop in Porto opens on {{2}}.",
        "footer": "Reply STOP to opt out",
        "buttons": ["Directions"],
    }
    assert first["error"] == "Parameter 2 of the body is empty for this contact."
    assert (picked["parts"]["header"], picked["parts"]["body"]) == (
        "Hi there",
        "Our shop in your town opens on {{2}}.",
    )

    email = admin_client.post(
        reverse(PREVIEW),
        form(channel="EMAIL", subject="{{first_name}}, we open", body="See you in {{attributes.city}}."),
    ).json()
    assert (email["subject"], email["body"]) == ("Ana, we open", "See you in Porto.")


def test_the_audience_count_follows_tags_and_filters_of_the_unsaved_form(admin_client):
    ContactFactory(tags=["shop"], attributes={"city": "Porto"}, language="pt")
    ContactFactory(tags=["shop"], attributes={"city": "Lisbon"}, language="pt")
    ContactFactory(tags=["news"], attributes={"city": "Porto"}, language="en")
    ContactFactory(tags=[], attributes={"city": "Porto"}, language="pt")

    def count(**fields) -> int:
        answer = admin_client.post(reverse(AUDIENCE), form(**fields))
        assert answer.status_code == 200, answer.json()
        return answer.json()["count"]

    assert count() == 4
    assert count(audience_tags="shop") == 2
    assert count(audience_tags=["shop", "news"]) == 3
    assert count(audience_tags=["shop", "news"], audience_filters='{"attributes": {"city": "Porto"}}') == 2
    assert count(audience_filters='{"attributes": {"city": "Porto"}, "language": "en"}') == 1
    refused = admin_client.post(reverse(AUDIENCE), form(audience_filters='{"colour": "red"}'))
    assert (
        refused.status_code == 400
        and "Unknown filter colour" in refused.json()["errors"]["audience_filters"][0]
    )


def test_an_incomplete_draft_saves_and_says_what_stops_it_from_starting(admin_client, sender, welcome):
    answer = admin_client.post(reverse(ADD), form(), follow=True)

    campaign = Campaign.objects.get()
    assert campaign.status == "draft"
    page = answer.content.decode()
    assert "Saved as a draft. It cannot start yet" in page
    change = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    for problem in ("Choose a sender number.", "Choose an approved template.", "The audience is empty."):
        assert problem in change
    assert 'class="button campaign-start-blocked" disabled' in change
    assert reverse("admin:campaigns_campaign_action", args=[campaign.pk, "start"]) not in change

    refused = admin_client.post(
        reverse("admin:campaigns_campaign_action", args=[campaign.pk, "start"]), follow=True
    ).content.decode()
    assert "Choose a sender number." in refused
    assert Campaign.objects.get().status == "draft"

    contacts(2)
    saved = admin_client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        form(
            phone_number=sender.pk,
            template=welcome.pk,
            audience_tags="spring",
            **{"param-header-0-1": "{{name}}", "param-body-0-1": "Porto", "param-button-0-1": "lx"},
        ),
    )
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    change = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "Fill parameter Body {{2}}." in change and "Choose a sender number." not in change


def test_a_complete_draft_shows_its_start_button(admin_client, sender, template):
    contacts(2)
    campaign = whatsapp_campaign(sender, template)
    change = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "cannot start yet" not in change
    assert reverse("admin:campaigns_campaign_action", args=[campaign.pk, "start"]) in change


def test_the_form_s_endpoints_need_campaign_rights_and_the_count_contact_data(client, db):
    ContactFactory(name="Ana Secret", tags=["shop"])
    state = form(channel="SMS", body="Hi {{first_name|there}}", audience_tags="shop")
    client.force_login(UserFactory(is_staff=True, permissions=["campaigns.view_campaign"]))
    assert client.post(reverse(PREVIEW), state).status_code == 403
    assert client.post(reverse(AUDIENCE), state).status_code == 403

    client.force_login(
        UserFactory(is_staff=True, permissions=["campaigns.view_campaign", "campaigns.change_campaign"])
    )
    preview = client.post(reverse(PREVIEW), state)
    assert preview.status_code == 200
    assert preview.json()["body"] == "Hi there" and "Ana" not in preview.content.decode()
    assert client.post(reverse(AUDIENCE), state).status_code == 403
    assert client.get(reverse(PREVIEW)).status_code == 405
