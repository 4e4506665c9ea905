"""Core > Dead letters: each queue's DLQ listed from SQS (moto over HTTP), its messages replayed
to their source queue or deleted, selected or all, audited, for those allowed only."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils.html import escape

from core.models import AuditLog
from core.queues import dlq_list
from tests.factories import UserFactory
from tests.platform.conftest import receive_all

pytestmark = pytest.mark.django_db
URL = "/admin/core/deadletterqueue/"
TASK = "messaging.inbound_events_process"


def test_the_page_lists_each_queue_s_dead_letters_and_the_index_links_to_it(admin_client, dead_letter_put):
    first = dead_letter_put(TASK, [[41, 42]], {"force": True})
    second = dead_letter_put("archival.messages_archive", [], queue="archival")
    long_args = dead_letter_put(TASK, ["x" * 500])

    assert reverse("admin:core_deadletterqueue_changelist") == URL
    assert URL in admin_client.get("/admin/core/").content.decode()
    page = admin_client.get(URL)

    assert page.status_code == 200
    html = page.content.decode()
    for queue in ("incoming", "outgoing", "analytics", "archival", "default"):
        assert f'id="dlq-{queue}"' in html
    assert f'value="default:{first.message_id}"' in html
    assert f'value="archival:{second.message_id}"' in html
    assert f'value="default:{long_args.message_id}"' in html
    assert TASK in html and "archival.messages_archive" in html
    assert "[[41, 42]] {&#x27;force&#x27;: True}" in html  # args and kwargs as Celery shows them
    default_rows = next(row for row in page.context["queues"] if row.name == "default").letters
    assert all(row.letter.receive_count >= 1 and row.letter.first_seen for row in default_rows)
    (long_row,) = [row for row in default_rows if row.letter.message_id == long_args.message_id]
    assert len(long_row.args) <= 120 and long_row.args.endswith("…")  # truncated in the cell
    assert f"<code>{escape(long_row.args)}</code>" in html
    # Listing leaves them where they were.
    assert {letter.message_id for letter in dlq_list(queue="default", limit=10)} == {
        first.message_id,
        long_args.message_id,
    }


def test_replay_selected_moves_them_back_unchanged_and_is_audited(
    admin_client, admin_user, dead_letter_put, queues
):
    chosen = dead_letter_put(TASK, [1])
    other = dead_letter_put(TASK, [2])

    response = admin_client.post(URL, {"action": "replay", "letter": [f"default:{chosen.message_id}"]})

    assert response.status_code == 302
    assert [m["Body"] for m in receive_all(queues["default"].url)] == [chosen.body]
    assert [letter.message_id for letter in dlq_list(queue="default", limit=10)] == [other.message_id]
    audit = AuditLog.objects.get(action="dead_letters.replay")
    assert (audit.actor, audit.source) == (admin_user, "admin")
    assert audit.changes == {"queue": "default", "message_ids": [chosen.message_id], "count": 1}
    assert "Replayed 1 dead letter(s)." in admin_client.get(URL).content.decode()


def test_delete_selected_drops_them_for_good_and_is_audited(admin_client, dead_letter_put, queues):
    doomed = dead_letter_put(TASK, [1])
    kept = dead_letter_put(TASK, [2], queue="incoming")
    doomed_too = dead_letter_put(TASK, [3], queue="incoming")

    admin_client.post(
        URL,
        {"action": "delete", "letter": [f"default:{doomed.message_id}", f"incoming:{doomed_too.message_id}"]},
    )

    assert dlq_list(queue="default", limit=10) == []
    assert [letter.message_id for letter in dlq_list(queue="incoming", limit=10)] == [kept.message_id]
    assert receive_all(queues["default"].url) == [] and receive_all(queues["incoming"].url) == []
    assert AuditLog.objects.filter(action="dead_letters.delete").count() == 2


def test_replay_all_of_one_queue(admin_client, dead_letter_put, queues):
    letters = [dead_letter_put(TASK, [index]) for index in range(12)]
    elsewhere = dead_letter_put(TASK, [99], queue="archival")

    admin_client.post(URL, {"action": "replay_all", "queue": "default"})

    assert sorted(m["Body"] for m in receive_all(queues["default"].url)) == sorted(x.body for x in letters)
    assert dlq_list(queue="default", limit=50) == []
    assert [letter.message_id for letter in dlq_list(queue="archival", limit=10)] == [elsewhere.message_id]
    assert AuditLog.objects.get(action="dead_letters.replay").changes["message_ids"] == "all"


def test_only_superusers_and_holders_of_the_permission_see_or_act(client, dead_letter_put):
    letter = dead_letter_put(TASK, [1])
    staff = UserFactory(is_staff=True, permissions=["core.view_auditlog"])
    client.force_login(staff)

    assert client.get(URL).status_code == 403
    assert (
        client.post(URL, {"action": "delete", "letter": [f"default:{letter.message_id}"]}).status_code == 403
    )
    assert URL not in client.get("/admin/").content.decode()
    assert [x.message_id for x in dlq_list(queue="default", limit=10)] == [letter.message_id]

    staff.user_permissions.add(Permission.objects.get(codename="manage_dead_letters"))
    client.force_login(type(staff).objects.get(pk=staff.pk))
    assert client.get(URL).status_code == 200


def test_a_queue_not_set_up_is_named_on_the_page(admin_client, queue_prefix):
    html = admin_client.get(URL).content.decode()

    assert f"SQS queue {queue_prefix}default-dlq does not exist; run manage.py queues_setup" in html
