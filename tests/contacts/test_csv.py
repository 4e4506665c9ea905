import csv
import io

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from contacts.models import Contact
from contacts.services import csv_io
from contacts.services.csv_io import contacts_export_csv, contacts_import_csv
from core.models import AuditLog
from tests.factories import ContactFactory

CSV = AuditLog.Source.CSV


def run_import(text: str | bytes, **kwargs):
    data = text.encode() if isinstance(text, str) else text
    return contacts_import_csv(file=io.BytesIO(data), actor=None, source=CSV, **kwargs)


def state() -> list[tuple]:
    return list(
        Contact.objects.order_by("phone").values_list(
            "phone", "wa_id", "name", "email", "tags", "language", "attributes", "opted_out_at"
        )
    )


def export() -> str:
    out = io.StringIO()
    contacts_export_csv(queryset=Contact.objects.order_by("id"), out=out)
    return out.getvalue()


PEOPLE = (
    "phone,name,email,tags,language,city\n"
    "+447400000001,Ana,ana@example.com,vip;lead,pt-br,Lisbon\n"
    "+447400000002,Bea,,,en,\n"
    "+447400000003,Cy,cy@example.com,lead|beta,,Leeds\n"
)


@pytest.mark.django_db
def test_import_creates_and_reading_the_same_file_again_changes_nothing():
    first = run_import(PEOPLE)
    after_first = state()
    second = run_import(PEOPLE)

    assert (first.created, first.updated, first.unchanged, first.total_rows, first.errors) == (3, 0, 0, 3, [])
    assert (second.created, second.updated, second.unchanged, second.errors) == (0, 0, 3, [])
    assert state() == after_first
    ana = Contact.objects.get(phone="+447400000001")
    assert (ana.tags, ana.language, ana.attributes) == (["vip", "lead"], "pt_BR", {"city": "Lisbon"})
    assert Contact.objects.get(phone="+447400000003").tags == ["lead", "beta"]
    assert Contact.objects.get(phone="+447400000002").attributes == {}


@pytest.mark.django_db
def test_import_merges_into_existing_contacts():
    ContactFactory(
        phone="+447400000001",
        name="Old",
        email="keep@example.com",
        tags=["a", "vip"],
        attributes={"x": 1, "city": "Porto"},
    )

    result = run_import(
        'phone,name,email,tags,attributes,city\n+447400000001,New,,vip;b,"{""y"": 2}",Lisbon\n'
    )

    assert (result.created, result.updated) == (0, 1)
    contact = Contact.objects.get()
    assert (contact.name, contact.email) == ("New", "keep@example.com")  # empty cells leave fields be
    assert contact.tags == ["a", "vip", "b"]
    assert contact.attributes == {"x": 1, "y": 2, "city": "Lisbon"}


@pytest.mark.django_db
def test_import_reports_physical_line_numbers():
    text = (
        "phone,name,email\n"  # 1
        '+447400000001,"Ana\n'  # 2: a quoted name over two lines
        'Silva",\n'  # 3
        "\n"  # 4: blank, skipped
        "+447400000002,Bea,bea@\n"  # 5
        "+4474,Cy,\n"  # 6
        "+447400000001,Ana again,\n"  # 7: the same phone as line 2
        "+447400000004,Di,,extra\n"  # 8: more cells than the header
    )

    result = run_import(text)

    assert [str(error) for error in result.errors] == [
        "line 5: email: not a valid email address",
        "line 6: phone: not a valid phone number: too short for +44 (GB)",
        "line 7: phone: +447400000001 is already on line 2",
        "line 8: 4 cells but the header has 3 (quote a value that holds a comma)",
    ]
    assert (result.created, result.total_rows) == (1, 5)
    assert Contact.objects.get().name == "Ana\nSilva"


@pytest.mark.django_db
def test_import_names_every_bad_cell_of_a_row():
    result = run_import("phone,email,language,attributes\n12,x@,english,[1]\n")

    assert result.errors[0].reason.split("; ") == [
        "phone: not a valid phone number: start it with + and the country code",
        "email: not a valid email address",
        'language: not a language code such as "en" or "en_US"',
        "attributes: not a JSON object",
    ]


@pytest.mark.django_db
def test_import_refuses_a_whatsapp_id_held_by_another_number():
    ContactFactory(phone="+447400000009", wa_id="447400000009")

    result = run_import(
        "phone,wa_id\n+447400000001,447400000009\n+447400000002,447400000002\n+447400000003,447400000002\n"
    )

    assert [str(error) for error in result.errors] == [
        "line 2: wa_id: a contact with this WhatsApp id already exists",
        "line 4: wa_id: 447400000002 is already used by +447400000002",
    ]
    assert (result.created, result.unchanged) == (1, 0)


