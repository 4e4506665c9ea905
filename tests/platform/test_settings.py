import os
import subprocess
import sys

from django.conf import settings


def test_a_missing_secret_stops_start_up_with_a_message_naming_it():
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        env={**env, "PYTHONPATH": str(settings.BASE_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_the_platform_runs_in_utc_on_sqs_with_late_acks():
    assert settings.TIME_ZONE == "UTC"
    assert settings.CELERY_BROKER_URL.startswith("sqs://")
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT is False
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
