"""The sandbox Graph API over real HTTP: the process the test session started (tests/stack.py)."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.conf import settings

from devstack.sandbox import payloads
from devstack.stack import BASE_DIR

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def graph() -> httpx.Client:
    """A client for the sandbox's Graph API with the right token; the faults are cleared after."""
    with httpx.Client(
        base_url=settings.WHATSAPP_GRAPH_URL + "/",
        headers={"Authorization": f"Bearer {settings.WHATSAPP_ACCESS_TOKEN}"},
        timeout=10,
    ) as client:
        yield client
        httpx.delete(f"{sandbox_root()}/sandbox/faults")


def sandbox_root() -> str:
    parts = urlsplit(settings.WHATSAPP_GRAPH_URL)
    return f"{parts.scheme}://{parts.netloc}"


def upload(graph: httpx.Client, content: bytes = PNG, mime_type: str = "image/png") -> str:
    response = graph.post(
        f"{payloads.DEFAULT_PHONE_NUMBER_ID}/media",
        data={"messaging_product": "whatsapp", "type": mime_type},
        files={"file": ("picture.png", content, mime_type)},
    )
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["id"]
    return response.json()["id"]


def assert_graph_error(response: httpx.Response, *, status: int, code: int) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    return error


def test_upload_retrieve_and_download_in_metas_shapes(graph):
    media_id = upload(graph)
    assert media_id.isdigit()

    info = graph.get(media_id)

    assert info.status_code == 200
    body = info.json()
    assert set(body) == {"messaging_product", "url", "mime_type", "sha256", "file_size", "id"}
    assert body["messaging_product"] == "whatsapp"
    assert body["id"] == media_id
    assert body["mime_type"] == "image/png"
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["file_size"] == len(PNG)
    download = graph.get(body["url"])
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["Content-Type"].startswith("image/png")


def test_the_media_url_wants_the_token_and_its_hash(graph):
    url = graph.get(upload(graph)).json()["url"]

    without_token = httpx.get(url)
    query = parse_qs(urlsplit(url).query)
    tampered = graph.get(url.replace(query["hash"][0], "0" * 32))

    assert_graph_error(without_token, status=401, code=190)
    assert tampered.status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic dGVzdDp0ZXN0"])
def test_a_wrong_or_missing_token_is_401_with_code_190(graph, header):
    media_id = upload(graph)
    headers = {"Authorization": header} if header else {}

    response = httpx.get(f"{settings.WHATSAPP_GRAPH_URL}/{media_id}", headers=headers)

    error = assert_graph_error(response, status=401, code=190)
    assert error["type"] == "OAuthException"


def test_an_unknown_media_id_is_metas_unsupported_get_request(graph):
    response = graph.get("999000111222333")

    error = assert_graph_error(response, status=400, code=100)
    assert error["error_subcode"] == 33
    assert error["type"] == "GraphMethodException"
    assert "Object with ID '999000111222333' does not exist" in error["message"]


def test_an_expired_or_deleted_media_id_is_unknown(graph):
    expired, deleted = upload(graph), upload(graph)

    assert httpx.post(f"{sandbox_root()}/sandbox/media/{expired}/expire").status_code == 200
    assert graph.delete(deleted).json() == {"success": True}

    assert_graph_error(graph.get(expired), status=400, code=100)
    assert_graph_error(graph.get(deleted), status=400, code=100)


@pytest.mark.parametrize(
    ("data", "files", "message"),
    [
        ({"type": "image/png"}, {"file": ("a.png", PNG, "image/png")}, "messaging_product is required"),
        ({"messaging_product": "whatsapp"}, {}, "file is required"),
        (
            {"messaging_product": "whatsapp", "type": "application/x-msdownload"},
            {"file": ("a.exe", b"MZ", "application/x-msdownload")},
            "must be a file with one of the following types",
        ),
    ],
)
def test_an_invalid_upload_is_code_100(graph, data, files, message):
    response = graph.post(f"{payloads.DEFAULT_PHONE_NUMBER_ID}/media", data=data, files=files or None)

    error = assert_graph_error(response, status=400, code=100)
    assert message in error["message"]


