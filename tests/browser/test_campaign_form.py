"""A manager builds a WhatsApp campaign in a real browser without writing JSON: the channel's
fields, a template's parameters filled with a placeholder chip and previewed for a sample
contact, the audience picked by tag and narrowed by a filter row with its count following."""

from django.core.cache import cache
from playwright.sync_api import expect

from campaigns.models import Campaign
from messaging.models import Template
from tests.factories import ContactFactory, PhoneNumberFactory

COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Hi {{1}} 👋", "example": {"header_text": ["Ana"]}},
    {
        "type": "BODY",
        "text": "Our new shop in {{1}} opens on {{2}}. "
        "Show this message at the till for 10% off your first order.",
        "example": {"body_text": [["Lisbon", "Saturday"]]},
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


def test_a_manager_builds_a_whatsapp_campaign_without_json(admin_page, screenshot):
    # given a sender, an approved template and contacts with tags and cities
    cache.clear()  # the tags and attribute keys offered are cached lists
    sender = PhoneNumberFactory(at_meta=False, verified_name="Wharf Shop")
    Template.objects.create(
        waba_id=sender.waba_id, name="shop_opening", language="en", status="APPROVED", components=COMPONENTS
    )
    marta = ContactFactory(
        name="Marta Sousa", tags=["shop", "vip"], attributes={"city": "Porto", "plan": "gold"}
    )
    ContactFactory(name="Rui Lima", tags=["shop"], attributes={"city": "Lisbon", "plan": "basic"})
    zoe = ContactFactory(name="Zoe Ng", tags=["shop"], attributes={"city": "Porto", "plan": "basic"})
    ContactFactory(name="Ivo Reis", tags=["news"], attributes={"city": "Braga"})
    page = admin_page

    # when the manager opens a new campaign: WhatsApp's fields only
    page.goto("/admin/campaigns/campaign/add/")
    page.get_by_label("Name:").fill("Porto shop opening")
    expect(page.get_by_label("Template:")).to_be_visible()
    expect(page.get_by_label("Subject:")).to_be_hidden()
    expect(page.get_by_label("Body:")).to_be_hidden()
    screenshot(page, "whatsapp-fields")

    # switching to SMS shows the body with its counter, and back
    page.get_by_label("Channel:").select_option("SMS")
    expect(page.get_by_label("Template:")).to_be_hidden()
    expect(page.get_by_label("Subject:")).to_be_hidden()
    page.get_by_label("Body:").fill("Hi {{first_name|there}}, our Porto shop opens Saturday!")
    expect(page.locator(".campaign-sms-count")).to_contain_text("1 segment (GSM-7)")
    expect(page.locator(".campaign-bubble")).to_contain_text("Hi Marta, our Porto shop opens Saturday!")
    screenshot(page, "sms-fields")
    page.get_by_label("Channel:").select_option("EMAIL")
    expect(page.get_by_label("Subject:")).to_be_visible()
    page.get_by_label("Channel:").select_option("WHATSAPP")
    expect(page.get_by_label("Subject:")).to_be_hidden()

    # choosing the template draws its parameters with Meta's examples
    page.get_by_label("Sender number:").select_option(str(sender.pk))
    page.get_by_label("Template:").select_option(label="shop_opening (en)")
    city = page.get_by_label("Body {{1}}")
    expect(city).to_have_attribute("placeholder", "e.g. Lisbon")
    page.get_by_label("Header {{1}}").fill("{{first_name|there}}")
    city.click()
    page.get_by_role("button", name="{{attributes.city}}").click()
    expect(city).to_have_value("{{attributes.city}}")
    page.get_by_label("Body {{2}}").fill("Saturday")
    page.get_by_label("Button 1 {{1}}").fill("porto")

    # the preview fills them for the audience's first contact
    bubble = page.locator(".campaign-bubble")
    expect(bubble).to_contain_text("Hi Marta 👋")
    expect(bubble).to_contain_text("Our new shop in Porto opens on Saturday.")
    expect(page.locator(".campaign-bubble-buttons")).to_contain_text("Directions")

    # the audience: everyone, then the "shop" tag, then those in Porto
    count = page.locator(".campaign-audience-count")
    expect(count).to_have_text("4 contacts match now")
    page.get_by_label("Search tags").fill("sh")
    expect(page.get_by_label("vip", exact=True)).to_be_hidden()
    page.get_by_label("shop", exact=True).check()
    expect(count).to_have_text("3 contacts match now")
    page.get_by_role("button", name="+ Add a filter").click()
    filter_row = page.locator(".campaign-filter").first
    filter_row.get_by_label("Attribute").fill("city")
    filter_row.get_by_label("Value").fill("Porto")
    expect(count).to_have_text("2 contacts match now")

    # another sample contact of the audience
    page.get_by_label("Preview for").select_option(str(zoe.pk))
    expect(bubble).to_contain_text("Hi Zoe 👋")
    page.get_by_label("Preview for").select_option(str(marta.pk))
    expect(bubble).to_contain_text("Hi Marta 👋")
    page.locator(".campaign-preview-pane").scroll_into_view_if_needed()
    shown = screenshot(page, "template-preview-and-audience")
    top = page.locator("fieldset", has=page.get_by_label("Template:")).bounding_box()
    bottom = page.locator(".campaign-audience-count").bounding_box()
    scrolled = page.evaluate("window.scrollY")  # boxes are in the viewport, the clip in the page
    page.screenshot(  # the form as the README shows it: content, preview and audience
        path=shown.with_name(f"{shown.stem}-closeup.png"),
        full_page=True,
        clip={
            "x": top["x"] - 12,
            "y": top["y"] + scrolled - 12,
            "width": top["width"] + 24,
            "height": bottom["y"] + bottom["height"] - top["y"] + 24,
        },
    )

    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    campaign = Campaign.objects.get()
    assert campaign.template_parameters == {
        "header": ["{{first_name|there}}"],
        "body": ["{{attributes.city}}", "Saturday"],
        "button.0": ["porto"],
    }
    assert (campaign.audience_tags, campaign.audience_filters) == (
        ["shop"],
        {"attributes": {"city": "Porto"}},
    )
    expect(page.get_by_label("Body {{1}}")).to_have_value("{{attributes.city}}")
    expect(page.locator(".campaign-filter-value")).to_have_value("Porto")
    expect(page.locator(".campaign-start-blocked")).to_have_count(0)
    screenshot(page, "saved")


def test_an_incomplete_draft_says_what_stops_it(admin_page, screenshot):
    cache.clear()
    page = admin_page
    page.goto("/admin/campaigns/campaign/add/")
    page.get_by_label("Name:").fill("Autumn sale")
    page.get_by_role("button", name="Save and continue editing").click()

    expect(page.locator(".messagelist")).to_contain_text("It cannot start yet")
    problems = page.locator(".campaign-problems")
    expect(problems).to_contain_text("Choose a sender number.")
    expect(problems).to_contain_text("Choose an approved template.")
    expect(problems).to_contain_text("The audience is empty.")
    expect(page.get_by_role("button", name="Start")).to_be_disabled()
    expect(page.locator(".campaign-preview-pane")).to_contain_text("Choose a template to see the message.")
    screenshot(page, "problems")
