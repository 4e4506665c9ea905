import phonenumbers
import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError

from contacts.models import Contact
from contacts.services import cleaning
from contacts.services import contact as contact_services
from contacts.services.bulk import contacts_delete, contacts_opt_out, contacts_tag, contacts_untag
from contacts.services.cleaning import PHONE_TAKEN, phone_normalise
from contacts.services.contact import (
    contact_create,
    contact_delete,
    contact_opt_in,
    contact_opt_out,
    contact_update,
)
from core.models import AuditLog
from tests.factories import ContactFactory, UserFactory

API = AuditLog.Source.API


def errors_of(excinfo) -> dict[str, list[str]]:
    return excinfo.value.message_dict


# -- phone numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+447400123456", "+447400123456"),
        (" +44 7400 123-456 ", "+447400123456"),
        ("+44 (0)7400 123456", "+447400123456"),
        ("+1 (415) 555-0123", "+14155550123"),
    ],
)
def test_phone_normalise_returns_e164(raw, e164):
    assert phone_normalise(raw) == e164


@pytest.mark.parametrize("raw", ["", "   ", "hello", "+44 12", "+447700900123", "+999123456"])
def test_phone_normalise_refuses_what_is_not_a_valid_number(raw):
    with pytest.raises(ValidationError) as excinfo:
        phone_normalise(raw)
    assert list(errors_of(excinfo)) == ["phone"]


def test_phone_validity_shortcut_agrees_with_phonenumbers():
    """Every region's example numbers of every type, and neighbours of them, valid or not."""
    checked = 0
    for region in phonenumbers.SUPPORTED_REGIONS:
        for number_type in vars(phonenumbers.PhoneNumberType).values():
            example = isinstance(number_type, int) and phonenumbers.example_number_for_type(
                region, number_type
            )
            if not example:
                continue
            for delta in (0, 1, 7, 99, 12345):
                number = phonenumbers.PhoneNumber(
                    country_code=example.country_code,
                    national_number=example.national_number + delta,
                    italian_leading_zero=example.italian_leading_zero,
                )
                assert cleaning._phone_is_valid(number) == phonenumbers.is_valid_number(number), number
                checked += 1
    assert checked > 5000


def test_phone_without_plus_needs_a_default_region(settings):
    settings.PHONE_DEFAULT_REGION = None
    with pytest.raises(ValidationError) as excinfo:
        phone_normalise("07400 123456")
    assert "start it with +" in errors_of(excinfo)["phone"][0]

    settings.PHONE_DEFAULT_REGION = "GB"
    assert phone_normalise("07400 123456") == "+447400123456"


# -- one contact -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_contact_create_normalises_and_audits():
    user = UserFactory()

    contact = contact_create(
        phone="+44 7400 123456",
        name="  Ana Silva ",
        email="ana.müller@example.com",
        tags=[" vip", "lead", "vip", ""],
        language="pt-br",
        attributes={"city": "Lisbon"},
        actor=user,
        source=API,
    )

    contact.refresh_from_db()
    assert (contact.phone, contact.name, contact.email) == (
        "+447400123456",
        "Ana Silva",
        "ana.müller@example.com",
    )
    assert contact.tags == ["vip", "lead"]
    assert contact.language == "pt_BR"
    assert contact.attributes == {"city": "Lisbon"}
    log = AuditLog.objects.get()
    assert (log.actor, log.source, log.action) == (user, "api", "contact.create")
    assert (log.target_type, log.target_id) == (ContentType.objects.get_for_model(Contact), str(contact.pk))
    assert log.changes["phone"] == [None, "+447400123456"]


