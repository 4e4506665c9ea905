"""The campaigns API: CRUD, actions and their permissions, errors naming the field, the report link."""

import json

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Campaign
from campaigns.reports import campaign_report_write
from tests.campaigns.conftest import contacts

pytestmark = pytest.mark.usefixtures("no_worker")
ALL = (
    "campaigns.view_campaign",
    "campaigns.add_campaign",
    "campaigns.change_campaign",
    "campaigns.delete_campaign",
    "campaigns.run_campaign",
    "contacts.view_contact",
)


def body(sender, **changes):
    return {
        "name": "Spring offer",
        "channel": "WHATSAPP",
        "phone_number_id": sender.phone_number_id,
        "template": {"name": "spring_offer", "language": "en_US"},
        "template_parameters": {"header": ["{{name}}"], "body": ["{{name|there}}", "{{attributes.code}}"]},
        "audience_tags": ["spring"],
    } | changes


def test_create_preview_start_pause_resume_cancel_and_report(api_client, sender, template):
    contacts(3)
    client = api_client(*ALL)

    created = client.post("/api/v1/campaigns/", body(sender), format="json")
    assert created.status_code == 201, created.json()
    campaign_id = created.json()["id"]
    assert created.json()["status"] == "draft"
    assert client.get(f"/api/v1/campaigns/{campaign_id}/audience/").json() == {"count": 3}

    started = client.post(f"/api/v1/campaigns/{campaign_id}/start/")
    assert started.status_code == 200, started.json()
    assert (started.json()["status"], started.json()["progress"]["pending"]) == ("running", 3)
    assert client.post(f"/api/v1/campaigns/{campaign_id}/pause/").json()["status"] == "paused"
    assert client.post(f"/api/v1/campaigns/{campaign_id}/resume/").json()["status"] == "running"
    assert client.get(f"/api/v1/campaigns/{campaign_id}/report/").status_code == 404
    cancelled = client.post(f"/api/v1/campaigns/{campaign_id}/cancel/").json()
    assert (cancelled["status"], cancelled["progress"]["cancelled"]) == ("cancelled", 3)

    campaign_report_write(campaign=Campaign.objects.get(pk=campaign_id))
    report = client.get(f"/api/v1/campaigns/{campaign_id}/report/").json()
    assert report["key"] == f"reports/campaign-{campaign_id}-spring-offer.json"
    document = json.loads(httpx.get(report["url"]).content)
    assert (document["jobId"], document["status"], document["totalRecipients"]) == (
        campaign_id,
        "cancelled",
        3,
    )


def test_bad_input_names_the_field(api_client, sender, template):
    client = api_client(*ALL)
    answer = client.post("/api/v1/campaigns/", body(sender, phone_number_id="nope"), format="json")
    assert (answer.status_code, list(answer.json())) == (400, ["phone_number_id"])
    answer = client.post(
        "/api/v1/campaigns/", body(sender, audience_filters={"colour": "red"}), format="json"
    )
    assert (answer.status_code, list(answer.json())) == (400, ["audience_filters"])
    campaign_id = client.post(
        "/api/v1/campaigns/", body(sender, template_parameters={"body": ["{{name}}"]}), format="json"
    ).json()["id"]
    answer = client.post(f"/api/v1/campaigns/{campaign_id}/start/")
    assert answer.status_code == 400
    assert answer.json()["template_parameters"] == [
        "Fill parameter Header {{1}}.",
        "Fill parameter Body {{2}}.",
    ]
    answer = client.post(f"/api/v1/campaigns/{campaign_id}/pause/")
    assert answer.status_code == 400 and "draft campaign cannot be paused" in answer.json()["status"][0]
    answer = client.patch(f"/api/v1/campaigns/{campaign_id}/", {"rate_limit_per_s": 500}, format="json")
    assert answer.status_code == 200
    answer = client.post(f"/api/v1/campaigns/{campaign_id}/start/")
    assert answer.status_code == 400 and list(answer.json()) == ["template_parameters", "audience"]


def test_starting_needs_the_run_permission(api_client, sender, template):
    editor = api_client("campaigns.view_campaign", "campaigns.add_campaign", "campaigns.change_campaign")
    campaign_id = editor.post("/api/v1/campaigns/", body(sender), format="json").json()["id"]
    assert editor.post(f"/api/v1/campaigns/{campaign_id}/start/").status_code == 403
    reader = api_client("campaigns.view_campaign")
    assert reader.get(f"/api/v1/campaigns/{campaign_id}/").status_code == 200
    assert reader.patch(f"/api/v1/campaigns/{campaign_id}/", {"name": "x"}, format="json").status_code == 403


