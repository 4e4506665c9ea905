"""The sandbox's send endpoint, counters, templates and status webhooks, over real HTTP.

The sandbox is the process the test session started (tests/stack.py); every test here leaves it
as it started (`POST /sandbox/reset`).
"""

import hashlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.conf import settings

from config.celery import app as celery_app
from devstack.sandbox import payloads
from devstack.sandbox.errors import GraphApiError
from devstack.sandbox.outbox import OutboundSettings, Outbox
from messaging.models import Message
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory
from tests.messaging.test_sandbox import assert_graph_error, sandbox_root, upload
from tests.waiting import wait_until

NUMBER = "100000000000002"
TO = "+447700900123"
WA_ID = "447700900123"


@pytest.fixture(autouse=True)
def sandbox_reset():
    httpx.post(f"{sandbox_root()}/sandbox/reset").raise_for_status()
    yield
    httpx.post(f"{sandbox_root()}/sandbox/reset").raise_for_status()


@pytest.fixture
def graph() -> httpx.Client:
    with httpx.Client(
        base_url=settings.WHATSAPP_GRAPH_URL + "/",
        headers={"Authorization": f"Bearer {settings.WHATSAPP_ACCESS_TOKEN}"},
        timeout=10,
    ) as client:
        yield client


def configure(**changes) -> dict:
    response = httpx.post(f"{sandbox_root()}/sandbox/config", json=changes)
    assert response.status_code == 200, response.text
    return response.json()


def stats() -> dict:
    return httpx.get(f"{sandbox_root()}/sandbox/stats").json()


def register_number(phone_number_id: str) -> None:
    number = {"phone_number_id": phone_number_id}
    httpx.post(f"{sandbox_root()}/sandbox/numbers", json=number).raise_for_status()


def received(*wamids: str, phone_number_id: str | None = None) -> None:
    """Messages users sent to the business, as the sandbox learns of them (the webhook goes elsewhere)."""
    body = {"wamids": list(wamids), "phone_number_id": phone_number_id}
    httpx.post(f"{sandbox_root()}/sandbox/received", json=body).raise_for_status()


def text(body: str = "hello", to: str = TO, **extra) -> dict:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}, **extra}


def send(graph: httpx.Client, message: dict, number: str = NUMBER) -> httpx.Response:
    return graph.post(f"{number}/messages", json=message)


class Receiver:
    """A small HTTP server standing in for Wharf's webhook: it keeps what it is posted."""

    def __init__(self):
        self.posts: list[tuple[dict, bytes]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.posts.append((dict(self.headers), raw))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/whatsapp/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self) -> list[dict]:
        with self._lock:
            bodies = [json.loads(raw) for _, raw in self.posts]
        return [
            status
            for body in bodies
            for entry in body["entry"]
            for change in entry["changes"]
            for status in change["value"].get("statuses", [])
        ]

    def wait(self, count: int, timeout_s: float = 10) -> list[dict]:
        """The statuses posted so far, once there are at least `count`."""
        wait_until(
            lambda: len(self.statuses()) >= count,
            timeout=timeout_s,
            interval=0.02,
            message=lambda: f"{count} status(es) posted; got {len(self.statuses())}",
        )
        return self.statuses()


FILES = {
    "/a.png": ("image/png", b"\x89PNG\r\n\x1a\n" + b"0" * 100),
    "/a.mp4": ("video/mp4", b"\x00\x00\x00\x18ftypmp42" + b"0" * 100),
    "/a.ogg": ("audio/ogg; codecs=opus", b"OggS" + b"0" * 100),
    "/a.webp": ("image/webp", b"RIFF\x00\x00\x00\x00WEBP" + b"0" * 100),
    "/a.pdf": ("application/pdf", b"%PDF-1.4\n" + b"0" * 100),
}


