"""A pytest plugin (loaded with `-p tests.stack`) that starts the real parts before Django loads.

PostgreSQL comes from DATABASE_URL when it is set, else the embedded server in var/pg; S3 and
SQS always come from a moto server started for this test session over HTTP on loopback, and the
Graph API and AWS End User Messaging SMS from a sandbox process (devstack/sandbox) started for it
too. Email goes to Django's memory backend unless a test takes the `smtp_server` fixture, a real
SMTP server on loopback.
The hook wraps pytest-django's own, which reads the settings, so the environment is ready first.
"""

import os

import pytest

from devstack.stack import Services

ACCESS_TOKEN = "test-access-token"
APP_SECRET = "test-app-secret"
SMS_WEBHOOK_TOKEN = "test-sms-webhook-token"


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    services = Services()
    try:
        values = services.start(
            database="wharf",
            moto_port=None,
            force_moto=True,
            sandbox_token=ACCESS_TOKEN,
            app_secret=APP_SECRET,
        )
    except BaseException:
        services.stop()  # what did start
        raise
    early_config.add_cleanup(services.stop)
    os.environ.update(values)
    os.environ["SMS_SNS_CERT_URL_PREFIXES"] = (
        values["SMS_ENDPOINT_URL"].removesuffix("/sms") + "/sandbox/sns/"
    )
    os.environ.update(
        DEVSTACK="1",
        SECRET_KEY="tests-only-secret-key",
        AWS_STORAGE_BUCKET_NAME="wharf-test",
        SQS_QUEUE_PREFIX="wharf-test-",
        SQS_WAIT_TIME_SECONDS="1",
        CELERY_TASK_ALWAYS_EAGER="0",
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN="test-verify-token",
        WHATSAPP_ACCESS_TOKEN=ACCESS_TOKEN,
        PUBLIC_BASE_URL="https://wharf.test",
        SMS_WEBHOOK_TOKEN=SMS_WEBHOOK_TOKEN,
        SMS_ORIGINATION_IDENTITY="+15550100000",
        EMAIL_RATE_PER_S="100",
        SMS_RATE_PER_S="100",
    )
    return (yield)