@pytest.mark.django_db
def test_import_refuses_a_file_that_is_not_utf8_and_imports_nothing():
    text = "phone,name\n+447400000001,Ana\n+447400000002,Zoë\n".encode("latin-1")

    with pytest.raises(ValidationError) as excinfo:
        run_import(text)

    assert excinfo.value.message_dict == {"file": ['Line 3 is not UTF-8 text: save the file as "CSV UTF-8".']}
    assert not Contact.objects.exists()
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_an_encoding_error_after_some_chunks_were_written_still_imports_nothing(monkeypatch):
    monkeypatch.setattr(csv_io, "IMPORT_CHUNK_ROWS", 2)
    rows = "".join(f"+4474000000{n:02d},Name {n}\n" for n in range(1, 8))
    text = b"phone,name\n" + rows.encode() + b"+447400000099,Zo\xeb\n"

    with pytest.raises(ValidationError) as excinfo:
        run_import(text)

    assert "Line 9 is not UTF-8" in excinfo.value.messages[0]
    assert not Contact.objects.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,email\nAna,ana@example.com\n", 'The header line has no "phone" column.'),
        ("", "The file is empty; it needs a header line with a phone column."),
        ("phone,Phone\n", 'The header names the column "Phone" twice.'),
        ('phone,name\n+447400000001,"Ana\n+447400000002,Bea\n', "Line 2: unexpected end of data."),
        ('phone,name\n+447400000001,Ana\n+447400000002,"Bea" Smith\n', "Line 3: ',' expected after '\"'."),
        (f'phone,name\n+447400000001,"{"x" * 200_000}"\n', "Line 2: field larger than field limit (131072)."),
    ],
)
@pytest.mark.django_db
def test_import_refuses_a_file_it_cannot_read(text, message):
    with pytest.raises(ValidationError) as excinfo:
        run_import(text)

    assert excinfo.value.message_dict == {"file": [message]}


@pytest.mark.django_db
def test_import_reads_excels_csv_utf8_and_text_streams():
    result = run_import("\ufeffPhone,Name\r\n+447400000001,Zoë\r\n")  # Excel's "CSV UTF-8": a BOM, CRLF
    assert (result.created, result.errors) == (1, [])
    assert Contact.objects.get().name == "Zoë"

    result = contacts_import_csv(file=io.StringIO("phone\n+447400000002\n"), actor=None, source=CSV)
    assert result.created == 1


@pytest.mark.django_db
def test_import_in_chunks_counts_and_reports_progress(monkeypatch):
    monkeypatch.setattr(csv_io, "IMPORT_CHUNK_ROWS", 2)
    ContactFactory(phone="+447400000003", name="Old")
    rows = [f"+4474000000{n:02d},Name {n}" for n in range(1, 8)]
    text = "phone,name\n" + "\n".join([*rows[:4], "bad,Bad", *rows[4:]]) + "\n"
    reported: list[int] = []

    result = run_import(text, progress=reported.append)

    assert (result.created, result.updated, result.unchanged, len(result.errors)) == (6, 1, 0, 1)
    assert result.errors[0].line == 6
    assert sum(reported) == len(text.encode())
    assert len(reported) >= 4
    log = AuditLog.objects.get()
    assert (log.action, log.source, log.changes) == (
        "contacts.import",
        "csv",
        {"created": 6, "updated": 1, "unchanged": 0, "errors": 1, "total_rows": 8},
    )


@pytest.mark.django_db
def test_import_can_opt_out_but_never_back_in():
    run_import(
        "phone,opted_out_at,opt_out_source\n+447400000001,2025-01-31T09:00:00Z,STOP reply\n+447400000002,,\n"
    )
    contact = Contact.objects.get(phone="+447400000001")
    assert (contact.opted_out_at.isoformat(), contact.opt_out_source) == (
        "2025-01-31T09:00:00+00:00",
        "STOP reply",
    )
    assert not Contact.objects.get(phone="+447400000002").is_opted_out

    result = run_import(
        "phone,opted_out_at\n+447400000001,\n+447400000002,2025-02-01 10:00\n+447400000003,soon\n"
    )

    assert Contact.objects.get(phone="+447400000001").opted_out_at == contact.opted_out_at
    assert Contact.objects.get(phone="+447400000002").opt_out_source == "csv"
    assert [str(e) for e in result.errors] == [
        "line 4: opted_out_at: not a date and time such as 2025-01-31T09:00:00Z"
    ]


@pytest.mark.django_db
def test_export_then_import_restores_the_same_contacts():
    ContactFactory(
        phone="+447400000001",
        wa_id="447400000001",
        name='=HYPERLINK("http://evil")',
        email="ana@example.com",
        tags=["vip", "-1"],
        language="pt_BR",
        attributes={"plan": "gold", "seats": 3, "nested": {"a": [1, 2]}},
        opted_out_at=timezone.now(),
        opt_out_source="STOP",
    )
    ContactFactory(phone="+447400000002", name="'@me", email="", tags=[], attributes={})
    before = state()
    text = export()

    Contact.objects.all().delete()
    result = run_import(text)

    assert (result.created, result.errors) == (2, [])
    assert state() == before


@pytest.mark.django_db
def test_export_writes_the_documented_columns_and_defuses_formulas():
    ContactFactory(phone="+447400000001", name="=1+1", tags=["a", "b"], attributes={"k": "v"})

    rows = list(csv.reader(io.StringIO(export())))

    assert rows[0] == [
        "phone",
        "wa_id",
        "name",
        "email",
        "tags",
        "language",
        "attributes",
        "opted_out_at",
        "opt_out_source",
        "created_at",
    ]
    assert rows[1][:7] == ["+447400000001", "", "'=1+1", rows[1][3], "a;b", "en", '{"k":"v"}']


@pytest.mark.django_db
def test_export_writes_a_contact_known_only_to_whatsapp_with_an_empty_phone():
    ContactFactory(phone=None, wa_id="99912345", name="No number")

    rows = list(csv.DictReader(io.StringIO(export())))

    assert [(r["phone"], r["wa_id"], r["name"]) for r in rows] == [("", "99912345", "No number")]


@pytest.mark.django_db
def test_import_says_why_the_phone_library_refuses_a_number():
    result = run_import("phone\n+4474\n+15555551234\n+4474000000000000\n")

    assert [error.reason for error in result.errors] == [
        "phone: not a valid phone number: too short for +44 (GB)",
        "phone: not a valid phone number: the length fits +1 (US) but no number range in use there "
        "starts with these digits",
        "phone: not a valid phone number: too long for +44 (GB)",
    ]
