"""What `make run` fills in for email and SMS when nothing is configured."""

from devstack.stack import channel_defaults, sms_configured


def test_make_run_defaults_to_the_console_and_the_sandbox(monkeypatch):
    for name in ("EMAIL_BACKEND", "PUBLIC_BASE_URL", "SMS_ENDPOINT_URL", "SMS_ORIGINATION_IDENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMS_WEBHOOK_TOKEN", "configured")

    values = channel_defaults(8080)

    assert values == {
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8080",
    }
    assert sms_configured() is False


def test_configured_email_and_sms_are_left_alone(monkeypatch):
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://wharf.example.com")
    monkeypatch.setenv("SMS_WEBHOOK_TOKEN", "configured")
    monkeypatch.setenv("SMS_ORIGINATION_IDENTITY", "+15550100000")

    assert channel_defaults(8000) == {}
    assert sms_configured() is True