@pytest.mark.django_db
def test_contact_create_refuses_a_phone_that_exists_in_another_format():
    ContactFactory(phone="+447400123456")

    with pytest.raises(ValidationError) as excinfo:
        contact_create(phone="+44 (0) 7400 123 456", source=API)

    assert errors_of(excinfo) == {"phone": [PHONE_TAKEN]}
    assert Contact.objects.count() == 1
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_contact_create_answers_a_race_on_the_constraint_as_a_field_error(monkeypatch):
    ContactFactory(phone="+447400123456", wa_id="447400123456")
    monkeypatch.setattr(
        contact_services, "contact_uniques_check", lambda **kwargs: None
    )  # the other writer won

    with pytest.raises(ValidationError) as excinfo:
        contact_create(phone="+447400123456", source=API)
    assert errors_of(excinfo) == {"phone": [PHONE_TAKEN]}

    with pytest.raises(ValidationError) as excinfo:
        contact_create(phone="+447400999999", wa_id="447400123456", source=API)
    assert list(errors_of(excinfo)) == ["wa_id"]


@pytest.mark.django_db
def test_contact_create_refuses_a_taken_whatsapp_id():
    ContactFactory(wa_id="447400123456")

    with pytest.raises(ValidationError) as excinfo:
        contact_create(phone="+447400999999", wa_id="447400123456", source=API)

    assert errors_of(excinfo) == {"wa_id": [cleaning.WA_ID_TAKEN]}


@pytest.mark.django_db
def test_contact_create_names_every_bad_field_at_once():
    with pytest.raises(ValidationError) as excinfo:
        contact_create(
            phone="12",
            email="not-an-email",
            tags=["x" * 65],
            language="english",
            attributes=["not", "an", "object"],
            source=API,
        )

    assert sorted(errors_of(excinfo)) == ["attributes", "email", "language", "phone", "tags"]
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tags", "vip"),  # a string, not a list
        ("tags", ["a;b"]),  # ";" separates tags in CSV
        ("wa_id", "has space"),
        ("name", "n" * 201),
        ("email", "a@b"),
    ],
)
@pytest.mark.django_db
def test_contact_create_refuses_bad_values(field, value):
    with pytest.raises(ValidationError) as excinfo:
        contact_create(phone="+447400123456", source=API, **{field: value})
    assert list(errors_of(excinfo)) == [field]


@pytest.mark.django_db
def test_contact_update_writes_only_changes_and_audits_old_and_new():
    contact = ContactFactory(name="Old", email="old@example.com", tags=["a"])
    user = UserFactory()

    contact_update(
        contact=contact, actor=user, source=API, name="New", email="old@example.com", tags=["a", "b"]
    )

    contact.refresh_from_db()
    assert (contact.name, contact.tags) == ("New", ["a", "b"])
    log = AuditLog.objects.get()
    assert log.action == "contact.update"
    assert log.changes == {"name": ["Old", "New"], "tags": [["a"], ["a", "b"]]}


@pytest.mark.django_db
def test_contact_update_that_changes_nothing_writes_nothing():
    contact = ContactFactory(name="Same")
    updated_at = contact.updated_at

    contact_update(contact=contact, actor=None, source=API, name=" Same ")

    contact.refresh_from_db()
    assert contact.updated_at == updated_at
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_contact_update_to_a_taken_phone_is_refused_and_leaves_the_contact_as_it_was():
    ContactFactory(phone="+447400000001")
    contact = ContactFactory(phone="+447400000002")

    with pytest.raises(ValidationError) as excinfo:
        contact_update(contact=contact, actor=None, source=API, phone="+447400000001")

    assert errors_of(excinfo) == {"phone": [PHONE_TAKEN]}
    assert contact.phone == "+447400000002"
    contact.refresh_from_db()
    assert contact.phone == "+447400000002"


@pytest.mark.django_db
def test_contact_update_refuses_fields_it_does_not_own():
    with pytest.raises(TypeError):
        contact_update(contact=ContactFactory(), actor=None, source=API, opted_out_at=None)


@pytest.mark.django_db
def test_contact_delete_deletes_and_audits():
    contact = ContactFactory(phone="+447400123456", name="Ana")

    contact_delete(contact=contact, actor=None, source=API)

    assert not Contact.objects.exists()
    log = AuditLog.objects.get()
    assert (log.action, log.target_repr) == ("contact.delete", "Ana (+447400123456)")