def test_the_report_the_audience_count_and_its_csv_need_the_contacts_view_permission(
    api_client, sender, template
):
    people = contacts(3)
    contacts(2, tag="spring", name="Rich")
    campaign_id = api_client(*ALL).post("/api/v1/campaigns/", body(sender), format="json").json()["id"]
    campaign_report_write(campaign=Campaign.objects.get(pk=campaign_id))
    without = api_client(*(name for name in ALL if name != "contacts.view_contact"))
    from django.core.files.uploadedfile import SimpleUploadedFile

    report = without.get(f"/api/v1/campaigns/{campaign_id}/report/")
    count = without.get(f"/api/v1/campaigns/{campaign_id}/audience/")
    listed = without.post(
        f"/api/v1/campaigns/{campaign_id}/audience/csv/",
        {
            "file": SimpleUploadedFile(
                "l.csv", f"phone\n{people[0].phone}\n".encode(), content_type="text/csv"
            )
        },
        format="multipart",
    )

    assert [answer.status_code for answer in (report, count, listed)] == [403, 403, 403]
    assert "contacts.view_contact" in report.json()["detail"]
    assert Campaign.objects.get(pk=campaign_id).audience_contacts.count() == 0
    assert without.get(f"/api/v1/campaigns/{campaign_id}/").status_code == 200  # the campaign itself
    assert api_client(*ALL).get(f"/api/v1/campaigns/{campaign_id}/audience/").json() == {"count": 5}


def test_a_csv_sets_the_explicit_list(api_client, sender, template):
    people = contacts(3, tag="other")
    client = api_client(*ALL)
    campaign_id = client.post("/api/v1/campaigns/", body(sender, audience_tags=[]), format="json").json()[
        "id"
    ]
    from django.core.files.uploadedfile import SimpleUploadedFile

    csv = f"phone,name\n{people[0].phone},A\n{people[1].phone},B\n+15005550006,unknown\n".encode()
    answer = client.post(
        f"/api/v1/campaigns/{campaign_id}/audience/csv/",
        {"file": SimpleUploadedFile("list.csv", csv, content_type="text/csv")},
        format="multipart",
    )
    assert answer.json() == {"lines": 3, "matched": 2, "unmatched": 1}
    assert client.get(f"/api/v1/campaigns/{campaign_id}/audience/").json() == {"count": 2}


def test_a_csv_of_ids_skips_digits_that_are_not_ascii_and_ids_past_a_bigint(api_client, sender, template):
    person = contacts(1, tag="other")[0]
    client = api_client(*ALL)
    campaign_id = client.post("/api/v1/campaigns/", body(sender, audience_tags=[]), format="json").json()[
        "id"
    ]
    csv = f"id\n{person.pk}\n²\n{'9' * 30}\n".encode()

    answer = client.post(
        f"/api/v1/campaigns/{campaign_id}/audience/csv/",
        {"file": SimpleUploadedFile("list.csv", csv, content_type="text/csv")},
        format="multipart",
    )

    assert answer.status_code == 200, answer.content
    assert answer.json() == {"lines": 1, "matched": 1, "unmatched": 0}
    assert list(Campaign.objects.get(pk=campaign_id).audience_contacts.all()) == [person]


def test_an_audience_csv_past_its_limit_is_refused_naming_the_file(api_client, sender, template, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    people = contacts(30, tag="other")
    client = api_client(*ALL)
    campaign_id = client.post("/api/v1/campaigns/", body(sender, audience_tags=[]), format="json").json()[
        "id"
    ]
    settings.CSV_UPLOAD_MAX_BYTES = 100
    csv = ("phone\n" + "".join(f"{person.phone}\n" for person in people)).encode()

    answer = client.post(
        f"/api/v1/campaigns/{campaign_id}/audience/csv/",
        {"file": SimpleUploadedFile("list.csv", csv, content_type="text/csv")},
        format="multipart",
    )

    assert answer.status_code == 400
    assert list(answer.json()) == ["file"] and "100 bytes" in answer.json()["file"][0]
    assert Campaign.objects.get(pk=campaign_id).audience_contacts.count() == 0


def test_an_email_campaign_needs_a_subject_and_a_body(api_client):
    client = api_client(*ALL)
    created = client.post(
        "/api/v1/campaigns/", {"name": "News", "channel": "EMAIL", "audience_tags": ["x"]}, format="json"
    )
    assert created.status_code == 201, created.json()
    answer = client.post(f"/api/v1/campaigns/{created.json()['id']}/start/")
    assert (answer.status_code, answer.json()) == (
        400,
        {"subject": ["Write a subject."], "body": ["Write a body."], "audience": ["The audience is empty."]},
    )
    client.patch(f"/api/v1/campaigns/{created.json()['id']}/", {"subject": "Hi {{nickname}}"}, format="json")
    answer = client.post(f"/api/v1/campaigns/{created.json()['id']}/start/")
    assert "Unknown placeholder {{nickname}}" in answer.json()["subject"][0]
