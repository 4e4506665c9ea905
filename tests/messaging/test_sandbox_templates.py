"""The sandbox's template endpoints as Meta's: create (checked by Meta's rules, answered in Meta's
error shape), the review that approves or rejects after a delay and posts the status webhook,
delete by name or by id, and reads by id with `fields`. Over real HTTP, against the process the
test session started; each test leaves it as it started."""

import json
import uuid

import httpx
import pytest
from django.conf import settings

from devstack.sandbox import payloads
from tests.messaging.test_sandbox import assert_graph_error, sandbox_root
from tests.messaging.test_sandbox_send import Receiver
from tests.waiting import wait_until


@pytest.fixture
def graph() -> httpx.Client:
    with httpx.Client(
        base_url=settings.WHATSAPP_GRAPH_URL + "/",
        headers={"Authorization": f"Bearer {settings.WHATSAPP_ACCESS_TOKEN}"},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def receiver() -> Receiver:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def waba() -> str:
    """A WABA of its own, so that names never collide; the sandbox is reset after."""
    yield str(uuid.uuid4().int)[:15]
    httpx.post(f"{sandbox_root()}/sandbox/reset").raise_for_status()


def configure(**settings) -> None:
    httpx.post(f"{sandbox_root()}/sandbox/config", json=settings).raise_for_status()


def template(**changes) -> dict:
    body = {
        "name": "order_shipped",
        "category": "UTILITY",
        "language": "en_US",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["A-12"]}},
            {
                "type": "BODY",
                "text": "Hi {{1}}, your order {{2}} is on its way.",
                "example": {"body_text": [["Ann", "A-12"]]},
            },
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Thanks"},
                    {
                        "type": "URL",
                        "text": "Track",
                        "url": "https://example.com/t/{{1}}",
                        "example": ["A-12"],
                    },
                    {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+447700900123"},
                ],
            },
        ],
    }
    return body | changes


def body_only(text: str, examples: list[str] | None = None, **changes) -> dict:
    component = {"type": "BODY", "text": text}
    if examples is not None:
        component["example"] = {"body_text": [examples]}
    return template(components=[component], **changes)


def test_a_created_template_is_pending_and_readable_by_id_and_in_the_list(graph, waba):
    configure(template_review_ms=60_000)  # stays PENDING for this test

    created = graph.post(f"{waba}/message_templates", json=template())

    assert created.status_code == 200, created.text
    answer = created.json()
    assert list(answer) == ["id", "status", "category"]
    assert answer["status"] == "PENDING" and answer["category"] == "UTILITY" and answer["id"].isdigit()
    one = graph.get(
        answer["id"], params={"fields": "name,status,language,rejected_reason,quality_score"}
    ).json()
    assert one["name"] == "order_shipped" and one["status"] == "PENDING" and one["rejected_reason"] == "NONE"
    assert one["quality_score"]["score"] == "UNKNOWN" and one["id"] == answer["id"]
    assert "components" not in one
    listed = graph.get(f"{waba}/message_templates", params={"summary": "total_count"}).json()
    assert [item["id"] for item in listed["data"]] == [answer["id"]]
    assert listed["summary"] == {"total_count": 1}
    assert graph.get(f"{waba}/message_templates", params={"quality_score": "GREEN"}).json()["data"] == []
    wrong = graph.get(answer["id"], params={"fields": "name,colour"})
    assert "nonexisting field (colour)" in assert_graph_error(wrong, status=400, code=100)["message"]


@pytest.mark.parametrize(
    ("body", "subcode", "words"),
    [
        (template(name="Order Shipped"), None, "lowercase"),
        (body_only("Hi {{1}}, your order is on its way."), 2388043, "sample"),
        (body_only("x" * 1025), 2388040, "1025 characters"),
        (
            template(components=[{"type": "BODY", "text": "Hi"}, {"type": "FOOTER", "text": "f" * 61}]),
            2388040,
            "footer",
        ),
        (body_only("{{1}} is here.", ["Ann"]), 2388299, "start or end"),
        (body_only("Your code is {{1}}", ["123"]), 2388299, "start or end"),
        (
            template(components=[{"type": "HEADER", "format": "GIF"}, {"type": "BODY", "text": "Hi"}]),
            2388047,
            "header format",
        ),
    ],
)
def test_a_template_meta_would_refuse_is_answered_with_metas_error(graph, waba, body, subcode, words):
    response = graph.post(f"{waba}/message_templates", json=body)

    error = assert_graph_error(response, status=400, code=100)
    assert error["message"] == "Invalid parameter" and error["type"] == "OAuthException"
    assert error.get("error_subcode") == subcode
    assert error["is_transient"] is False and error["error_user_title"]
    assert words.lower() in error["error_user_msg"].lower()


