"""Operator alerts: raised once per cause, emailed to ADMINS, a banner on every admin page until
acknowledged."""

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.alerts import operator_alert_acknowledge, operator_alert_raise
from core.models import AuditLog, OperatorAlert
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def admins(settings):
    settings.ADMINS = [("Operators", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_raise_emails_once_while_open_and_again_when_reopened(django_capture_on_commit_callbacks, caplog):
    with django_capture_on_commit_callbacks(execute=True):
        first = operator_alert_raise(key="sender-paused:1", text="Number 1 paused: token expired")
    with django_capture_on_commit_callbacks(execute=True):
        again = operator_alert_raise(key="sender-paused:1", text="Number 1 paused: token expired")

    assert again.pk == first.pk and OperatorAlert.objects.count() == 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "Number 1 paused: token expired" in mail.outbox[0].subject
    assert [r.levelname for r in caplog.records if "sender-paused:1" in r.getMessage()] == ["ERROR", "ERROR"]

    operator_alert_acknowledge(alert=first, actor=UserFactory())
    with django_capture_on_commit_callbacks(execute=True):
        reopened = operator_alert_raise(key="sender-paused:1", text="Number 1 paused again", level="warning")

    assert reopened.pk == first.pk
    reopened.refresh_from_db()
    assert reopened.acknowledged_at is None and reopened.text == "Number 1 paused again"
    assert reopened.level == "warning"
    assert len(mail.outbox) == 2


def test_a_rolled_back_raise_sends_no_email(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        operator_alert_raise(key="k", text="t")
    assert len(callbacks) == 1 and mail.outbox == []  # the email waits for the commit


def test_a_mail_server_that_refuses_does_not_fail_the_raise(settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 1
    with django_capture_on_commit_callbacks(execute=True):
        alert = operator_alert_raise(key="k", text="t")
    assert OperatorAlert.objects.get(pk=alert.pk).acknowledged_at is None


def test_acknowledge_is_audited_once():
    alert = operator_alert_raise(key="k", text="t")
    user = UserFactory()
    operator_alert_acknowledge(alert=alert, actor=user)
    operator_alert_acknowledge(alert=alert, actor=user)
    alert.refresh_from_db()
    assert alert.acknowledged_by == user and alert.acknowledged_at is not None
    assert AuditLog.objects.filter(action="operator_alert.acknowledge").count() == 1


def test_unknown_level_is_refused():
    with pytest.raises(ValueError):
        operator_alert_raise(key="k", text="t", level="panic")


def test_banner_on_every_admin_page_until_acknowledged(admin_client):
    alert = operator_alert_raise(key="sender-paused:9", text="Sender +1 555 0100 is paused: <token> expired")

    for url in ("/admin/", "/admin/contacts/contact/", "/admin/messaging/message/"):
        page = admin_client.get(url, follow=True).content.decode()  # the index leads operators to the inbox
        assert f'id="operator-alert-{alert.pk}"' in page, url
        assert "&lt;token&gt; expired" in page  # escaped
        assert f"/admin/core/operatoralert/{alert.pk}/acknowledge/" in page

    response = admin_client.post(
        f"/admin/core/operatoralert/{alert.pk}/acknowledge/", {"next": "/admin/contacts/contact/"}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/contacts/contact/"
    assert "operator-alert-" not in admin_client.get("/admin/", follow=True).content.decode()


def test_acknowledge_goes_back_only_to_this_site(admin_client):
    alert = operator_alert_raise(key="k", text="t")
    response = admin_client.post(
        f"/admin/core/operatoralert/{alert.pk}/acknowledge/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == "/admin/"
    assert admin_client.get(f"/admin/core/operatoralert/{alert.pk}/acknowledge/").status_code == 405


def test_banner_needs_staff_and_the_button_needs_the_permission(client):
    alert = operator_alert_raise(key="k", text="Paused sender")
    viewer = UserFactory(is_staff=True, permissions=["core.view_operatoralert"])
    client.force_login(viewer)

    page = client.get("/admin/").content.decode()
    assert "Paused sender" in page and "acknowledge/" not in page
    assert client.post(f"/admin/core/operatoralert/{alert.pk}/acknowledge/").status_code == 403
    client.logout()
    assert "Paused sender" not in client.get("/admin/login/").content.decode()


def test_banner_costs_one_query(admin_client):
    operator_alert_raise(key="a", text="first")
    operator_alert_raise(key="b", text="second")
    admin_client.get("/admin/", follow=True)  # warm caches (content types, permissions)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get("/admin/", follow=True)
    assert len([q for q in queries if "messaging_operatoralert" in q["sql"]]) == 1


def test_alert_admin_lists_and_acknowledges(admin_client):
    open_alert = operator_alert_raise(key="a", text="open one")
    done = operator_alert_raise(key="b", text="done one")
    operator_alert_acknowledge(alert=done, actor=None)

    page = admin_client.get("/admin/core/operatoralert/?open=yes").content.decode()
    assert "open one" in page and "done one" not in page
    assert "done one" in admin_client.get("/admin/core/operatoralert/?open=no").content.decode()
    response = admin_client.post(
        "/admin/core/operatoralert/",
        {"action": "acknowledge", "_selected_action": [open_alert.pk], "index": 0},
    )
    assert response.status_code == 302
    assert not OperatorAlert.objects.filter(acknowledged_at__isnull=True).exists()


def test_the_banners_button_carries_a_working_csrf_token(admin_user):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    alert = operator_alert_raise(key="k", text="t")
    page = browser.get("/admin/", follow=True).content.decode()
    form = page.split(f'id="operator-alert-{alert.pk}"', 1)[1]
    token = form.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    assert token

    url = f"/admin/core/operatoralert/{alert.pk}/acknowledge/"
    assert browser.post(url, {"next": "/admin/"}).status_code == 403  # without the token
    assert browser.post(url, {"next": "/admin/", "csrfmiddlewaretoken": token}).status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
