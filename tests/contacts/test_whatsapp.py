"""contact_upsert_whatsapp: the contacts that webhooks name, and the contacts code around them."""

import io
from datetime import UTC, datetime

import pytest

from contacts.models import Contact
from contacts.services.csv_io import contacts_export_csv, contacts_import_csv
from contacts.services.whatsapp import contact_upsert_whatsapp
from core.models import AuditLog
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_a_new_wa_id_makes_a_contact_with_its_number_and_profile_name():
    contact = contact_upsert_whatsapp(wa_id="447400123456", profile_name="Amelia Hart", inbound_at=at(100))

    contact.refresh_from_db()
    assert (contact.phone, contact.wa_id, contact.user_id, contact.name) == (
        "+447400123456",
        "447400123456",
        "",
        "Amelia Hart",
    )
    assert contact.attributes == {"whatsapp_profile_name": "Amelia Hart"}
    assert contact.last_inbound_at == at(100)
    audit = AuditLog.objects.get()
    assert (audit.action, audit.source, audit.actor) == ("contact.create", "webhook", None)
    assert audit.changes["wa_id"] == [None, "447400123456"]


def test_the_same_wa_id_again_is_the_same_contact_and_writes_no_audit():
    first = contact_upsert_whatsapp(wa_id="447400123456", profile_name="Amelia", inbound_at=at(100))

    again = contact_upsert_whatsapp(wa_id="447400123456", profile_name="Amelia", inbound_at=at(200))

    assert again.pk == first.pk
    assert Contact.objects.get().last_inbound_at == at(200)
    assert AuditLog.objects.count() == 1


def test_last_inbound_at_only_moves_forward():
    contact_upsert_whatsapp(wa_id="447400123456", inbound_at=at(200))
    contact_upsert_whatsapp(wa_id="447400123456", inbound_at=at(100))
    contact_upsert_whatsapp(wa_id="447400123456", inbound_at=None)

    assert Contact.objects.get().last_inbound_at == at(200)


def test_an_imported_contact_is_found_by_its_number_and_gains_the_wa_id():
    imported = ContactFactory(phone="+447400123456", wa_id="", name="Mrs Hart")

    contact = contact_upsert_whatsapp(wa_id="447400123456", profile_name="Amelia", inbound_at=None)

    contact.refresh_from_db()
    assert contact.pk == imported.pk
    assert (contact.wa_id, contact.name) == ("447400123456", "Mrs Hart")
    assert contact.attributes["whatsapp_profile_name"] == "Amelia"
    audit = AuditLog.objects.get(action="contact.update")
    assert audit.changes["wa_id"] == ["", "447400123456"]


def test_the_name_follows_whatsapp_until_an_operator_changes_it():
    contact = contact_upsert_whatsapp(wa_id="447400123456", profile_name="Amelia", inbound_at=None)
    contact_upsert_whatsapp(wa_id="447400123456", profile_name="Amelia H.", inbound_at=None)
    contact.refresh_from_db()
    assert contact.name == "Amelia H."

    Contact.objects.filter(pk=contact.pk).update(name="Amelia Hart (VIP)")
    contact_upsert_whatsapp(wa_id="447400123456", profile_name="Mel", inbound_at=None)

    contact.refresh_from_db()
    assert contact.name == "Amelia Hart (VIP)"
    assert contact.attributes["whatsapp_profile_name"] == "Mel"


def test_a_contact_known_by_user_id_gains_its_wa_id_and_phone_later():
    first = contact_upsert_whatsapp(
        wa_id="", user_id="GB.1830492756183940257", username="@noor.k", inbound_at=None
    )
    assert (first.phone, first.wa_id) == (None, "")
    assert first.attributes == {"whatsapp_username": "@noor.k"}

    later = contact_upsert_whatsapp(wa_id="447400654321", user_id="GB.1830492756183940257", inbound_at=None)

    later.refresh_from_db()
    assert later.pk == first.pk
    assert (later.phone, later.wa_id, later.user_id) == (
        "+447400654321",
        "447400654321",
        "GB.1830492756183940257",
    )


def test_a_wa_id_that_phonenumbers_rejects_is_kept_without_a_phone():
    contact = contact_upsert_whatsapp(wa_id="15550001234", inbound_at=None)

    assert (contact.phone, contact.wa_id) == (None, "15550001234")
    assert str(contact) == "15550001234"


def test_a_number_held_under_another_wa_id_stays_with_its_contact():
    holder = ContactFactory(phone="+447400123456", wa_id="447400999999")

    contact = contact_upsert_whatsapp(wa_id="447400123456", inbound_at=None)

    assert contact.pk != holder.pk
    assert contact.phone is None


def test_a_user_id_held_by_another_contact_stays_with_it():
    by_user_id = contact_upsert_whatsapp(wa_id="", user_id="GB.77", inbound_at=None)
    imported = ContactFactory(phone="+447400123456", wa_id="447400123456")

    contact = contact_upsert_whatsapp(wa_id="447400123456", user_id="GB.77", inbound_at=at(100))

    assert contact.pk == imported.pk
    assert Contact.objects.get(pk=imported.pk).user_id == ""
    assert Contact.objects.get(pk=by_user_id.pk).user_id == "GB.77"


def test_an_id_is_required():
    with pytest.raises(ValueError):
        contact_upsert_whatsapp(wa_id=" ", user_id="", inbound_at=None)


def test_contacts_without_phone_export_and_list_through_the_api(api_client):
    contact_upsert_whatsapp(wa_id="", user_id="GB.1", profile_name="Noor", inbound_at=None)
    ContactFactory(phone="+447400000123", name="Zed")

    out = io.StringIO()
    assert contacts_export_csv(queryset=Contact.objects.order_by("id"), out=out) == 2
    assert out.getvalue().splitlines()[1].startswith(",,Noor,")

    client = api_client("contacts.view_contact")
    listed = client.get("/api/v1/contacts/")
    found = client.get("/api/v1/contacts/", {"q": "Noor"})
    assert listed.status_code == found.status_code == 200
    assert sorted(row["name"] for row in listed.json()["results"]) == ["Noor", "Zed"]
    assert [(row["phone"], row["name"]) for row in found.json()["results"]] == [(None, "Noor")]


def test_importing_a_wa_id_held_by_a_contact_without_phone_reports_the_row():
    contact_upsert_whatsapp(wa_id="15550001234", inbound_at=None)
    csv = "phone,wa_id,name\n+447400123456,15550001234,Someone\n+447400123457,,Other\n"

    result = contacts_import_csv(file=io.BytesIO(csv.encode()), actor=None, source="csv")

    assert result.created == 1
    assert [error.line for error in result.errors] == [2]
    assert Contact.objects.get(wa_id="15550001234").phone is None
