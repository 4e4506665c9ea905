import pytest

from campaigns.models import Campaign
from campaigns.services import campaign_create, campaign_feed
from messaging.models import Template
from tests.factories import ContactFactory, PhoneNumberFactory
from tests.messaging.test_outbound_send import Sandbox

TEMPLATE_COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Offer for {{1}}"},
    {"type": "BODY", "text": "Hello {{1}}, your code is {{2}}."},
]


@pytest.fixture
def sandbox(settings):
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    sandbox.config(statuses=False)
    yield sandbox
    sandbox.post("reset")


@pytest.fixture
def sender(db):
    return PhoneNumberFactory(phone_number_id="106540352242922", rate_limit_per_s=80)


@pytest.fixture
def template(db, sender, sandbox):
    sandbox.post(
        "templates",
        {
            "name": "spring_offer",
            "language": "en_US",
            "waba_id": sender.waba_id,
            "components": TEMPLATE_COMPONENTS,
        },
    )
    return Template.objects.create(
        waba_id=sender.waba_id,
        name="spring_offer",
        language="en_US",
        status="APPROVED",
        components=TEMPLATE_COMPONENTS,
    )


@pytest.fixture
def no_worker(broker, settings):
    """Feeder steps and drains run where the test calls them: the tasks the services publish wait
    unread in this test's own queues, where a test can read them."""
    settings.WHATSAPP_RECIPIENT_SPACING_S = 0
    return broker


def contacts(n: int, *, tag: str = "spring", **fields):
    return [ContactFactory(tags=[tag], attributes={"code": f"C{i:04d}"}, **fields) for i in range(n)]


def whatsapp_campaign(sender, template, **fields) -> Campaign:
    values = {
        "name": "Spring offer",
        "channel": Campaign.Channel.WHATSAPP,
        "phone_number": sender,
        "template": template,
        "template_parameters": {
            "header": ["{{name|friend}}"],
            "body": ["{{name|friend}}", "{{attributes.code}}"],
        },
        "audience_tags": ["spring"],
    }
    return campaign_create(actor=None, source="api", **(values | fields))


def feed_step(campaign: Campaign) -> str:
    """Run the feeder step the campaign's current token names, as its task would."""
    campaign.refresh_from_db()
    return campaign_feed(campaign_id=campaign.pk, token=campaign.feed_token)


@pytest.fixture(scope="module", autouse=True)
def bucket():
    from core.aws import storage_ensure_bucket

    storage_ensure_bucket()
