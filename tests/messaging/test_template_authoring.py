"""Templates written in Wharf: the services against the sandbox over real HTTP (Meta's answers,
errors included), the status webhook keeping Meta's rejection reason, and the console's form,
change page, duplicate and delete through a logged-in client."""

import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from core.models import AuditLog
from messaging.models import Template
from messaging.template_drafts import TemplateDraft, template_draft_errors
from messaging.templates import template_create, template_delete, template_duplicate, templates_sync
from tests.factories import PhoneNumberFactory, UserFactory
from tests.messaging.test_templates import apply, order_shipped, webhook

pytestmark = pytest.mark.django_db

DRAFT = TemplateDraft(
    name="order_shipped",
    category="UTILITY",
    language="en_US",
    header_format="TEXT",
    header_text="Order {{1}}",
    header_example="A-12",
    body="Hi {{1}}, your order {{2}} is on its way.",
    body_examples=("Ann", "A-12"),
    footer="Reply STOP to opt out",
    quick_replies=("Thanks",),
    url_text="Track",
    url="https://example.com/t/{{1}}",
    url_example="A-12",
    phone_text="Call us",
    phone_number="+447700900123",
)


def sandbox_root() -> str:
    parts = urlsplit(settings.WHATSAPP_GRAPH_URL)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def waba() -> str:
    """A WABA of its own at the sandbox, whose reviews wait (tests that want one ask for it)."""
    httpx.post(f"{sandbox_root()}/sandbox/config", json={"template_review_ms": 600_000}).raise_for_status()
    yield str(uuid.uuid4().int)[:15]
    httpx.post(f"{sandbox_root()}/sandbox/reset").raise_for_status()


def sandbox_listed(waba_id: str) -> list[dict]:
    return httpx.get(f"{sandbox_root()}/sandbox/templates", params={"waba_id": waba_id}).json()["data"]


# -- the rules, before anything is sent ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Order Shipped"}, "name"),
        ({"name": ""}, "name"),
        ({"category": "PROMO"}, "category"),
        ({"language": "xx"}, "language"),
        ({"body": "x" * 1025, "body_examples": ()}, "body"),
        ({"body": "{{1}} is on its way"}, "body"),
        ({"body": "Hi {{2}}, order {{1}} ships."}, "body"),
        ({"body_examples": ("Ann", " ")}, "body_example_2"),
        ({"header_text": "H" * 61}, "header_text"),
        ({"header_text": "Order {{1}} {{2}}"}, "header_text"),
        ({"header_example": ""}, "header_example"),
        ({"header_format": "IMAGE", "header_example": ""}, "header_example"),
        ({"footer": "f" * 61}, "footer"),
        ({"quick_replies": tuple(f"r{n}" for n in range(9))}, "quick_replies"),
        ({"quick_replies": ("x" * 26,)}, "quick_replies"),
        ({"url": "example.com"}, "url"),
        ({"url_example": ""}, "url_example"),
        ({"phone_number": "07700900123"}, "phone_number"),
    ],
)
def test_each_rule_meta_applies_names_its_field(changes, field):
    assert template_draft_errors(DRAFT) == {}
    draft = TemplateDraft(**(DRAFT.__dict__ | changes))
    assert field in template_draft_errors(draft)


# -- the services against the sandbox -------------------------------------------------------------


def test_create_sends_metas_request_and_stores_the_template_pending(waba):
    user = UserFactory()

    template = template_create(waba_id=waba, draft=DRAFT, actor=user, source=AuditLog.Source.ADMIN)

    (at_meta,) = sandbox_listed(waba)
    assert (template.meta_id, template.status, template.category) == (at_meta["id"], "PENDING", "UTILITY")
    assert template.components == at_meta["components"]
    body = next(c for c in at_meta["components"] if c["type"] == "BODY")
    assert body["example"] == {"body_text": [["Ann", "A-12"]]}
    buttons = next(c for c in at_meta["components"] if c["type"] == "BUTTONS")["buttons"]
    assert [button["type"] for button in buttons] == ["QUICK_REPLY", "URL", "PHONE_NUMBER"]
    audit = AuditLog.objects.get(action="template.create")
    assert audit.actor == user and audit.target_id == str(template.pk)
    templates_sync(waba_id=waba)  # Meta's listing and ours agree
    assert Template.objects.get(pk=template.pk).status == "PENDING"


def test_create_refused_locally_sends_nothing(waba):
    with pytest.raises(ValidationError) as refused:
        template_create(
            waba_id=waba,
            draft=TemplateDraft(**(DRAFT.__dict__ | {"name": "Bad Name"})),
            actor=None,
            source="admin",
        )
    assert "name" in refused.value.message_dict
    assert sandbox_listed(waba) == [] and not Template.objects.exists()


def test_metas_refusal_comes_back_on_its_field_in_metas_words(waba):
    template_create(waba_id=waba, draft=DRAFT, actor=None, source="admin")
    Template.objects.all().delete()  # as if Wharf had not heard of the first one

    with pytest.raises(ValidationError) as refused:
        template_create(waba_id=waba, draft=DRAFT, actor=None, source="admin")

    assert refused.value.message_dict["language"] == [
        "Meta refused the template: There is already en_US content for this template. Create a new "
        "template with a different name and try again."
    ]
    assert not Template.objects.exists()


def test_delete_removes_only_this_language_at_meta_and_keeps_the_row_deleted(waba):
    english = template_create(waba_id=waba, draft=DRAFT, actor=None, source="admin")
    german = template_create(
        waba_id=waba, draft=TemplateDraft(**(DRAFT.__dict__ | {"language": "de"})), actor=None, source="admin"
    )

    template_delete(template=german, actor=None, source="admin")

    assert [item["language"] for item in sandbox_listed(waba)] == ["en_US"]
    german.refresh_from_db()
    assert german.status == "DELETED"
    assert Template.objects.get(pk=english.pk).status == "PENDING"
    assert AuditLog.objects.filter(action="template.delete", target_id=str(german.pk)).count() == 1
    template_delete(template=german, actor=None, source="admin")  # gone at Meta already: only marked
    assert Template.objects.get(pk=german.pk).status == "DELETED"


