"""Numbers in the console's addresses and forms: "²" (a digit to str.isdigit(), not to int()) and a
30-digit number (past every integer column) are ignored or refused, never a server error."""

import pytest

from core.params import BIGINT_MAX, int_param
from tests.messaging.test_inbox import INBOX, conversation_make

pytestmark = pytest.mark.django_db

ODD_NUMBERS = ["²", "١٢", "1" * 30, str(BIGINT_MAX + 1)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("42", 42), (str(BIGINT_MAX), BIGINT_MAX), ("", None), ("-1", None), (" 1", None),
     ("1.0", None), (None, None), (7, None), *((odd, None) for odd in ODD_NUMBERS)],
)  # fmt: skip
def test_int_param_takes_ascii_digits_within_a_bigint_only(value, expected):
    assert int_param(value) == expected


@pytest.fixture
def talk():
    return conversation_make(name="Ada Lovelace")


def requests_with(odd: str, talk) -> list[tuple[str, str, dict]]:
    """(method, address, form) of every console view that reads a number from its query or form."""
    page = f"/admin/messaging/message/conversation/{talk.contact_id}/"
    return [
        ("get", f"{INBOX}?phone_number={odd}&assignee={odd}", {}),
        ("get", f"{INBOX}changes/?phone_number={odd}&assignee={odd}", {}),
        ("get", f"{INBOX}reports/?days={odd}", {}),
        ("get", f"{INBOX}reports/?days={odd}&format=csv", {}),
        ("get", f"{page}?sender={odd}", {}),
        ("get", f"{page}?before={odd}", {}),
        ("post", page, {"phone_number": odd, "reply_kind": "text", "body": "hello"}),
        ("post", page, {"reply_kind": "template", "template": odd}),
        ("post", f"{page}?sender={odd}", {"reply_kind": "text", "body": "hello"}),
        ("post", f"{page}typing/?sender={odd}", {}),
        ("post", f"{page}notes/", {"phone_number": odd, "body": "a note"}),
        ("get", f"/admin/messaging/message/?campaign={odd}", {}),
    ]


@pytest.mark.parametrize("odd", ODD_NUMBERS)
def test_console_views_answer_odd_numbers_without_a_server_error(admin_client, talk, odd):
    admin_client.raise_request_exception = False  # a 500 is counted, not raised
    answers = {
        f"{method.upper()} {url}": getattr(admin_client, method)(url, form).status_code
        for method, url, form in requests_with(odd, talk)
    }

    assert {request: status for request, status in answers.items() if status >= 500} == {}
    assert (
        answers[f"POST /admin/messaging/message/conversation/{talk.contact_id}/typing/?sender={odd}"] == 400
    )