# -- consent -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_opt_out_keeps_the_first_time_and_opt_in_lifts_it():
    contact = ContactFactory()

    contact_opt_out(contact=contact, reason="STOP reply", actor=None, source=AuditLog.Source.WEBHOOK)
    first = contact.opted_out_at
    contact_opt_out(contact=contact, reason="again", actor=None, source=API)

    contact.refresh_from_db()
    assert (contact.opted_out_at, contact.opt_out_source) == (first, "STOP reply")
    assert contact.is_opted_out

    contact_opt_in(contact=contact, actor=None, source=API)

    contact.refresh_from_db()
    assert (contact.opted_out_at, contact.opt_out_source) == (None, "")
    assert contact.opted_in_at is not None
    assert contact.opt_in_source == "api"
    assert list(AuditLog.objects.order_by("id").values_list("action", flat=True)) == [
        "contact.opt_out",
        "contact.opt_in",
    ]


# -- many contacts -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_contacts_tag_appends_missing_tags_in_sql_and_counts_changed_contacts():
    lacking = ContactFactory(tags=["a"])
    complete = ContactFactory(tags=["b", "vip"])
    ContactFactory(tags=[], name="not selected")

    count = contacts_tag(
        queryset=Contact.objects.filter(id__in=[lacking.id, complete.id]),
        tags=["vip", "b"],
        actor=None,
        source=API,
    )

    assert count == 1
    lacking.refresh_from_db()
    complete.refresh_from_db()
    assert lacking.tags == ["a", "vip", "b"]
    assert complete.tags == ["b", "vip"]
    log = AuditLog.objects.get()
    assert (log.action, log.target_repr, log.changes) == (
        "contacts.tag",
        "1 contact",
        {"tags": ["vip", "b"], "ids": [lacking.id]},
    )
    assert (
        contacts_tag(queryset=Contact.objects.all(), tags=["vip"], actor=None, source=API) == 1
    )  # "not selected"


@pytest.mark.django_db
def test_contacts_tag_refuses_an_empty_tag():
    with pytest.raises(ValidationError):
        contacts_tag(queryset=Contact.objects.all(), tags=[" "], actor=None, source=API)


@pytest.mark.django_db
def test_contacts_untag_removes_only_those_tags():
    contact = ContactFactory(tags=["a", "vip", "b"])

    assert contacts_untag(queryset=Contact.objects.all(), tags=["vip"], actor=None, source=API) == 1

    contact.refresh_from_db()
    assert contact.tags == ["a", "b"]


@pytest.mark.django_db
def test_contacts_opt_out_skips_those_already_out():
    already = ContactFactory()
    contact_opt_out(contact=already, reason="STOP", actor=None, source=API)
    others = ContactFactory.create_batch(2)

    count = contacts_opt_out(
        queryset=Contact.objects.all(), reason="campaign complaint", actor=None, source=API
    )

    assert count == 2
    assert Contact.objects.filter(opted_out_at__isnull=False).count() == 3
    assert {c.opt_out_source for c in Contact.objects.filter(id__in=[o.id for o in others])} == {
        "campaign complaint"
    }
    already.refresh_from_db()
    assert already.opt_out_source == "STOP"


@pytest.mark.django_db
def test_contacts_delete_deletes_the_queryset_with_one_audit_row():
    doomed = ContactFactory.create_batch(3, tags=["old"])
    kept = ContactFactory(tags=["new"])

    assert (
        contacts_delete(queryset=Contact.objects.filter(tags__contains=["old"]), actor=None, source=API) == 3
    )

    assert list(Contact.objects.all()) == [kept]
    log = AuditLog.objects.get()
    assert (log.action, log.changes["ids"]) == ("contacts.delete", sorted(c.id for c in doomed))