def test_duplicate_is_a_draft_in_the_other_language_written_nowhere():
    template = order_shipped(components=[])
    template.components = [
        {"type": "BODY", "text": "Hi {{1}}, order {{2}} ships.", "example": {"body_text": [["Ann", "A-12"]]}}
    ]
    draft = template_duplicate(template=template, language="de")
    assert (draft.name, draft.language, draft.body, draft.body_examples) == (
        "order_shipped",
        "de",
        "Hi {{1}}, order {{2}} ships.",
        ("Ann", "A-12"),
    )
    assert Template.objects.count() == 1


# -- the webhook keeps Meta's reason -------------------------------------------------------------


def test_a_rejection_keeps_metas_reason_and_an_approval_clears_it():
    template = order_shipped()

    apply(webhook("message_template_status_update", event="REJECTED", reason="INVALID_FORMAT"))
    template.refresh_from_db()
    assert (template.status, template.rejected_reason) == ("REJECTED", "INVALID_FORMAT")

    apply(webhook("message_template_status_update", event="APPROVED", reason="NONE"))
    template.refresh_from_db()
    assert (template.status, template.rejected_reason) == ("APPROVED", "")


# -- the console ---------------------------------------------------------------------------------


def form_data(**changes) -> dict:
    data = {
        "name": "order_shipped",
        "category": "UTILITY",
        "language": "en_US",
        "header_format": "",
        "body": "Hi {{1}}, your order is on its way.",
        "body_example_1": "Ann",
    }
    return data | changes


@pytest.fixture
def console(client, waba):
    """A user who may add and delete templates, with a sender number in the test's WABA."""
    PhoneNumberFactory(waba_id=waba)
    user = UserFactory(
        is_staff=True,
        permissions=["messaging.view_template", "messaging.add_template", "messaging.delete_template"],
    )
    client.force_login(user)
    client.waba = waba
    return client


def test_the_form_submits_to_meta_and_shows_the_pending_template(console):
    page = console.get("/admin/messaging/template/add/")
    assert page.status_code == 200
    assert 'name="body"' in page.content.decode() and "Preview" in page.content.decode()

    response = console.post("/admin/messaging/template/add/", form_data(waba_id=console.waba), follow=True)

    template = Template.objects.get(waba_id=console.waba)
    assert (template.name, template.status) == ("order_shipped", "PENDING") and template.meta_id
    text = response.content.decode()
    assert "Sent to Meta: order_shipped (en_US) is PENDING review." in text
    assert 'id="template-status">PENDING' in text and "Duplicate into another language" in text
    assert AuditLog.objects.filter(action="template.create").count() == 1


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"name": "Order Shipped"}, "lowercase letters, digits and underscores"),
        ({"body_example_1": ""}, "Give an example for {{1}}."),
        ({"footer": "f" * 61}, "At most 60 characters; this has 61."),
    ],
)
def test_bad_input_comes_back_as_a_form_error_and_sends_nothing(console, changes, words):
    response = console.post("/admin/messaging/template/add/", form_data(waba_id=console.waba, **changes))

    assert response.status_code == 200
    assert words in response.content.decode()
    assert not Template.objects.exists() and sandbox_listed(console.waba) == []


def test_delete_asks_first_then_deletes_at_meta(console):
    console.post("/admin/messaging/template/add/", form_data(waba_id=console.waba))
    template = Template.objects.get()

    asked = console.get(f"/admin/messaging/template/{template.pk}/delete/")
    assert asked.status_code == 200 and "Yes, delete it at Meta" in asked.content.decode()
    assert sandbox_listed(console.waba) and Template.objects.get().status == "PENDING"

    done = console.post(f"/admin/messaging/template/{template.pk}/delete/", follow=True)
    assert "Deleted at Meta: order_shipped (en_US)." in done.content.decode()
    assert sandbox_listed(console.waba) == [] and Template.objects.get().status == "DELETED"


def test_duplicate_prefills_the_form_in_the_other_language(console):
    console.post("/admin/messaging/template/add/", form_data(waba_id=console.waba))
    template = Template.objects.get()

    page = console.get(f"/admin/messaging/template/add/?duplicate={template.pk}&language=de").content.decode()

    assert "Starting from <strong>order_shipped (en_US)</strong>" in page
    assert '<option value="de" selected>' in page
    assert 'value="Ann"' in page and "Hi {{1}}, your order is on its way." in page
    console.post(
        "/admin/messaging/template/add/",
        form_data(waba_id=console.waba, language="de", body="Hallo {{1}}, unterwegs."),
    )
    assert sorted(Template.objects.values_list("language", flat=True)) == ["de", "en_US"]


def test_the_console_asks_for_the_permissions_django_defines(client, waba):
    template = order_shipped()
    viewer = UserFactory(is_staff=True, permissions=["messaging.view_template"])
    client.force_login(viewer)
    assert client.get("/admin/messaging/template/add/").status_code == 403
    assert client.post("/admin/messaging/template/add/", form_data(waba_id=waba)).status_code == 403
    assert client.post(f"/admin/messaging/template/{template.pk}/delete/").status_code == 403
    page = client.get(f"/admin/messaging/template/{template.pk}/change/").content.decode()
    assert "Duplicate into another language" not in page and "/delete/" not in page
    assert Template.objects.get().status == "PENDING"
