import pytest
from django.core.management import call_command


@pytest.fixture
def platform_ready(db):
    call_command("storage_setup")
    call_command("queues_setup")


def test_healthz_is_200_when_database_broker_and_storage_answer(client, platform_ready):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "failing": [],
        "database": "ok",
        "broker": "ok",
        "storage": "ok",
    }


def test_healthz_is_503_naming_the_storage_when_the_bucket_is_missing(client, platform_ready, settings):
    settings.AWS_STORAGE_BUCKET_NAME = "no-such-bucket"

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["storage"]


def test_healthz_is_503_naming_the_broker_when_sqs_does_not_answer(client, platform_ready, settings):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.AWS_CLIENT_TIMEOUT_S = 0.5

    response = client.get("/healthz")

    assert response.status_code == 503
    assert set(response.json()["failing"]) == {"broker", "storage"}
    assert response.json()["database"] == "ok"
