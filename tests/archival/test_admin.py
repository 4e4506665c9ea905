"""The archive in the admin: batches with presigned downloads, run-now and restore buttons that queue
their tasks, and a conversation that says its older messages are archived."""

import gzip
import json
from datetime import date

import httpx
import pytest

from archival.messages import messages_archivable_count, messages_archive
from archival.models import ArchiveBatch
from archival.tasks import archive_batches_restore_task, media_archive_task, messages_archive_task
from core.alerts import operator_alert_raise
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/archival/archivebatch/"


@pytest.fixture
def queued(broker):
    """queued(): the tasks the admin published to the archival queue, as (name, args), read from SQS."""
    return lambda: [(task.task, tuple(task.args)) for task in broker.published("archival")]


def test_batches_list_with_sizes_and_a_working_download_link(admin_client, old_messages, archive_prefix):
    batches = messages_archive()

    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Archive messages now" in body and "Archive media now" in body
    detail = admin_client.get(f"{CHANGELIST}{batches[0].pk}/change/")
    assert detail.status_code == 200
    url = detail.context["adminform"].form.instance and next(
        field.contents() for fieldset in detail.context["adminform"] for line in fieldset for field in line
        if field.field["name"] == "download"
    )  # fmt: skip
    href = url.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    answer = httpx.get(href)
    assert answer.status_code == 200
    records = [json.loads(line) for line in gzip.decompress(answer.content).splitlines()]
    assert len(records) == batches[0].record_count
    assert admin_client.post(f"{CHANGELIST}{batches[0].pk}/delete/").status_code == 403  # read-only


def test_run_now_queues_the_archival_tasks(admin_client, queued, old_messages):
    admin_client.post(f"{CHANGELIST}run/messages/")
    admin_client.post(f"{CHANGELIST}run/media/")
    assert admin_client.post(f"{CHANGELIST}run/everything/").status_code == 400
    assert sorted(queued()) == sorted([(messages_archive_task.name, ()), (media_archive_task.name, ())])


def test_run_now_and_restore_need_the_change_permission(client, queued, old_messages, archive_prefix):
    viewer = UserFactory(is_staff=True, permissions=["archival.view_archivebatch", "messaging.view_message"])
    client.force_login(viewer)
    assert "Archive messages now" not in client.get(CHANGELIST).content.decode()
    assert client.post(f"{CHANGELIST}run/messages/").status_code == 403
    contact = old_messages["contacts"][0]
    assert client.post(f"{CHANGELIST}restore-conversation/{contact.pk}/").status_code == 403
    assert queued() == []


def test_the_restore_action_asks_first_then_queues_the_selected_batches_and_says_so(
    admin_client, queued, old_messages, archive_prefix
):
    batches = messages_archive()
    ids = sorted(batch.pk for batch in batches)
    held = sum(batch.record_count for batch in batches)
    names = sorted(contact.name for contact in old_messages["contacts"])

    page = admin_client.post(CHANGELIST, {"action": "restore", "_selected_action": ids})

    assert page.status_code == 200 and queued() == []
    assert f"{held} messages of 2 conversations" in page.text and f"{len(ids)} batches" in page.text
    assert all(name in page.text for name in names) and "Yes, restore them" in page.text
    answer = admin_client.post(
        CHANGELIST, {"action": "restore", "_selected_action": ids, "post": "yes"}, follow=True
    )
    (call,) = queued()
    assert call[0] == "archival.batches_restore" and sorted(call[1][0]) == ids
    assert (
        f"Restore of {held} message(s) of 2 conversation(s) from {len(ids)} batch(es) queued" in answer.text
    )


def test_the_restore_action_says_when_there_is_nothing_to_restore(
    admin_client, queued, old_messages, archive_prefix
):
    media = ArchiveBatch.objects.create(kind=ArchiveBatch.Kind.MEDIA, day=date.today(), state="deleted")

    page = admin_client.post(CHANGELIST, {"action": "restore", "_selected_action": [media.pk]})
    answer = admin_client.post(
        CHANGELIST, {"action": "restore", "_selected_action": [media.pk], "post": "yes"}, follow=True
    )

    nothing = "Nothing to restore: none of the selected batches holds archived messages."
    assert nothing in page.text and "Yes, restore them" not in page.text
    assert nothing in answer.text and queued() == []


