"""A manager reads the inbox's reports in a real browser: the team's chart, the figures per operator,
then per number."""

from datetime import datetime, time, timedelta

from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import ContactFactory, PhoneNumberFactory, UserFactory
from tests.messaging.test_reports import customer_writes, operator_replies, resolves


def a_fortnight_of_work() -> None:
    """Two operators on two numbers, a few conversations a day for two weeks, slower at weekends."""
    sales = PhoneNumberFactory(display_phone_number="15550000001", verified_name="Sales")
    support = PhoneNumberFactory(display_phone_number="15550000002", verified_name="Support")
    olivia = UserFactory(username="olivia", first_name="Olivia", last_name="Okafor", is_staff=True)
    paul = UserFactory(username="paul", first_name="Paul", last_name="Park", is_staff=True)
    zone = timezone.get_current_timezone()
    today = timezone.localdate()
    for back in range(14, 0, -1):
        day = today - timedelta(days=back)
        for n in range(1 + (back * 7) % 5):
            number, operator = (sales, olivia) if n % 2 == 0 else (support, paul)
            contact = ContactFactory(name=f"Customer {back}-{n}")
            wrote = datetime.combine(day, time(9 + n), tzinfo=zone)
            wait = timedelta(minutes=2 + (back * 3 + n * 7) % 25, seconds=(back * 11) % 60)
            customer_writes(contact, number, wrote)
            operator_replies(operator, contact, number, wrote + wait)
            if n % 3 != 2:
                resolves(operator, contact, number, wrote + wait + timedelta(minutes=20 + back * 4))


def test_a_manager_reads_the_team_s_figures(admin_page, screenshot):
    a_fortnight_of_work()
    page = admin_page

    # when the manager opens the reports from the inbox
    page.locator("#content-main").get_by_role(
        "link", name="Reports", exact=True
    ).click()  # the inbox's button

    # then the chart and the figures per operator show the last 30 days
    expect(page.get_by_role("heading", name="Inbox reports")).to_be_visible()
    expect(
        page.get_by_role("img", name="Conversations handled (bars) and median first response")
    ).to_be_visible()
    totals = page.locator("#wharf-report-totals tbody tr")
    expect(totals.locator("th")).to_have_text(["Olivia Okafor", "Paul Park"])
    expect(page.get_by_role("link", name="30 days")).to_have_attribute("aria-current", "page")
    screenshot(page, "per-operator")

    # when they switch to numbers over 7 days
    page.get_by_role("link", name="Numbers", exact=True).click()
    page.get_by_role("link", name="7 days").click()

    # then the figures are per sender number, over a week
    expect(totals.locator("th")).to_have_text(["15550000001", "15550000002"])
    expect(page.locator(".wharf-chart .wharf-bar")).to_have_count(7)
    screenshot(page, "per-number-7-days")
