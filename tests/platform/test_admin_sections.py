"""The admin's index and side bar list pages by what people do (config/admin_site.SECTIONS): the
inbox first, then campaigns, contacts, templates and numbers, reports; every other model in System,
which only administrators see listed. The pages' own permissions are Django's, unchanged."""

import pytest
from django.contrib import admin
from django.test import RequestFactory

from config import admin_site
from config.admin_site import SECTIONS, Link, Section
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MANAGER = [
    "contacts.view_contact",
    "contacts.add_contact",
    "campaigns.view_campaign",
    "campaigns.view_recipient",
]
OPERATOR = ["messaging.view_conversation", "messaging.view_message", "messaging.view_cannedresponse"]


def sections(user) -> list[tuple[str, list[str]]]:
    request = RequestFactory().get("/admin/")
    request.user = user
    return [
        (app["name"], [model["name"] for model in app["models"]]) for app in admin.site.get_app_list(request)
    ]


def names(app_list) -> list[str]:
    return [app["name"] for app in app_list]


def test_a_superuser_sees_the_sections_in_order_and_system_last():
    superuser = UserFactory(is_staff=True, is_superuser=True)

    listed = sections(superuser)

    assert [name for name, _ in listed] == [
        "Inbox",
        "Campaigns",
        "Contacts",
        "Templates & numbers",
        "Reports",
        "System",
    ]
    assert listed[0][1] == ["Conversations", "Messages", "Calls", "Canned responses", "Labels"]
    assert dict(listed)["Reports"] == ["Dashboard", "Inbox reports"]
    assert {"Users", "Groups", "Tokens", "Access attempts", "Task results", "Inbound events"} <= set(
        dict(listed)["System"]
    )
    assert {"Webhook events", "Analytics events", "Dead letters", "Archive batches", "Audit logs"} <= set(
        dict(listed)["System"]
    )


def test_every_registered_model_is_in_exactly_one_section_and_the_unlisted_ones_in_system():
    superuser = UserFactory(is_staff=True, is_superuser=True)
    request = RequestFactory().get("/admin/")
    request.user = superuser

    listed = [
        model["model"]._meta.label
        for app in admin.site.get_app_list(request)
        for model in app["models"]
        if "model" in model
    ]

    assert sorted(listed) == sorted(model._meta.label for model in admin.site._registry)
    placed = {entry for section in SECTIONS for entry in section.entries if isinstance(entry, str)}
    system = next(app for app in admin.site.get_app_list(request) if app["app_label"] == "system")
    assert {model["model"]._meta.label for model in system["models"]} == {
        model._meta.label for model in admin.site._registry
    } - placed
    assert placed <= {model._meta.label for model in admin.site._registry}  # no stale label in the table


def test_a_manager_never_sees_system_but_may_still_open_a_page_they_hold(client):
    manager = UserFactory(is_staff=True, permissions=[*MANAGER, "core.view_auditlog"])

    assert sections(manager) == [
        ("Campaigns", ["Campaigns", "Recipients"]),
        ("Contacts", ["Contacts"]),
    ]
    client.force_login(manager)
    index = client.get("/admin/")
    assert index.status_code == 200
    assert names(index.context["app_list"]) == ["Campaigns", "Contacts"]
    assert "Audit logs" not in index.text and "System" not in index.text
    assert 'href="/admin/section/campaigns/"' in index.text  # a caption opens its section's page
    assert client.get("/admin/core/auditlog/").status_code == 200  # its own permission, as before
    assert client.get("/admin/section/system/").status_code == 404
    assert client.get("/admin/core/").status_code == 200  # an app's page stays Django's


def test_the_system_permission_shows_system_to_an_administrator_who_is_not_a_superuser(client):
    administrator = UserFactory(
        is_staff=True, permissions=["core.view_system", "auth.view_user", "core.view_auditlog"]
    )

    assert sections(administrator) == [("System", ["Audit logs", "Users"])]
    client.force_login(administrator)
    page = client.get("/admin/section/system/")
    assert page.status_code == 200 and "Audit logs" in page.text
    assert client.get("/admin/axes/accessattempt/").status_code == 403  # listing grants nothing


def test_an_operator_lands_on_the_inbox_whose_side_bar_shows_the_sections(client):
    operator = UserFactory(is_staff=True, permissions=OPERATOR)
    client.force_login(operator)

    assert client.get("/admin/")["Location"] == "/admin/messaging/conversation/"
    inbox = client.get("/admin/messaging/conversation/")
    assert names(inbox.context["available_apps"]) == ["Inbox", "Reports"]
    assert [model["name"] for model in inbox.context["available_apps"][0]["models"]] == [
        "Conversations",
        "Messages",
        "Canned responses",
    ]
    assert 'id="nav-sidebar"' in inbox.text and "/admin/messaging/conversation/reports/" in inbox.text


def test_a_section_page_lists_its_pages_and_its_caption_links_there(admin_client):
    page = admin_client.get("/admin/section/campaigns/")

    assert page.status_code == 200
    assert names(page.context["app_list"]) == ["Campaigns"]
    assert 'href="/admin/section/inbox/"' in admin_client.get("/admin/contacts/contact/").text  # side bar
    assert admin_client.get("/admin/section/nothing/").status_code == 404


def test_a_link_is_listed_only_when_its_url_resolves_and_the_user_holds_its_permission(monkeypatch):
    extra = Section(
        "reports",
        "Reports",
        (
            Link("Dashboard", "admin:no_such_page"),
            Link("Import contacts", "admin:contacts_contact_import", permission="contacts.add_contact"),
        ),
    )
    monkeypatch.setattr(admin_site, "SECTIONS", (*SECTIONS[:4], extra))

    assert ("Reports", ["Import contacts"]) in sections(UserFactory(is_staff=True, permissions=MANAGER))
    reader = UserFactory(is_staff=True, permissions=["contacts.view_contact"])
    assert sections(reader) == [("Contacts", ["Contacts"])]
