"""A pytest plugin (loaded with `-p tests.stack`) that starts the real parts before Django loads.

PostgreSQL comes from DATABASE_URL when it is set, else the embedded server in var/pg; S3 and
SQS always come from a moto server started for this test session over HTTP on loopback, and the
Graph API from a sandbox process (messaging/sandbox) started for it too.
The hook wraps pytest-django's own, which reads the settings, so the environment is ready first.
"""

import os

import pytest

from config.stack import Services

ACCESS_TOKEN = "test-access-token"
APP_SECRET = "test-app-secret"


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
    os.environ.update(
        SECRET_KEY="tests-only-secret-key",
        AWS_STORAGE_BUCKET_NAME="wharf-test",
        SQS_QUEUE_PREFIX="wharf-test-",
        SQS_WAIT_TIME_SECONDS="1",
        CELERY_TASK_ALWAYS_EAGER="0",
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN="test-verify-token",
        WHATSAPP_ACCESS_TOKEN=ACCESS_TOKEN,
    )
    return (yield)
