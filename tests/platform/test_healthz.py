"""Liveness (/healthz: public, touches nothing) and readiness (/readyz: the dependencies, cached,
behind a token when one is set)."""

import pytest
from django.core.management import call_command
from django.test import Client


@pytest.fixture
def platform_ready(db, settings):
    call_command("storage_setup")
    call_command("queues_setup")
    settings.READINESS_CACHE_S = 0  # every hit checks, unless a test says otherwise


def test_healthz_answers_from_the_process_alone_touching_no_dependency(
    client, platform_ready, settings, django_assert_num_queries
):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # S3 and SQS gone: liveness does not care
    settings.AWS_CLIENT_TIMEOUT_S = 0.5

    with django_assert_num_queries(0):
        responses = [client.get("/healthz") for _ in range(20)]

    assert {(response.status_code, response.content) for response in responses} == {
        (200, b'{"status": "ok"}')
    }


def test_readyz_is_200_when_database_broker_and_storage_answer(client, platform_ready):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "status": "ok",
        "failing": [],
        "database": "ok",
        "broker": "ok",
        "storage": "ok",
    }


def test_readyz_is_503_naming_the_storage_when_the_bucket_is_missing(client, platform_ready, settings):
    settings.AWS_STORAGE_BUCKET_NAME = "no-such-bucket"

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["storage"]


def test_readyz_is_503_naming_the_broker_when_sqs_does_not_answer(client, platform_ready, settings):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.AWS_CLIENT_TIMEOUT_S = 0.5

    response = client.get("/readyz")

    assert response.status_code == 503
    assert set(response.json()["failing"]) == {"broker", "storage"}
    assert response.json()["database"] == "ok"


def test_readyz_asks_the_dependencies_once_per_cache_period_however_often_it_is_hit(
    client, platform_ready, settings, django_assert_num_queries
):
    assert client.get("/readyz").status_code == 200  # checked now
    settings.READINESS_CACHE_S = 60
    settings.AWS_STORAGE_BUCKET_NAME = "no-such-bucket"  # would fail, if it were asked

    with django_assert_num_queries(0):
        responses = [client.get("/readyz") for _ in range(20)]

    assert {response.status_code for response in responses} == {200}
    settings.READINESS_CACHE_S = 0
    assert client.get("/readyz").json()["failing"] == ["storage"]


def test_readyz_needs_the_token_when_one_is_set(platform_ready, settings):
    settings.READINESS_TOKEN = "s3cret-readiness"

    refused = [
        Client().get("/readyz"),
        Client().get("/readyz", HTTP_AUTHORIZATION="Bearer wrong"),
        Client().get("/readyz?token=s3cret-readiness"),
    ]
    answered = Client().get("/readyz", HTTP_AUTHORIZATION="Bearer s3cret-readiness")

    assert [response.status_code for response in refused] == [401, 401, 401]
    assert refused[0]["WWW-Authenticate"] == "Bearer"
    assert "database" not in refused[0].json()
    assert answered.status_code == 200 and answered.json()["status"] == "ok"
    assert Client().get("/healthz").status_code == 200  # liveness stays public
