"""The development stack: S3 kept across restarts of `make run`'s moto, and kept apart from production."""

import os
import signal
import subprocess
import sys

import httpx
import pytest

from devstack.s3store import moto_client
from devstack.stack import BASE_DIR, Services

BUCKET = "wharf-devstack"
KEY = "whatsapp-media/whatsapp-media-incoming/2026/12/05/wamid.1.png"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def embedded_s3():
    """start(s3_dir=...) -> the Services with a moto server started as `make run` starts it; each
    start follows the stop of the one before, and the last is stopped after the test."""
    running: list[Services] = []

    def start(*, s3_dir):
        for services in running:
            services.stop()
        services = Services()
        running.append(services)
        services.start(database="wharf", moto_port=None, force_moto=True, s3_dir=s3_dir)
        return services

    yield start
    for services in running:
        services.stop()


def s3(services: Services):
    return moto_client(services.moto.endpoint)


def media_put(client) -> None:
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PNG, ContentType="image/png", Metadata={"media-id": "m1"})


def media_link(client) -> str:
    """A presigned GET URL as the conversation page makes one for an image."""
    return client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": BUCKET,
            "Key": KEY,
            "ResponseContentType": "image/png",
            "ResponseContentDisposition": "inline; filename*=UTF-8''photo.png",
        },
        ExpiresIn=300,
    )


def test_s3_objects_survive_a_restart_and_a_fresh_presigned_link_serves_them(embedded_s3, tmp_path):
    client = s3(embedded_s3(s3_dir=tmp_path / "s3"))
    media_put(client)

    client = s3(embedded_s3(s3_dir=tmp_path / "s3"))

    answer = client.get_object(Bucket=BUCKET, Key=KEY)
    assert answer["Body"].read() == PNG
    assert answer["ContentType"] == "image/png"
    assert answer["Metadata"] == {"media-id": "m1"}
    link = httpx.get(media_link(client), timeout=10)
    assert link.status_code == 200
    assert link.content == PNG
    assert link.headers["content-type"] == "image/png"


def test_a_deleted_object_stays_deleted_and_an_unchanged_one_is_not_copied_again(embedded_s3, tmp_path):
    client = s3(embedded_s3(s3_dir=tmp_path / "s3"))
    media_put(client)
    client.put_object(Bucket=BUCKET, Key="reports/1.json", Body=b"{}", ContentType="application/json")
    client = s3(embedded_s3(s3_dir=tmp_path / "s3"))
    client.delete_object(Bucket=BUCKET, Key="reports/1.json")

    client = s3(embedded_s3(s3_dir=tmp_path / "s3"))

    keys = [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [KEY]
    assert len(list((tmp_path / "s3" / "objects").iterdir())) == 1  # the report's copy is gone too


def test_what_a_running_stack_saved_survives_moto_killed_outright(embedded_s3, tmp_path):
    services = embedded_s3(s3_dir=tmp_path / "s3")
    client = s3(services)
    media_put(client)
    services.moto.s3_keep()  # as the supervisor does every minute
    client.put_object(Bucket=BUCKET, Key="reports/late.json", Body=b"{}")
    os.killpg(services.moto.process.pid, signal.SIGKILL)
    services.moto.process.wait()

    client = s3(embedded_s3(s3_dir=tmp_path / "s3"))

    keys = [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [KEY]  # what came after the last save is lost, and only that


def test_without_a_folder_moto_forgets_and_a_presigned_link_answers_signature_does_not_match(
    embedded_s3, tmp_path
):
    """What a restart of `make run` did before S3 was kept: the object is gone, and moto answers a
    presigned link to a missing key that names response headers with SignatureDoesNotMatch."""
    client = s3(embedded_s3(s3_dir=None))
    media_put(client)

    client = s3(embedded_s3(s3_dir=None))
    client.create_bucket(Bucket=BUCKET)  # as storage_setup does at each start

    answer = httpx.get(media_link(client), timeout=10)
    assert answer.status_code == 403
    assert b"SignatureDoesNotMatch" in answer.content


def test_production_requirements_install_no_development_stack():
    lines = (BASE_DIR / "requirements.txt").read_text().splitlines()
    names = {line.split("==")[0].split("[")[0].strip().lower() for line in lines if "==" in line}

    assert names & {"pgserver", "moto", "flask", "flask-cors", "aiosmtpd", "pytest"} == set()
    assert "django" in names


def test_sandbox_inbound_exists_only_with_the_development_stack_on():
    env = {**os.environ, "DEVSTACK": "0"}  # over var/stack.env, should `make run` be running

    listed = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()

    assert "sandbox_inbound" not in listed
    assert "storage_setup" in listed