@pytest.mark.parametrize(
    "body",
    [
        {"category": "UTILITY", "language": "en_US", "components": []},  # no name
        template(category="PROMOTION"),
        template(language="english"),
        template(components=[{"type": "FOOTER", "text": "no body"}]),
        body_only("Hi {{2}} and {{1}}.", ["a", "b"]),
        template(
            components=[
                {"type": "BODY", "text": "Hi"},
                {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": f"r{n}"} for n in range(11)]},
            ]
        ),
        template(
            components=[
                {"type": "BODY", "text": "Hi"},
                {
                    "type": "BUTTONS",
                    "buttons": [{"type": "PHONE_NUMBER", "text": "a", "phone_number": "+4477009001"}] * 2,
                },
            ]
        ),
    ],
)
def test_a_malformed_request_is_answered_as_a_bad_parameter(graph, waba, body):
    response = graph.post(f"{waba}/message_templates", json=body)

    error = assert_graph_error(response, status=400, code=100)
    assert error["message"].startswith("(#100) ")


def test_the_same_name_and_language_twice_is_metas_2388024_another_language_is_not(graph, waba):
    configure(template_review_ms=60_000)
    assert graph.post(f"{waba}/message_templates", json=template()).status_code == 200

    again = graph.post(f"{waba}/message_templates", json=template())
    assert assert_graph_error(again, status=400, code=100)["error_subcode"] == 2388024
    assert graph.post(f"{waba}/message_templates", json=template(language="de")).status_code == 200


def status_updates(receiver) -> list[dict]:
    return [
        change["value"]
        for _, raw in receiver.posts
        for entry in json.loads(raw)["entry"]
        for change in entry["changes"]
        if change["field"] == "message_template_status_update"
    ]


def test_the_review_approves_or_rejects_after_the_delay_and_posts_the_signed_webhook(graph, waba, receiver):
    configure(template_review_ms=0, webhook_url=receiver.url, app_secret="s3cret")
    approved = graph.post(f"{waba}/message_templates", json=template()).json()
    rejected = graph.post(
        f"{waba}/message_templates",
        json=body_only("Hi {{1}}, get a 20% off discount today.", ["Ann"], name="spring_offer"),
    ).json()
    marketing = graph.post(
        f"{waba}/message_templates",
        json=body_only("Hi {{1}}, get a discount today.", ["Ann"], name="spring_sale", category="MARKETING"),
    ).json()

    wait_until(lambda: len(status_updates(receiver)) == 3, message="three status webhooks")
    by_id = {str(value["message_template_id"]): value for value in status_updates(receiver)}
    assert by_id[approved["id"]] == {
        "event": "APPROVED",
        "message_template_id": int(approved["id"]),
        "message_template_name": "order_shipped",
        "message_template_language": "en_US",
        "reason": "NONE",
    }
    assert (by_id[rejected["id"]]["event"], by_id[rejected["id"]]["reason"]) == ("REJECTED", "PROMOTIONAL")
    assert by_id[marketing["id"]]["event"] == "APPROVED"  # promotion is what marketing is for
    headers, raw = receiver.posts[0]
    assert headers["X-Hub-Signature-256"] == payloads.body_signature(raw, "s3cret")
    assert json.loads(raw)["entry"][0]["id"] == waba
    read = graph.get(rejected["id"], params={"fields": "status,rejected_reason"}).json()
    assert (read["status"], read["rejected_reason"]) == ("REJECTED", "PROMOTIONAL")


def test_the_status_control_passes_other_info_on(graph, waba, receiver):
    configure(template_review_ms=60_000, webhook_url=receiver.url)
    created = graph.post(f"{waba}/message_templates", json=template()).json()
    info = {"title": "FIRST_PAUSE", "description": "Paused for 3 hours: low quality."}

    answer = httpx.post(
        f"{sandbox_root()}/sandbox/templates/{created['id']}/status",
        json={"status": "PAUSED", "reason": "NONE", "other_info": info},
    )

    assert answer.json()["webhook"] is True
    wait_until(lambda: status_updates(receiver), message="the pause webhook")
    assert status_updates(receiver)[0]["other_info"] == info


def test_delete_by_name_takes_every_language_by_hsm_id_only_one(graph, waba):
    configure(template_review_ms=60_000)
    english = graph.post(f"{waba}/message_templates", json=template()).json()
    german = graph.post(f"{waba}/message_templates", json=template(language="de")).json()
    graph.post(f"{waba}/message_templates", json=template(language="fr")).raise_for_status()

    one = graph.delete(f"{waba}/message_templates", params={"name": "order_shipped", "hsm_id": german["id"]})
    assert one.json() == {"success": True}
    left = {item["language"] for item in graph.get(f"{waba}/message_templates").json()["data"]}
    assert left == {"en_US", "fr"}
    assert graph.get(german["id"]).status_code == 400

    every = graph.delete(f"{waba}/message_templates", params={"name": "order_shipped"})
    assert every.json() == {"success": True}
    assert graph.get(f"{waba}/message_templates").json()["data"] == []
    assert graph.get(english["id"]).status_code == 400

    missing = graph.delete(f"{waba}/message_templates", params={"name": "order_shipped"})
    assert (
        assert_graph_error(missing, status=400, code=100)["error_user_title"] == "Message template not found"
    )
    nameless = graph.delete(f"{waba}/message_templates")
    assert_graph_error(nameless, status=400, code=100)


def test_a_template_deleted_before_its_review_posts_nothing(graph, waba, receiver):
    configure(template_review_ms=300, webhook_url=receiver.url)
    graph.post(f"{waba}/message_templates", json=template()).raise_for_status()
    graph.delete(f"{waba}/message_templates", params={"name": "order_shipped"}).raise_for_status()
    later = graph.post(f"{waba}/message_templates", json=template(name="after")).json()

    wait_until(lambda: status_updates(receiver), message="the later template's review")
    assert [str(value["message_template_id"]) for value in status_updates(receiver)] == [later["id"]]
