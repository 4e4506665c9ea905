"""Pages in a real browser: Playwright's sync API driving Debian's Chromium against a live server.

Every test under tests/browser/ is marked `browser` at collection, and these fixtures serve them
only. Chromium is found at $WHARF_CHROMIUM when it is set, else /usr/bin/chromium, else `chromium` on
PATH. Without one the browser tests are skipped and the terminal summary says so in one loud line;
with `CI` set they fail instead, so that CI never passes without them (`.ci/run` installs Chromium).

Playwright's sync API runs its asyncio loop in a greenlet of the test's own thread, so while it is
started `asyncio.get_running_loop()` answers in the test's code too, and Django refuses every query
there (SynchronousOnlyOperation) although nothing runs concurrently: the test only resumes when
Playwright has handed control back. DJANGO_ALLOW_ASYNC_UNSAFE is therefore set exactly while
Playwright runs: one Playwright and one Chromium for the tests/browser package, torn down when the
package's tests are done, so the tests after them keep Django's check.

`workers` runs real Celery workers (`incoming`, `outgoing`, `default`) on queues of the test's own,
the sandbox posting its webhooks to the live server, for the tests that follow a story end to end.
"""

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest
from django.conf import settings as django_settings
from django.db import connection
from playwright.sync_api import expect, sync_playwright

from core.queues import queues_ensure
from messaging.inbound import events as inbound_events
from tests.factories import UserFactory
from tests.messaging.test_outbound_send import Sandbox
from tests.messaging.webhook_helpers import celery_publishing_to
from tests.platform.conftest import worker_running

BROWSER_DIR = Path(__file__).parent
SCREENSHOTS = BROWSER_DIR.parents[1] / "var" / "screenshots"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# --disable-background-networking and the two after it keep Chromium from calling Google's services,
# which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR_PASSWORD = "a-browser-test-password"
# How long a step may wait for the page: the live server shares two cores with the test session.
STEP_TIMEOUT_MS = 10_000
expect.set_options(timeout=STEP_TIMEOUT_MS)


def chromium_find() -> tuple[str | None, str]:
    """(the Chromium to launch or None, where it was looked for)."""
    if configured := os.environ.get("WHARF_CHROMIUM"):
        found = configured if os.access(configured, os.X_OK) and Path(configured).is_file() else None
        return found, configured
    if os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM, DEFAULT_CHROMIUM
    return shutil.which("chromium"), f"{DEFAULT_CHROMIUM} or on PATH"


_skipped: list[str] = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        if BROWSER_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("browser") is None:
        return
    chromium, looked_at = chromium_find()
    if chromium is not None:
        return
    reason = f"no Chromium at {looked_at}; install Debian's chromium"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and there is {reason} (or set WHARF_CHROMIUM)", pytrace=False)
    _skipped.append(item.nodeid)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        _chromium, looked_at = chromium_find()
        terminalreporter.write_sep(
            "!",
            f"BROWSER TESTS SKIPPED: no Chromium at {looked_at}; install Debian's chromium "
            f"({len(_skipped)} test{'s' if len(_skipped) > 1 else ''})",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="package")
def browser():
    """One headless Chromium for the package's tests (see the module's header for the variable)."""
    chromium, _looked_at = chromium_find()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) whose relative URLs go to the live server."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def operator(transactional_db):
    """A superuser with a password, to log in through the form."""
    return UserFactory(username="operator", password=OPERATOR_PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def admin_page(page, operator, screenshot):
    """`page`, logged in as `operator` through the admin's login form, on the inbox (where the
    admin's index sends operators)."""
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(operator.username)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    screenshot(page, "logged-in")
    return page


@pytest.fixture
def sandbox():
    """The sandbox Graph API (Meta's look-alike), reset before and after the test."""
    sandbox = Sandbox(django_settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    yield sandbox
    sandbox.post("reset")


@pytest.fixture
def workers(transactional_db, settings, monkeypatch, tmp_path, live_server, sandbox):
    """Workers on `incoming`, `outgoing` and `default`, on queues of this test's own; the sandbox
    posts its webhooks (customers' messages, statuses, template reviews) to this test's live server."""
    # The sandbox keeps its connection to the live server alive, and with it the handler thread's
    # database connection, which would outlive the test database: close it per request.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    monkeypatch.setattr(inbound_events.EnqueuePause, "until", 0.0)
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    queues_ensure(visibility_timeout_override=30)
    sandbox.config(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        app_secret=settings.WHATSAPP_APP_SECRET,
        status_delays_ms={"sent": 100, "delivered": 1500, "read": 4000},
    )
    with (
        celery_publishing_to(queue_prefix=prefix),
        worker_running(
            queues=["incoming", "outgoing", "default"], queue_prefix=prefix, log_path=tmp_path / "worker.log"
        ) as worker,
    ):
        yield worker


def _file_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-")


@pytest.fixture
def screenshot(request) -> Callable:
    """screenshot(page, "step") saves var/screenshots/<test name>/NN-step.png, NN counting the test's
    steps; the test's folder is emptied first so that it holds this run's steps only."""
    folder = SCREENSHOTS / _file_name(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    steps = iter(range(1, 100))

    def save(page, step: str) -> Path:
        path = folder / f"{next(steps):02d}-{_file_name(step)}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return save
