"""The admin's index as a manager and as a superuser see it: pages grouped by what people do, with
System listed to the superuser only (config/admin_site.SECTIONS)."""

from playwright.sync_api import expect

from tests.browser.conftest import OPERATOR_PASSWORD
from tests.factories import UserFactory

MANAGER = [
    "contacts.view_contact",
    "contacts.add_contact",
    "campaigns.view_campaign",
    "campaigns.add_campaign",
    "campaigns.view_recipient",
    "messaging.view_template",
    "messaging.view_phonenumber",
    "core.view_auditlog",
]


def log_in(page, username: str) -> None:
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_manager_sees_the_business_sections_and_a_superuser_system_too(page, operator, screenshot):
    UserFactory(username="manager", password=OPERATOR_PASSWORD, is_staff=True, permissions=MANAGER)

    log_in(page, "manager")
    expect(page.get_by_role("heading", name="Operators' console")).to_be_visible()
    expect(page.locator("#content-main .module caption")).to_have_text(
        ["Campaigns", "Contacts", "Templates & numbers"]
    )
    expect(page.get_by_role("link", name="System")).to_have_count(0)
    expect(page.get_by_role("link", name="Audit logs")).to_have_count(0)
    screenshot(page, "manager-index")

    page.locator("#content-main th").get_by_role("link", name="Campaigns", exact=True).click()
    expect(page.locator("#nav-sidebar caption")).to_have_text(
        ["Campaigns", "Contacts", "Templates & numbers"]
    )
    screenshot(page, "manager-campaigns-with-side-bar")

    page.context.clear_cookies()
    log_in(page, operator.username)
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()  # operators land on the inbox
    expect(page.locator("#nav-sidebar caption")).to_have_text(
        ["Inbox", "Campaigns", "Contacts", "Templates & numbers", "Reports", "System"]
    )
    screenshot(page, "superuser-inbox-side-bar")

    page.goto("/admin/section/system/")
    system = page.locator("#content-main .module")
    expect(system.locator("caption")).to_have_text("System")
    for name in ("Users", "Groups", "Tokens", "Task results", "Inbound events", "Dead letters", "Audit logs"):
        expect(system.get_by_role("link", name=name, exact=True)).to_be_visible()
    screenshot(page, "superuser-system-section")
