import pytest


@pytest.mark.django_db
def test_healthz_answers_200_when_everything_answers(client):
    from config.aws import storage_ensure_bucket

    storage_ensure_bucket()
    from config.aws import sqs_client
    from django.conf import settings

    sqs_client().create_queue(QueueName=f"{settings.SQS_QUEUE_PREFIX}default")
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
