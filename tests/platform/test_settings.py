import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


# -- production: no development value, no development endpoint ----------------------------------
PRODUCTION_SECRETS = {
    "SECRET_KEY": "prod-secret-key-" + "k3Yx9" * 10,
    "WHATSAPP_ACCESS_TOKEN": "EAAprodaccesstoken0123456789",
    "WHATSAPP_APP_SECRET": "prod-app-secret-0123456789",
    "WHATSAPP_VERIFY_TOKEN": "prod-verify-token-0123456789",
}


def production_env(**changes: str | None) -> dict[str, str]:
    """A production environment, as the image gets it: no DEVSTACK, real-looking values only."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(settings.BASE_DIR),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **PRODUCTION_SECRETS,
        "DATABASE_URL": "postgres://wharf:db-password-0123456789@wharf.abc123.us-east-1.rds.amazonaws.com:5432/wharf",
        "ALLOWED_HOSTS": "wharf.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://wharf.example.com",
        "PUBLIC_BASE_URL": "https://wharf.example.com",
        "TRUSTED_PROXY_COUNT": "1",
        "AWS_REGION": "eu-west-1",
        "AWS_STORAGE_BUCKET_NAME": "wharf-prod",
    }
    env.update(changes)
    return {key: value for key, value in env.items() if value is not None}


def manage(env: dict[str, str], *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd or settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


DEPLOY_CHECK = ("check", "--deploy", "--fail-level", "WARNING")


def test_check_deploy_passes_with_a_production_environment():
    result = manage(production_env(), *DEPLOY_CHECK)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WHATSAPP_GRAPH_URL", "http://127.0.0.1:8002/v23.0"),
        ("WHATSAPP_GRAPH_URL", "http://graph.example.com/v23.0"),
        ("AWS_ENDPOINT_URL", "http://localhost:8001"),
        ("SMS_ENDPOINT_URL", "http://127.0.0.1:8002/sms"),
        ("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
        ("SMS_SNS_CERT_URL_PREFIXES", "http://127.0.0.1:8002/sandbox/sns/"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wharf"),
    ],
)
def test_check_deploy_refuses_a_development_endpoint_naming_it(name, value):
    result = manage(production_env(**{name: value}), *DEPLOY_CHECK)

    assert result.returncode != 0
    assert "(wharf.E00" in result.stderr and name in result.stderr


@pytest.mark.parametrize("name", [*PRODUCTION_SECRETS, "DATABASE_URL"])
def test_a_missing_secret_stops_production_start_up_naming_it(name):
    result = manage(production_env(**{name: None}), "check")

    assert result.returncode != 0
    assert f"Set the {name} environment variable" in result.stderr


@pytest.fixture
def checkout_with_stack_env(tmp_path) -> Path:
    """A copy of the checkout whose var/stack.env and .env hold development values, as while `make
    run` runs: config/ copied (the settings find the project beside themselves), the rest linked."""
    root = tmp_path / "wharf"
    root.mkdir()
    for entry in Path(settings.BASE_DIR).iterdir():
        if entry.name == "config":
            shutil.copytree(entry, root / "config", ignore=shutil.ignore_patterns("__pycache__"))
        elif entry.name not in {"var", ".env", ".git"}:
            (root / entry.name).symlink_to(entry)
    (root / "var").mkdir()
    (root / "var" / "stack.env").write_text(
        "DEVSTACK=1\n"
        "WHATSAPP_GRAPH_URL=http://127.0.0.1:8002/v23.0\n"
        "WHATSAPP_ACCESS_TOKEN=sandbox-token-from-stack-env\n"
        "AWS_ENDPOINT_URL=http://127.0.0.1:8001\n"
    )
    (root / ".env").write_text("ADMINS=marker@dotenv.example\n")
    return root


SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps(["
    "s.WHATSAPP_GRAPH_URL, s.WHATSAPP_ACCESS_TOKEN, s.AWS_ENDPOINT_URL, s.ADMINS, s.DEVSTACK]))"
)


def test_production_reads_neither_var_stack_env_nor_dotenv(checkout_with_stack_env):
    env = production_env(PYTHONPATH=str(checkout_with_stack_env))

    shown = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=checkout_with_stack_env, env=env, capture_output=True, text=True
    )
    development = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=checkout_with_stack_env,
        env={**env, "DEVSTACK": "1"},
        capture_output=True,
        text=True,
    )

    assert json.loads(shown.stdout) == [
        "https://graph.facebook.com/v23.0",
        PRODUCTION_SECRETS["WHATSAPP_ACCESS_TOKEN"],
        None,
        [],
        False,
    ], shown.stderr
    # The same files are read under the development stack (the environment still wins).
    assert json.loads(development.stdout) == [
        "http://127.0.0.1:8002/v23.0",
        PRODUCTION_SECRETS["WHATSAPP_ACCESS_TOKEN"],
        "http://127.0.0.1:8001",
        [["Operators", "marker@dotenv.example"]],
        True,
    ], development.stderr


def test_a_secret_only_in_var_stack_env_still_stops_production_start_up(checkout_with_stack_env):
    env = production_env(WHATSAPP_ACCESS_TOKEN=None)

    result = manage(env, "check", cwd=checkout_with_stack_env)

    assert result.returncode != 0
    assert "Set the WHATSAPP_ACCESS_TOKEN environment variable" in result.stderr