@pytest.fixture(scope="module")
def files() -> str:
    """A small HTTP server for media links (the sandbox fetches them): FILES by path, else 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            found = FILES.get(self.path.split("?")[0])
            self.send_response(200 if found else 404)
            if found:
                self.send_header("Content-Type", found[0])
                self.send_header("Content-Length", str(len(found[1])))
            self.end_headers()
            if found:
                self.wfile.write(found[1])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


# -- answers -------------------------------------------------------------------------------------


def test_a_text_is_answered_in_metas_shape_with_a_new_wamid(graph):
    response = send(graph, text(biz_opaque_callback_data="wharf-1"))

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["messaging_product", "contacts", "messages"]
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": TO, "wa_id": WA_ID}]
    (message,) = body["messages"]
    assert list(message) == ["id"] and message["id"].startswith("wamid.")
    counted = stats()
    assert counted["messages"] == {NUMBER: 1}
    assert counted["sends_by_callback"] == {"wharf-1": 1}
    assert counted["by_wamid"][message["id"]] == {
        "phone_number_id": NUMBER,
        "to": WA_ID,
        "type": "text",
        "biz_opaque_callback_data": "wharf-1",
        "dropped": False,
    }
    assert send(graph, text()).json()["messages"][0]["id"] != message["id"]


@pytest.mark.parametrize(
    "message",
    [
        text(body="x" * 4096, context={"message_id": "wamid.inbound"}),
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "text": {"body": "type defaults to text", "preview_url": True},
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "image",
            "image": {"link": "https://e.x/a.png", "caption": "c"},
        },
        {"messaging_product": "whatsapp", "to": TO, "type": "video", "video": {"link": "https://e.x/a.mp4"}},
        {"messaging_product": "whatsapp", "to": TO, "type": "audio", "audio": {"link": "https://e.x/a.ogg"}},
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "sticker",
            "sticker": {"link": "https://e.x/a.webp"},
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "document",
            "document": {"link": "https://e.x/a.pdf", "filename": "a.pdf", "caption": "the file"},
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Choose"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": f"b{i}", "title": f"Option {i}"}} for i in range(3)
                    ]
                },
            },
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Choose"},
                "action": {
                    "button": "Options",
                    "sections": [
                        {"title": "A", "rows": [{"id": f"a{i}", "title": f"Row {i}"} for i in range(5)]},
                        {"title": "B", "rows": [{"id": f"b{i}", "title": f"Row {i}"} for i in range(5)]},
                    ],
                },
            },
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "reaction",
            "reaction": {"message_id": "wamid.x", "emoji": "👍"},
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "location",
            "location": {"latitude": 51.5, "longitude": -0.12},
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "contacts",
            "contacts": [{"name": {"formatted_name": "Ana"}}],
        },
        {
            "messaging_product": "whatsapp",
            "to": TO,
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
        },
    ],
    ids=lambda message: message.get("type", "text-default"),
)
def test_every_kind_of_message_is_accepted(graph, files, message):
    message = json.loads(json.dumps(message).replace("https://e.x", files))  # links the sandbox fetches
    response = send(graph, message)

    assert response.status_code == 200, response.text
    assert response.json()["messages"][0]["id"].startswith("wamid.")


def test_a_linked_medium_is_fetched_after_the_answer_and_one_that_cannot_be_fails_later_131053(
    graph, files, receiver
):
    configure(webhook_url=receiver.url, status_delays_ms={"sent": 0, "delivered": None})
    image = {"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {"link": f"{files}/a.png"}}

    accepted = send(graph, image)

    assert accepted.status_code == 200, accepted.text
    wamid = accepted.json()["messages"][0]["id"]
    content = FILES["/a.png"][1]
    wait_until(lambda: "media" in stats()["by_wamid"][wamid], message="the link fetched")
    assert stats()["by_wamid"][wamid]["media"] == {
        "mime_type": "image/png",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    bad = {}
    for link, details in (
        (f"{files}/missing.png", "answered 404"),
        (f"{files}/a.pdf", "application/pdf cannot be sent as image"),
        ("http://127.0.0.1:9/a.png", "ConnectError"),
    ):
        answer = send(graph, {**image, "image": {"link": link}})
        assert answer.status_code == 200, answer.text  # as at Meta: the link is tried while delivering
        bad[answer.json()["messages"][0]["id"]] = details
    receiver.wait(4)
    statuses_settled()
    by_wamid = {status["id"]: status for status in receiver.statuses()}
    assert by_wamid[wamid]["status"] == "sent"
    for failed_wamid, details in bad.items():
        failed = by_wamid[failed_wamid]
        assert failed["status"] == "failed"
        assert "pricing" not in failed and "conversation" not in failed
        (error,) = failed["errors"]
        assert (error["code"], error["title"]) == (131053, "Media upload error")
        assert details in error["error_data"]["details"]
    assert len(receiver.statuses()) == 4
    assert stats()["accepted"] == 4


def test_uploaded_media_is_sent_by_id_and_an_unknown_id_is_not(graph):
    media_id = upload(graph)
    image = {"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {"id": media_id}}

    assert send(graph, image).status_code == 200
    unknown = send(graph, {**image, "image": {"id": "999000111222333"}})
    error = assert_graph_error(unknown, status=400, code=100)
    assert "image['id']" in error["message"]


def buttons(count: int) -> dict:
    return {
        "type": "button",
        "body": {"text": "Choose"},
        "action": {
            "buttons": [{"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(count)]
        },
    }


def list_rows(count: int) -> dict:
    rows = [{"id": f"r{i}", "title": f"Row {i}"} for i in range(count)]
    return {
        "type": "list",
        "body": {"text": "Choose"},
        "action": {"button": "Options", "sections": [{"rows": rows}]},
    }


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ({"to": TO, "type": "text", "text": {"body": "hi"}}, "messaging_product"),
        (text(to=""), "to"),
        (text(to="not a number"), "to"),
        ({**text(), "type": "fax"}, "type"),
        (text(body="x" * 4097), "text['body']"),
        (text(body=""), "text['body']"),
        ({**text(), "context": {}}, "context['message_id']"),
        (
            {
                "messaging_product": "whatsapp",
                "to": TO,
                "type": "image",
                "image": {"id": "1", "link": "https://e.x/a"},
            },
            "image['id'] or image['link']",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "to": TO,
                "type": "audio",
                "audio": {"link": "https://e.x/a", "caption": "c"},
            },
            "audio['caption']",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "to": TO,
                "type": "location",
                "location": {"latitude": 91, "longitude": 0},
            },
            "location['latitude']",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "to": TO,
                "type": "template",
                "template": {"language": {"code": "en_US"}},
            },
            "template['name']",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "to": TO,
                "type": "template",
                "template": {"name": "hello_world"},
            },
            "template['language']",
        ),
        ({"messaging_product": "whatsapp", "status": "read", "message_id": "not-a-wamid"}, "message_id"),
    ],
)
def test_an_invalid_message_is_100_naming_the_parameter(graph, message, named):
    response = send(graph, message)

    error = assert_graph_error(response, status=400, code=100)
    assert named in error["message"]
    assert error["error_data"]["details"]
    assert stats()["accepted"] == 0
    assert stats()["errors"] == {"100": 1}


@pytest.mark.parametrize(
    ("interactive", "named"),
    [
        (buttons(4), "interactive['action']['buttons']"),
        (list_rows(11), "interactive['action']['sections']"),
        ({**buttons(1), "body": {"text": ""}}, "interactive['body']['text']"),
        ({"type": "carousel", "action": {}}, "interactive['type']"),
    ],
)
def test_an_interactive_message_meta_cannot_use_is_131009_naming_the_parameter(graph, interactive, named):
    response = send(
        graph, {"messaging_product": "whatsapp", "to": TO, "type": "interactive", "interactive": interactive}
    )

    error = assert_graph_error(response, status=400, code=131009)
    assert error["message"] == "(#131009) Parameter value is not valid"
    assert named in error["error_data"]["details"]
    assert stats()["accepted"] == 0


def test_a_numeric_to_is_taken_as_meta_takes_it(graph):
    response = send(graph, text(to=int(WA_ID)))

    assert response.status_code == 200, response.text
    assert response.json()["contacts"] == [{"input": WA_ID, "wa_id": WA_ID}]


def test_a_form_encoded_send_is_taken_as_meta_takes_it(graph):
    form = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": json.dumps({"body": "hi"})}

    response = graph.post(f"{NUMBER}/messages", data=form)

    assert response.status_code == 200, response.text
    assert response.json()["messages"][0]["id"].startswith("wamid.")


def test_calls_without_a_version_are_answered_as_with_one(graph):
    bare = httpx.Client(
        base_url=sandbox_root() + "/", headers={"Authorization": f"Bearer {settings.WHATSAPP_ACCESS_TOKEN}"}
    )
    media_id = upload(graph)

    assert bare.get(media_id).json()["id"] == media_id
    assert bare.post(f"{NUMBER}/messages", json=text()).status_code == 200
    assert bare.get(f"{payloads.DEFAULT_WABA_ID}/message_templates").json()["data"]
    assert bare.delete(media_id).json() == {"success": True}


def test_a_phone_number_id_the_sandbox_does_not_know_is_metas_unknown_object(graph):
    error = assert_graph_error(send(graph, text(), number="100000000000999"), status=400, code=100)
    assert (error["error_subcode"], error["type"]) == (33, "GraphMethodException")
    assert "Unsupported post request. Object with ID '100000000000999' does not exist" in error["message"]
    upload_refused = graph.post(
        "100000000000999/media",
        data={"messaging_product": "whatsapp"},
        files={"file": ("a.txt", b"x", "text/plain")},
    )
    assert_graph_error(upload_refused, status=400, code=100)

    register_number("100000000000999")  # as a number registered at Meta, or named in the settings
    assert send(graph, text(), number="100000000000999").status_code == 200
    configure(waba_ids={"100000000000998": payloads.DEFAULT_WABA_ID})
    assert send(graph, text(), number="100000000000998").status_code == 200
    assert stats()["accepted"] == 2
    httpx.delete(f"{sandbox_root()}/sandbox/numbers/100000000000999").raise_for_status()
    assert_graph_error(send(graph, text(), number="100000000000999"), status=400, code=100)


def test_only_a_message_the_number_received_can_be_marked_read(graph):
    outgoing = send(graph, text()).json()["messages"][0]["id"]
    received("wamid.other-number", phone_number_id="100000000000999")

    for wamid in (outgoing, "wamid.never-seen", "wamid.other-number"):
        refused = send(graph, {"messaging_product": "whatsapp", "status": "read", "message_id": wamid})
        error = assert_graph_error(refused, status=400, code=100)
        assert "message_id" in error["message"]
        assert wamid in error["error_data"]["details"]
    assert stats()["reads"] == 0


def test_a_reaction_to_a_message_the_number_never_saw_fails_later_131009(graph, receiver):
    configure(webhook_url=receiver.url, status_delays_ms={"sent": 0, "delivered": None})
    received("wamid.from-ana")

    def react(to_wamid: str) -> str:
        reaction = {"messaging_product": "whatsapp", "to": TO, "type": "reaction"}
        answer = send(graph, {**reaction, "reaction": {"message_id": to_wamid, "emoji": "👍"}})
        assert answer.status_code == 200, answer.text
        return answer.json()["messages"][0]["id"]

    to_received, to_unknown = react("wamid.from-ana"), react("wamid.never-seen")
    receiver.wait(2)
    statuses_settled()

    by_wamid = {status["id"]: status for status in receiver.statuses()}
    assert by_wamid[to_received]["status"] == "sent"
    assert by_wamid[to_unknown]["status"] == "failed"
    assert by_wamid[to_unknown]["errors"][0]["code"] == 131009


def test_mark_as_read_is_success_and_counted_apart(graph):
    received("wamid.inbound1")
    response = send(
        graph, {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.inbound1"}
    )

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert stats()["reads"] == 1
    assert stats()["accepted"] == 0


def test_marks_as_read_and_typing_indicators_are_listed_by_wamid(graph):
    received("wamid.inbound1", "wamid.inbound2", phone_number_id=NUMBER)
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.inbound1"}
    typing = {**read, "message_id": "wamid.inbound2", "typing_indicator": {"type": "text"}}

    answers = [send(graph, read), send(graph, typing)]

    assert [answer.json() for answer in answers] == [{"success": True}, {"success": True}]
    seen = stats()
    assert (seen["reads"], seen["typing"]) == (2, 1)
    assert seen["read_wamids"] == ["wamid.inbound1", "wamid.inbound2"]
    assert seen["typing_wamids"] == ["wamid.inbound2"]
    wrong = send(graph, {**read, "typing_indicator": {"type": "audio"}})
    assert_graph_error(wrong, status=400, code=100)
    assert stats()["reads"] == 2


@pytest.mark.parametrize("header", [None, "Bearer wrong-token"])
def test_a_send_with_a_wrong_token_is_190_and_counted(header):
    headers = {"Authorization": header} if header else {}

    response = httpx.post(f"{settings.WHATSAPP_GRAPH_URL}/{NUMBER}/messages", json=text(), headers=headers)

    assert_graph_error(response, status=401, code=190)
    assert stats()["errors"] == {"190": 1}
    assert stats()["accepted"] == 0


# -- the window, undeliverable recipients, templates ---------------------------------------------


def test_outside_the_24_hour_window_a_free_form_message_is_131047_and_a_template_goes(graph):
    configure(window_closed=[TO])
    template = {"name": "hello_world", "language": {"code": "en_US"}}

    refused = send(graph, text())
    accepted = send(
        graph, {"messaging_product": "whatsapp", "to": TO, "type": "template", "template": template}
    )

    error = assert_graph_error(refused, status=400, code=131047)
    assert "24 hours" in error["error_data"]["details"]
    assert accepted.status_code == 200
    assert send(graph, text(to="+447700900999")).status_code == 200  # others' windows stay open


def test_the_window_follows_the_last_inbound_time(graph):
    configure(last_inbound={WA_ID: time.time() - 25 * 3600, "447700900999": time.time() - 23 * 3600})

    assert_graph_error(send(graph, text()), status=400, code=131047)
    assert send(graph, text(to="+447700900999")).status_code == 200

    configure(window_open_by_default=False, last_inbound={})
    assert_graph_error(send(graph, text(to="+447700900999")), status=400, code=131047)


def test_an_undeliverable_recipient_is_131026(graph):
    configure(undeliverable=[WA_ID])

    error = assert_graph_error(send(graph, text()), status=400, code=131026)

    assert "Undeliverable" in error["message"]
    assert stats()["errors"] == {"131026": 1}


def template_message(name: str, language: str = "en_US", components: list | None = None) -> dict:
    template = {"name": name, "language": {"code": language}}
    if components is not None:
        template["components"] = components
    return {"messaging_product": "whatsapp", "to": TO, "type": "template", "template": template}


def define(*templates: dict) -> list[dict]:
    response = httpx.post(f"{sandbox_root()}/sandbox/templates", json={"templates": list(templates)})
    assert response.status_code == 200, response.text
    return response.json()["data"]


ORDER_SHIPPED = {
    "name": "order_shipped",
    "language": "en_GB",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Hello {{1}}, order {{2}} has shipped."}],
}


def test_an_unknown_template_is_132001_until_it_is_defined(graph):
    parameters = [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "42"}]}
    ]
    message = template_message("order_shipped", "en_GB", parameters)

    unknown = send(graph, message)
    define(ORDER_SHIPPED)
    known = send(graph, message)
    other_language = send(graph, template_message("order_shipped", "pt_BR", parameters))

    assert_graph_error(unknown, status=404, code=132001)
    assert known.status_code == 200
    assert known.json()["messages"][0]["message_status"] == "accepted"
    assert_graph_error(other_language, status=404, code=132001)


def test_a_template_with_the_wrong_number_of_parameters_is_132000(graph):
    define(ORDER_SHIPPED)
    one = [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]

    error = assert_graph_error(
        send(graph, template_message("order_shipped", "en_GB", one)), status=400, code=132000
    )

    assert "(1)" in error["error_data"]["details"] and "(2)" in error["error_data"]["details"]


def test_a_paused_or_pending_template_is_refused(graph):
    (paused,) = define({**ORDER_SHIPPED, "name": "paused_one", "components": [], "status": "PAUSED"})
    define({**ORDER_SHIPPED, "name": "pending_one", "components": [], "status": "PENDING"})

    assert_graph_error(send(graph, template_message("paused_one", "en_GB")), status=400, code=132015)
    assert_graph_error(send(graph, template_message("pending_one", "en_GB")), status=404, code=132001)
    assert paused["status"] == "PAUSED"


def test_templates_are_listed_by_waba_in_pages_like_meta(graph):
    waba = "200000000000001"
    define(*[{**ORDER_SHIPPED, "name": f"template_{i}", "waba_id": waba} for i in range(5)])

    names, pages, url = [], 0, f"{waba}/message_templates?limit=2"
    while url:
        response = graph.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        names += [template["name"] for template in body["data"]]
        assert set(body["paging"]["cursors"]) == {"before", "after"}
        url = body["paging"].get("next")
        pages += 1

    assert names == [f"template_{i}" for i in range(5)]
    assert pages == 3
    template = graph.get(f"{waba}/message_templates", params={"name": "template_3"}).json()["data"][0]
    assert set(template) == {"name", "parameter_format", "components", "language", "status", "category", "id"}
    assert template["status"] == "APPROVED" and template["language"] == "en_GB"
    default_waba = graph.get(f"{payloads.DEFAULT_WABA_ID}/message_templates").json()
    assert [template["name"] for template in default_waba["data"]] == ["hello_world"]
    assert "next" not in default_waba["paging"]
    assert graph.get("300000000000001/message_templates").json() == {"data": []}


def test_one_template_can_be_removed(graph):
    first, _ = define({**ORDER_SHIPPED, "name": "first"}, {**ORDER_SHIPPED, "name": "second"})

    assert httpx.delete(f"{sandbox_root()}/sandbox/templates/{first['id']}").json() == {"success": True}
    assert httpx.delete(f"{sandbox_root()}/sandbox/templates/{first['id']}").status_code == 400

    kept = httpx.get(
        f"{sandbox_root()}/sandbox/templates", params={"waba_id": payloads.DEFAULT_WABA_ID}
    ).json()
    assert [template["name"] for template in kept["data"]] == ["hello_world", "second"]


# -- limits --------------------------------------------------------------------------------------


def test_a_number_over_its_own_rate_is_answered_130429_and_counted_exactly(graph):
    configure(rate_limits={NUMBER: 20})

    before = time.time()
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda i: send(graph, text(f"m{i}")).status_code, range(100)))

    counted = stats()
    assert codes.count(200) == counted["messages"][NUMBER]
    assert counted["rate_limited"] == codes.count(400) == counted["errors"]["130429"]
    assert codes.count(200) + codes.count(400) == 100
    timing = counted["accepts"][NUMBER]
    # However long the burst took, each second of it let exactly the limit through, no more.
    assert 20 <= counted["messages"][NUMBER] <= 20 * (int(timing["last"] - timing["first"]) + 1)
    register_number("100000000000003")
    other = send(graph, text(), number="100000000000003")  # another number has its own window
    assert other.status_code == 200
    timing = stats()["accepts"][NUMBER]
    assert before <= timing["first"] <= timing["last"] <= time.time()
    assert sum(timing["per_second"].values()) == counted["messages"][NUMBER]
    assert {int(second) for second in timing["per_second"]} <= set(
        range(int(timing["first"]), int(timing["last"]) + 1)
    )


def test_the_rate_window_slides_and_a_paced_sender_is_never_refused(graph):
    configure(rate_limits={NUMBER: 20})
    for i in range(20):
        assert send(graph, text(f"burst {i}")).status_code == 200
    error = assert_graph_error(send(graph, text("one too many")), status=400, code=130429)
    assert "20/s" in error["error_data"]["details"]
    time.sleep(1.05)  # the behaviour under test: the window slides as time passes

    started = time.monotonic()
    for i in range(36):  # 18/s for two seconds: the pace is what is tested
        time.sleep(max(0.0, started + i / 18 - time.monotonic()))
        response = send(graph, text(f"paced {i}"))
        assert response.status_code == 200, response.text

    assert stats()["rate_limited"] == 1


def test_a_burst_inside_one_second_gets_exactly_the_limit_through():
    outbox = Outbox(OutboundSettings(rate_limits={"1": 20}))
    codes = []
    for index in range(100):  # one every 5 ms
        try:
            outbox.admit(
                phone_number_id="1",
                wa_id=WA_ID,
                to=TO,
                kind="text",
                callback="",
                category="service",
                arrived=10.0 + index / 200,
            )
        except GraphApiError as error:
            codes.append(error.code)
        else:
            codes.append(200)

    assert codes == [200] * 20 + [130429] * 80
    assert outbox.stats()["rate_limited"] == 80


def test_the_window_counts_by_arrival_even_when_requests_reach_the_lock_out_of_order():
    outbox = Outbox(OutboundSettings(rate_limits={"1": 2}))

    def admit(arrived: float) -> int:
        try:
            outbox.admit(
                phone_number_id="1",
                wa_id=WA_ID,
                to=TO,
                kind="text",
                callback="",
                category="service",
                arrived=arrived,
            )
        except GraphApiError as error:
            return error.code
        return 200

    assert [admit(10.0), admit(10.5), admit(10.4)] == [200, 200, 130429]  # the third arrived between
    assert admit(11.01) == 200  # 10.0 has left the second that ends here
    assert admit(11.2) == 130429  # 10.5 and 11.01 are in it
    assert admit(11.51) == 200
    assert outbox.stats()["rate_limited"] == 2


def test_a_shorter_rate_window_counts_the_limit_over_that_span(graph):
    configure(rate_limits={NUMBER: 5}, rate_window_ms=300)
    codes = [send(graph, text(f"first {i}")).status_code for i in range(6)]
    time.sleep(0.35)  # the behaviour under test: past the 300 ms span, the count starts again

    assert codes == [200] * 5 + [400]
    assert send(graph, text("next span")).status_code == 200


def test_one_recipient_too_often_is_131056_while_others_go(graph):
    configure(pair_spacing_ms=500)

    first, second = send(graph, text()), send(graph, text())
    other = send(graph, text(to="+447700900999"))

    assert first.status_code == 200
    assert_graph_error(second, status=400, code=131056)
    assert other.status_code == 200
    time.sleep(0.55)  # the behaviour under test: the pair may send again once its spacing has passed
    assert send(graph, text()).status_code == 200
    assert stats()["pair_limited"] == 1


# -- faults and counters -------------------------------------------------------------------------


def test_a_5xx_fault_answers_500_and_sends_nothing(graph):
    configure(messages_5xx_rate=1.0)

    response = send(graph, text())

    assert_graph_error(response, status=500, code=131000)
    assert stats()["accepted"] == 0
    configure(messages_5xx_rate=0.0)
    assert send(graph, text()).status_code == 200


def test_a_dropped_connection_is_a_message_sent_whose_answer_was_lost(graph):
    configure(messages_drop_next=1)

    with pytest.raises(httpx.RemoteProtocolError):
        send(graph, text(biz_opaque_callback_data="wharf-7"))
    again = send(graph, text(biz_opaque_callback_data="wharf-7"))

    assert again.status_code == 200
    counted = stats()
    assert counted["messages"] == {NUMBER: 2}
    assert counted["dropped"] == 1
    assert counted["duplicates"] == 1
    assert counted["sends_by_callback"] == {"wharf-7": 2}
    assert [sent["dropped"] for sent in counted["by_wamid"].values()] == [True, False]


def test_fault_rates_hit_about_their_share_of_sends(graph):
    configure(messages_5xx_rate=0.5, rate_limit_per_s=10_000)
    failed = sum(send(graph, text(f"m{i}")).status_code == 500 for i in range(200))
    configure(messages_5xx_rate=0.0, messages_drop_rate=0.5)
    dropped = 0
    for i in range(200):
        try:
            send(graph, text(f"d{i}"))
        except httpx.RemoteProtocolError:
            dropped += 1

    counted = stats()
    assert 50 < failed < 150
    assert counted["errors"] == {"131000": failed}
    assert 50 < dropped < 150
    assert counted["dropped"] == dropped
    assert counted["accepted"] == 400 - failed


def test_duplicates_count_only_callback_data_seen_before(graph):
    for callback in ("a", "b", "a", "", ""):
        assert send(graph, text("same", biz_opaque_callback_data=callback)).status_code == 200

    counted = stats()
    assert counted["duplicates"] == 1
    assert counted["sends_by_callback"] == {"a": 2, "b": 1}
    assert counted["accepted"] == 5


def test_stats_can_be_zeroed_and_reset_restores_the_start(graph):
    configure(rate_limits={NUMBER: 1}, undeliverable=[WA_ID], latency_ms=5)
    send(graph, text())
    assert stats()["errors"] == {"131026": 1}

    zeroed = httpx.delete(f"{sandbox_root()}/sandbox/stats").json()
    assert zeroed["errors"] == {} and zeroed["messages"] == {}
    assert configure()["rate_limits"] == {NUMBER: 1}  # settings stay

    httpx.post(f"{sandbox_root()}/sandbox/reset").raise_for_status()
    config = configure()
    assert config["rate_limits"] == {} and config["undeliverable"] == [] and config["latency_ms"] == 0
    assert config["app_secret"] == "<set>"
    assert send(graph, text()).status_code == 200


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"rate_limit": 5}, "'rate_limit'"),
        ({"rate_limits": {NUMBER: 0}}, "'rate_limits'"),
        ({"webhook_url": "localhost:8000/webhooks"}, "'webhook_url'"),
        ({"status_delays_ms": {"seen": 5}}, "'status_delays_ms'"),
        ({"messages_drop_rate": 2}, "'messages_drop_rate'"),
        ({"statuses": "yes"}, "'statuses'"),
    ],
)
def test_a_setting_that_does_not_fit_is_refused_naming_it(setting, named):
    response = httpx.post(f"{sandbox_root()}/sandbox/config", json=setting)

    error = assert_graph_error(response, status=400, code=100)
    assert named in error["message"]
    assert configure() == configure()  # nothing changed
    assert configure()["rate_limits"] == {} and configure()["webhook_url"] == ""


# -- status webhooks -----------------------------------------------------------------------------


def statuses_settled() -> None:
    """Until the sandbox has no status left to post: what is posted by then is all there will be."""
    wait_until(
        lambda: stats()["webhooks"]["pending"] == 0, interval=0.02, message="the sandbox's statuses posted"
    )


def assert_signed(receiver: Receiver) -> None:
    for headers, raw in receiver.posts:
        assert headers["X-Hub-Signature-256"] == payloads.body_signature(raw, settings.WHATSAPP_APP_SECRET)
        assert headers["Content-Type"] == "application/json"


def test_statuses_are_posted_signed_in_order_in_metas_shape(graph, receiver):
    configure(webhook_url=receiver.url, status_delays_ms={"sent": 0, "delivered": 50, "read": 100})

    wamid = send(graph, text(biz_opaque_callback_data="wharf-9")).json()["messages"][0]["id"]
    statuses = receiver.wait(3)

    assert [status["status"] for status in statuses] == ["sent", "delivered", "read"]
    assert_signed(receiver)
    body = json.loads(receiver.posts[0][1])
    assert body["object"] == "whatsapp_business_account"
    (entry,) = body["entry"]
    assert entry["id"] == payloads.DEFAULT_WABA_ID
    (change,) = entry["changes"]
    assert change["field"] == "messages"
    assert change["value"]["messaging_product"] == "whatsapp"
    assert change["value"]["metadata"]["phone_number_id"] == NUMBER
    user_id = payloads.user_id_of(WA_ID)
    assert re.fullmatch(r"GB\.\d{20}", user_id)  # a business-scoped user id, the same every time
    for _, raw in receiver.posts:
        assert json.loads(raw)["entry"][0]["changes"][0]["value"]["contacts"] == [
            {"wa_id": WA_ID, "user_id": user_id}
        ]
    sent, delivered, read = statuses
    for status in statuses:
        assert status["id"] == wamid
        assert (status["recipient_id"], status["recipient_user_id"]) == (WA_ID, user_id)
        assert isinstance(status["timestamp"], str) and status["timestamp"].isdigit()
        assert status["biz_opaque_callback_data"] == "wharf-9"
    assert sent["conversation"]["origin"] == {"type": "service"}
    assert "conversation" not in delivered and "conversation" not in read  # the first status only
    assert (
        sent["pricing"]
        == delivered["pricing"]
        == {
            "billable": False,
            "pricing_model": "PMP",
            "category": "service",
            "type": "free_customer_service",
        }
    )
    assert "pricing" not in read
    webhooks = stats()["webhooks"]
    assert webhooks["posted"] == 3 and webhooks["failed"] == 0


def test_a_message_whose_answer_was_dropped_still_gets_its_statuses_with_our_callback_data(graph, receiver):
    configure(webhook_url=receiver.url, status_delays_ms={"sent": 0}, messages_drop_next=1)

    with pytest.raises(httpx.RemoteProtocolError):
        send(graph, text(biz_opaque_callback_data="wharf-11"))
    (sent,) = receiver.wait(1)

    (wamid,) = stats()["by_wamid"]
    assert sent["id"] == wamid
    assert sent["status"] == "sent"
    assert sent["biz_opaque_callback_data"] == "wharf-11"  # how Wharf can learn the wamid it never got


def test_a_recipient_set_to_fail_after_accept_gets_a_failed_status(graph, receiver):
    configure(webhook_url=receiver.url, status_delays_ms={"sent": 0}, fail_after_accept={TO: 131026})

    response = send(graph, text())
    (failed,) = receiver.wait(1)

    assert response.status_code == 200
    assert failed["status"] == "failed"
    assert failed["id"] == response.json()["messages"][0]["id"]
    assert "pricing" not in failed and "conversation" not in failed
    (error,) = failed["errors"]
    assert error["code"] == 131026
    assert error["title"] == "Message undeliverable"
    assert error["error_data"]["details"]
    statuses_settled()
    assert len(receiver.statuses()) == 1


def test_statuses_never_hold_up_the_answer_and_come_at_their_delay(graph, receiver):
    configure(webhook_url=receiver.url, status_delays_ms={"sent": 1500, "delivered": None, "read": 2000})
    late = send(graph, text())
    assert late.status_code == 200
    assert receiver.statuses() == []  # answered before its status was due, not after it was posted

    configure(status_delays_ms={"sent": 0, "delivered": None, "read": None})
    early = send(graph, text(to="+447700900999"))
    receiver.wait(2)
    statuses_settled()

    wamid = {response: response.json()["messages"][0]["id"] for response in (late, early)}
    assert [(status["id"], status["status"]) for status in receiver.statuses()] == [
        (wamid[early], "sent"),  # sent later, due at once: posted first
        (wamid[late], "sent"),  # None stops the sequence: no read
    ]


def test_statuses_due_together_share_a_webhook_up_to_the_batch_size(graph, receiver):
    configure(webhook_url=receiver.url, status_delays_ms={"sent": 300}, status_batch_max=4)

    with ThreadPoolExecutor(max_workers=10) as pool:
        wamids = list(pool.map(lambda i: send(graph, text(f"m{i}")).json()["messages"][0]["id"], range(10)))
    statuses = receiver.wait(10)

    assert sorted(status["id"] for status in statuses) == sorted(wamids)
    assert 3 <= len(receiver.posts) < 10
    assert all(
        len(json.loads(raw)["entry"][0]["changes"][0]["value"]["statuses"]) <= 4 for _, raw in receiver.posts
    )
    assert_signed(receiver)


def test_no_webhook_url_or_statuses_off_posts_nothing(graph, receiver):
    configure(webhook_url=receiver.url, statuses=False, status_delays_ms={"sent": 0})
    send(graph, text())
    configure(webhook_url="", statuses=True)
    send(graph, text())
    statuses_settled()

    assert receiver.posts == [] and stats()["webhooks"]["posted"] == 0


def test_a_template_status_change_posts_metas_template_webhook(receiver):
    configure(webhook_url=receiver.url)
    (template,) = define(ORDER_SHIPPED)

    response = httpx.post(
        f"{sandbox_root()}/sandbox/templates/{template['id']}/status",
        json={"status": "paused", "reason": "LOW"},
    )

    assert response.status_code == 200 and response.json()["webhook"] is True
    wait_until(lambda: receiver.posts, timeout=5, interval=0.02, message="the template webhook")
    assert_signed(receiver)
    change = json.loads(receiver.posts[0][1])["entry"][0]["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"] == {
        "event": "PAUSED",
        "message_template_id": int(template["id"]),
        "message_template_name": "order_shipped",
        "message_template_language": "en_GB",
        "reason": "LOW",
    }


@pytest.fixture
def celery_eager():
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


def test_statuses_reach_our_webhook_and_move_the_message_to_read(
    graph, live_server, transactional_db, celery_eager
):
    """Through Wharf's real webhook (processed inline): the sandbox's signature and shapes are Meta's."""
    number = PhoneNumberFactory(phone_number_id=NUMBER)
    configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        status_delays_ms={"sent": 300, "delivered": 400, "read": 500},
    )
    wamid = send(graph, text()).json()["messages"][0]["id"]
    message = MessageFactory(
        wamid=wamid,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.SENT,
        phone_number=number,
        contact=ContactFactory(),
    )

    wait_until(
        lambda: Message.objects.filter(pk=message.pk, status=Message.Status.READ).exists(),
        message="the message read through our webhook",
    )
    assert stats()["webhooks"]["posted"] == 3