def test_the_restore_page_names_conversations_only_to_who_may_read_contacts(
    client, old_messages, archive_prefix
):
    batches = messages_archive()
    client.force_login(
        UserFactory(is_staff=True, permissions=["archival.view_archivebatch", "archival.change_archivebatch"])
    )

    page = client.post(CHANGELIST, {"action": "restore", "_selected_action": [batch.pk for batch in batches]})

    assert "of 2 conversations" in page.text
    assert not any(contact.name in page.text for contact in old_messages["contacts"])


def test_a_conversation_says_its_older_messages_are_archived_and_restores_them(
    admin_client, queued, old_messages, archive_prefix
):
    contact = old_messages["contacts"][0]
    messages_archive()

    page = admin_client.get(f"/admin/messaging/message/conversation/{contact.pk}/").content.decode()
    assert "5 older messages archived" in page and "Restore archived messages" in page

    asked = admin_client.get(f"{CHANGELIST}restore-conversation/{contact.pk}/")
    assert "This conversation has 5 archived messages" in asked.text and "Yes, restore them" in asked.text
    assert queued() == []
    answer = admin_client.post(f"{CHANGELIST}restore-conversation/{contact.pk}/")
    assert answer.status_code == 302 and answer["Location"].endswith(f"/conversation/{contact.pk}/")
    (call,) = queued()
    batch_ids = set(ArchiveBatch.objects.filter(conversations__contact=contact).values_list("id", flat=True))
    assert call[0] == archive_batches_restore_task.name and set(call[1][0]) == batch_ids

    archive_batches_restore_task.run(call[1][0])  # as the worker would
    page = admin_client.get(f"/admin/messaging/message/conversation/{contact.pk}/").content.decode()
    assert "older messages archived" not in page and "Restore archived" not in page
    asked = admin_client.get(f"{CHANGELIST}restore-conversation/{contact.pk}/")
    assert "Nothing to restore: this conversation has no archived messages." in asked.text
    answer = admin_client.post(f"{CHANGELIST}restore-conversation/{contact.pk}/", follow=True)
    assert "Nothing to restore: this conversation has no archived messages." in answer.text
    assert queued() == []  # nothing more than the first restore


def test_an_archival_failure_is_a_banner_until_acknowledged(admin_client):
    alert = operator_alert_raise(key="archival:messages", text="Archival of messages failed: S3 down")
    assert "Archival of messages failed" in admin_client.get(CHANGELIST).content.decode()
    admin_client.post(f"/admin/core/operatoralert/{alert.pk}/acknowledge/", {"next": CHANGELIST})
    assert "Archival of messages failed" not in admin_client.get(CHANGELIST).content.decode()


@pytest.mark.django_db
def test_archive_now_asks_first_and_says_when_there_is_nothing_to_archive(admin_client, queued, settings):
    settings.ARCHIVE_MESSAGES_AFTER_DAYS = 30

    page = admin_client.get(f"{CHANGELIST}run/messages/")
    answer = admin_client.post(f"{CHANGELIST}run/messages/", follow=True)

    assert "Nothing to archive: no message older than 30 days." in page.text
    assert "Yes, archive them" not in page.text
    assert "Nothing to archive: no message older than 30 days." in answer.text
    assert queued() == []


@pytest.mark.django_db
def test_archive_now_shows_what_it_will_archive_and_reports_it(admin_client, queued, old_messages, settings):
    settings.ARCHIVE_MESSAGES_AFTER_DAYS = 90
    count = messages_archivable_count(older_than_days=90)
    assert count

    page = admin_client.get(f"{CHANGELIST}run/messages/")

    assert f"{count} messages older than 90 days will be" in page.text and "Yes, archive them" in page.text
    assert queued() == []
    answer = admin_client.post(f"{CHANGELIST}run/messages/", follow=True)
    assert f"Archival of {count} messages older than 90 days queued" in answer.text
    assert [name for name, _ in queued()] == [messages_archive_task.name]
