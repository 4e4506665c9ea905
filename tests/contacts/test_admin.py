import csv
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from contacts.admin import ContactAdmin
from contacts.models import Contact
from contacts.selectors import NEWEST_FIRST, ContactPaginator
from core.models import AuditLog
from tests.factories import ContactFactory, UserFactory

CHANGELIST = "/admin/contacts/contact/"
ADD = "/admin/contacts/contact/add/"
IMPORT = "/admin/contacts/contact/import/"


def form_data(**values) -> dict:
    return {
        "phone": "",
        "wa_id": "",
        "name": "",
        "email": "",
        "language": "",
        "tags": "",
        "attributes": "{}",
        "_save": "Save",
        **values,
    }


def action(name: str, contacts, **extra) -> dict:
    return {"action": name, "_selected_action": [c.pk for c in contacts], "index": 0, **extra}


# -- changelist --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_changelist_says_about_past_the_exact_count(admin_client, monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 2)
    newest = ContactFactory.create_batch(3, name="Ana Silva")[-1]
    ContactFactory(name="Bruno Okafor")

    response = admin_client.get(CHANGELIST, {"q": "silva"})
    assert response.status_code == 200
    assert response.context["cl"].paginator.count_exact is False
    assert "about " in response.text
    assert response.context["cl"].result_list[0] == newest

    response = admin_client.get(CHANGELIST, {"q": "okafor"})
    assert response.context["cl"].paginator.count_exact is True
    assert "about " not in response.text
    assert "1 result" in response.text


@pytest.mark.django_db
def test_changelist_past_the_exact_count_walks_the_index_not_a_sort(admin_client, monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 2)
    monkeypatch.setattr(ContactAdmin, "list_per_page", 2)
    contacts = ContactFactory.create_batch(4, name="Ana Silva", tags=["vip"])

    response = admin_client.get(CHANGELIST, {"q": "silva", "tag": "vip"})
    cl = response.context["cl"]
    assert tuple(cl.paginator.object_list.query.order_by) == NEWEST_FIRST
    assert list(cl.result_list) == [contacts[3], contacts[2]]

    response = admin_client.get(CHANGELIST, {"q": "silva", "o": "2"})  # sorted by a column: left alone
    assert response.context["cl"].paginator.object_list.query.order_by[0] != NEWEST_FIRST[0]


@pytest.mark.django_db
def test_changelist_searches_and_filters(admin_client):
    ContactFactory(name="Ana Silva", phone="+447400123456", tags=["vip"])
    bruno = ContactFactory(name="Bruno Okafor", tags=["lead"], opted_out_at=timezone.now())
    Contact.objects.filter(pk=bruno.pk).update(created_at=timezone.now() - timedelta(days=30))
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)

    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "Import CSV" in response.text
    assert "vip (1)" in response.text  # the tag filter's choices, with counts

    for params, shown, hidden in [
        ({"q": "+44 7400 123"}, "Ana Silva", "Bruno Okafor"),
        ({"q": "okafor"}, "Bruno Okafor", "Ana Silva"),
        ({"tag": "lead"}, "Bruno Okafor", "Ana Silva"),
        ({"opted_out": "no"}, "Ana Silva", "Bruno Okafor"),
        ({"opted_out": "yes"}, "Bruno Okafor", "Ana Silva"),
        ({"created_at__gte": str(today), "created_at__lt": str(today + timedelta(days=1))}, "Ana", "Bruno"),
    ]:
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200, params
        assert shown in response.text, params
        assert hidden not in response.text, params


# -- add, change, delete go through the services -----------------------------------------------