def test_an_upload_over_metas_limit_for_its_type_is_131053(graph):
    sticker = b"RIFF" + b"\x00" * (500 * 1024)

    response = graph.post(
        f"{payloads.DEFAULT_PHONE_NUMBER_ID}/media",
        data={"messaging_product": "whatsapp", "type": "image/webp"},
        files={"file": ("s.webp", sticker, "image/webp")},
    )

    assert_graph_error(response, status=400, code=131053)


def test_an_unknown_path_is_a_graph_error(graph):
    assert_graph_error(graph.get("1234567890/nothing-here"), status=400, code=2500)


def test_inbound_media_is_any_type_and_answers_with_its_hash():
    content = b"%PDF-1.7 not really"

    response = httpx.post(
        f"{sandbox_root()}/sandbox/media",
        params={"phone_number_id": "1234567890"},
        files={"file": ("report.zip", content, "application/zip")},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["mime_type"] == "application/zip"
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["file_size"] == len(content)


def test_faults_make_the_next_media_calls_fail_then_clear(graph):
    media_id = upload(graph)
    faults = httpx.post(f"{sandbox_root()}/sandbox/faults", json={"media_5xx": 2, "corrupt_downloads": 1})
    assert faults.status_code == 200

    first, second, third = graph.get(media_id), graph.get(media_id), graph.get(media_id)
    corrupt = graph.get(third.json()["url"])
    clean = graph.get(third.json()["url"])

    assert_graph_error(first, status=500, code=1)
    assert_graph_error(second, status=500, code=1)
    assert third.status_code == 200
    assert len(corrupt.content) == len(PNG) and corrupt.content != PNG
    assert clean.content == PNG
    assert httpx.get(f"{sandbox_root()}/sandbox/faults").json() == {
        "errors": [],
        "latency_ms": 0,
        "corrupt_downloads": 0,
    }


def test_an_error_fault_answers_with_metas_code_and_details_on_its_route_only(graph):
    media_id = upload(graph)
    httpx.post(
        f"{sandbox_root()}/sandbox/faults",
        json={
            "errors": [
                {
                    "route": "media_download",
                    "status": 400,
                    "code": 131052,
                    "message": "(#131052) Media download error",
                    "details": "The media could not be downloaded.",
                    "times": 1,
                }
            ]
        },
    )

    info = graph.get(media_id)
    download = graph.get(info.json()["url"])

    assert info.status_code == 200
    error = assert_graph_error(download, status=400, code=131052)
    assert error["error_data"] == {
        "messaging_product": "whatsapp",
        "details": "The media could not be downloaded.",
    }
    assert graph.get(info.json()["url"]).content == PNG


def test_health():
    assert httpx.get(f"{sandbox_root()}/sandbox/health").json() == {"status": "ok"}


def test_the_sandbox_and_the_payloads_need_no_django():
    code = (
        "import sys, devstack.sandbox.app, devstack.sandbox.payloads, devstack.sandbox.__main__;"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}

    subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, check=True, timeout=60)


def test_a_messages_body_is_metas_envelope_and_its_signature_is_the_hmac_of_the_raw_body():
    message = payloads.text_message(wa_id="447700900123", text="hello")
    body = payloads.messages_body(messages=[message], profile_name="Ana", phone_number_id="42")
    raw = payloads.body_encode(body)

    signature = payloads.body_signature(raw, "secret")

    assert signature == "sha256=" + hmac.new(b"secret", raw, hashlib.sha256).hexdigest()
    change = json.loads(raw)["entry"][0]["changes"][0]
    assert change["field"] == "messages"
    assert change["value"]["metadata"]["phone_number_id"] == "42"
    assert change["value"]["contacts"] == [{"profile": {"name": "Ana"}, "wa_id": "447700900123"}]
    (sent,) = change["value"]["messages"]
    assert sent["from"] == "447700900123" and sent["type"] == "text" and sent["text"] == {"body": "hello"}
    assert sent["id"].startswith("wamid.") and sent["timestamp"].isdigit()
    assert payloads.text_message(wa_id="1", text="x")["id"] != sent["id"]