@pytest.mark.django_db
def test_add_goes_through_the_service(admin_client, admin_user):
    response = admin_client.post(
        ADD, form_data(phone="+44 7400 123456", name="Ana", tags="vip,lead", language="en-gb")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    contact = Contact.objects.get()
    assert (contact.phone, contact.tags, contact.language) == ("+447400123456", ["vip", "lead"], "en_GB")
    log = AuditLog.objects.get()
    assert (log.action, log.source, log.actor) == ("contact.create", "admin", admin_user)


@pytest.mark.django_db
def test_add_shows_the_services_errors_on_the_form(admin_client):
    ContactFactory(phone="+447400000001")

    response = admin_client.post(ADD, form_data(phone="+44 7400 000001", email="ana@"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["phone"] == ["A contact with this phone number already exists."]
    assert errors["email"] == ["Not a valid email address."]

    response = admin_client.post(ADD, form_data(phone="123"))

    assert response.context["adminform"].form.errors["phone"][0].startswith("Not a valid phone number")
    assert Contact.objects.count() == 1
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_change_goes_through_the_service(admin_client):
    contact = ContactFactory(name="Old", email="müller@example.com", tags=["a"])

    response = admin_client.post(
        f"{CHANGELIST}{contact.pk}/change/",
        form_data(phone=contact.phone, name="New", email=contact.email, tags="a", language="en"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    contact.refresh_from_db()
    assert contact.name == "New"
    log = AuditLog.objects.get()
    assert (log.action, log.source, log.changes) == ("contact.update", "admin", {"name": ["Old", "New"]})


@pytest.mark.django_db
def test_a_contact_without_a_phone_can_be_changed_without_giving_one(admin_client):
    contact = ContactFactory(phone=None, wa_id="99912345", name="Old")
    url = f"{CHANGELIST}{contact.pk}/change/"

    response = admin_client.post(url, form_data(wa_id="99912345", name="New", language="en"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    contact.refresh_from_db()
    assert (contact.phone, contact.name) == (None, "New")

    response = admin_client.post(url, form_data(phone="12", wa_id="99912345", name="New"))

    assert response.context["adminform"].form.errors["phone"][0].startswith("Not a valid phone number")


@pytest.mark.django_db
def test_delete_goes_through_the_service(admin_client):
    contact = ContactFactory()

    response = admin_client.post(f"{CHANGELIST}{contact.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Contact.objects.exists()
    assert AuditLog.objects.get().action == "contact.delete"


# -- actions -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_action_add_tag(admin_client):
    chosen = ContactFactory.create_batch(2, tags=["a"])
    other = ContactFactory(tags=[])

    response = admin_client.post(CHANGELIST, action("add_tag", chosen, tag="vip"), follow=True)

    assert "Tagged 2 contact(s)." in response.text
    assert [c.tags for c in Contact.objects.filter(pk__in=[c.pk for c in chosen])] == [
        ["a", "vip"],
        ["a", "vip"],
    ]
    other.refresh_from_db()
    assert other.tags == []
    assert AuditLog.objects.get().action == "contacts.tag"


@pytest.mark.django_db
def test_action_add_tag_without_a_tag_says_so(admin_client):
    contact = ContactFactory(tags=[])

    response = admin_client.post(CHANGELIST, action("add_tag", [contact], tag=""), follow=True)

    assert "Not tagged" in response.text
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_action_opt_out(admin_client):
    contacts = ContactFactory.create_batch(2)

    admin_client.post(CHANGELIST, action("opt_out", contacts[:1]))

    assert list(Contact.objects.filter(opted_out_at__isnull=False)) == contacts[:1]
    assert Contact.objects.get(pk=contacts[0].pk).opt_out_source == "admin"


@pytest.mark.django_db
def test_action_export_csv(admin_client):
    chosen = ContactFactory(name="Ana")
    ContactFactory(name="Bruno")

    response = admin_client.post(CHANGELIST, action("export_csv", [chosen]))

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["name"] for r in rows] == ["Ana"]


@pytest.mark.django_db
def test_bulk_delete_goes_through_the_service(admin_client):
    contacts = ContactFactory.create_batch(2)

    admin_client.post(CHANGELIST, action("delete_selected", contacts, post="yes"))

    assert not Contact.objects.exists()
    log = AuditLog.objects.get()
    assert (log.action, log.changes["ids"]) == ("contacts.delete", [c.pk for c in contacts])


# -- import page -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_page_reports_each_bad_row(admin_client):
    assert admin_client.get(IMPORT).status_code == 200
    text = "phone,name,email\n+447400000001,Ana,\n+447400000002,Bea,bea@\n\n+447400000003,Cy,\n"

    response = admin_client.post(IMPORT, {"file": SimpleUploadedFile("people.csv", text.encode())})

    assert response.status_code == 200
    assert response.context["result"].created == 2
    assert "<td>3</td>" in response.text and "<td>email: not a valid email address</td>" in response.text
    assert set(Contact.objects.values_list("name", flat=True)) == {"Ana", "Cy"}
    assert AuditLog.objects.get().source == "admin"


@pytest.mark.django_db
def test_import_page_shows_a_file_error_on_the_form(admin_client):
    response = admin_client.post(
        IMPORT, {"file": SimpleUploadedFile("x.csv", "name\nAna\n".encode("latin-1"))}
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {"file": ['The header line has no "phone" column.']}


@pytest.mark.django_db
def test_import_page_needs_add_and_change(client):
    staff = UserFactory(is_staff=True, permissions=["contacts.view_contact", "contacts.add_contact"])
    client.force_login(staff)

    assert client.get(IMPORT).status_code == 403
    assert "Import CSV" not in client.get(CHANGELIST).text


# -- audit log ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_log_is_read_only(admin_client):
    ContactFactory(name="Ana")
    log = AuditLog.objects.create(source="api", action="contact.create", target_repr="Ana (+447400000001)")

    response = admin_client.get("/admin/core/auditlog/", {"source__exact": "api", "q": "Ana"})

    assert response.status_code == 200
    assert "Ana (+447400000001)" in response.text
    assert admin_client.get("/admin/core/auditlog/add/").status_code == 403
    change = admin_client.get(f"/admin/core/auditlog/{log.pk}/change/")
    assert change.status_code == 200
    assert 'name="_save"' not in change.text
    assert admin_client.post(f"/admin/core/auditlog/{log.pk}/delete/", {"post": "yes"}).status_code == 403


@pytest.mark.django_db
def test_import_page_shows_refused_rows_and_offers_them_to_fix_and_import_again(admin_client):
    text = "phone,name,city\n+447400000001,Ana,Leeds\n+4474,=Bea,York\n+447400000003,Cy,\n"

    response = admin_client.post(IMPORT, {"file": SimpleUploadedFile("people.csv", text.encode())})

    assert "<code>+4474</code> | <code>=Bea</code> | <code>York</code>" in response.text
    assert "phone: not a valid phone number: too short for +44 (GB)" in response.text
    assert "Download refused rows (CSV)" in response.text
    download = admin_client.get(f"{IMPORT}refused.csv")
    assert download["Content-Disposition"] == 'attachment; filename="people-refused.csv"'
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows == [
        ["phone", "name", "city", "error"],
        ["'+4474", "'=Bea", "York", "phone: not a valid phone number: too short for +44 (GB)"],
    ]

    rows[1][0] = "+447400000002"
    fixed = io.StringIO()
    csv.writer(fixed).writerows(rows)
    again = admin_client.post(IMPORT, {"file": SimpleUploadedFile("fixed.csv", fixed.getvalue().encode())})

    assert (again.context["result"].created, again.context["result"].errors) == (1, [])
    bea = Contact.objects.get(phone="+447400000002")
    assert (bea.name, bea.attributes) == ("=Bea", {"city": "York"})
    assert admin_client.get(f"{IMPORT}refused.csv").status_code == 404
