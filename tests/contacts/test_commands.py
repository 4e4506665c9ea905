import csv
import io

import pytest
from django.core.management import CommandError, call_command

from contacts.models import Contact
from contacts.services.csv_io import ImportResult, RowError, import_refused_csv
from core.models import AuditLog
from tests.factories import ContactFactory


@pytest.mark.django_db
def test_contacts_import_prints_counts_and_bad_rows(tmp_path, capsys):
    path = tmp_path / "contacts.csv"
    path.write_text("phone,name\n+447400000001,Ana\nnope,Bad\n+447400000002,Bea\n", encoding="utf-8")

    call_command("contacts_import", str(path))

    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "line 3: phone: not a valid phone number: start it with + and the country code",
        "rows: 3, created: 2, updated: 0, unchanged: 0, refused: 1",
        f"1 refused row(s) written to {tmp_path / 'contacts.refused.csv'} with an error column: "
        "fix them there and import that file",
    ]
    assert "import: 100%" in err  # tqdm's bar over the file's bytes
    assert Contact.objects.count() == 2
    log = AuditLog.objects.get()
    assert (log.source, log.actor, log.target_repr) == ("csv", None, str(path))


@pytest.mark.django_db
def test_contacts_import_writes_the_refused_rows_as_the_admin_offers_them(tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_bytes(b'phone,name,tags\r\n+447400000001,Ana,vip\r\n+4474,"Short, Sam",=cmd\r\nnope,Bad\r\n')
    refused = tmp_path / "out" / "fix-me.csv"
    refused.parent.mkdir()

    call_command("contacts_import", str(path), "--refused", str(refused), "--no-progress")

    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:2]] == ["line 3", "line 4"]
    assert out[-1].startswith(f"2 refused row(s) written to {refused} ")
    rows = list(csv.reader(io.StringIO(refused.read_text(encoding="utf-8"))))
    assert rows[0] == ["phone", "name", "tags", "error"]
    assert [row[:3] for row in rows[1:]] == [["'+4474", "Short, Sam", "'=cmd"], ["nope", "Bad", ""]]
    assert rows[1][3].startswith("phone: ") and rows[2][3] == out[1].split(": ", 1)[1]
    result = ImportResult(header=["phone", "name", "tags"])
    result.errors.extend(
        RowError(line, reason, tuple(cells))
        for line, reason, cells in (
            (3, rows[1][3], ["+4474", "Short, Sam", "=cmd"]),
            (4, rows[2][3], ["nope", "Bad"]),
        )
    )
    admin_file = io.StringIO()
    import_refused_csv(result=result, out=admin_file)
    assert refused.read_bytes() == admin_file.getvalue().encode()  # the admin's download, byte for byte

    Contact.objects.all().delete()
    refused.write_text(
        refused.read_text(encoding="utf-8").replace("'+4474,", "+447400000002,"), encoding="utf-8"
    )
    call_command("contacts_import", str(refused), "--no-progress")
    assert (
        capsys.readouterr().out.splitlines()[-2]
        == "rows: 2, created: 1, updated: 0, unchanged: 0, refused: 1"
    )
    assert (tmp_path / "out" / "fix-me.refused.csv").exists()


@pytest.mark.django_db
def test_contacts_import_writes_no_refused_file_when_every_row_is_good(tmp_path, capsys):
    path = tmp_path / "good.csv"
    path.write_text("phone\n+447400000001\n", encoding="utf-8")

    call_command("contacts_import", str(path), "--no-progress")

    assert capsys.readouterr().out.splitlines() == [
        "rows: 1, created: 1, updated: 0, unchanged: 0, refused: 0"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv"]
    with pytest.raises(CommandError, match="is the file being imported"):
        call_command("contacts_import", str(path), "--refused", str(path))


@pytest.mark.django_db
def test_contacts_import_fails_on_an_unreadable_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("contacts_import", str(tmp_path / "missing.csv"))

    path = tmp_path / "no-phone.csv"
    path.write_text("name\nAna\n", encoding="utf-8")
    with pytest.raises(CommandError, match='no "phone" column'):
        call_command("contacts_import", str(path), "--no-progress")


@pytest.mark.django_db
def test_contacts_export_to_a_file_and_to_stdout(tmp_path, capsys):
    ContactFactory(phone="+447400000001", name="Ana", tags=["vip"])
    ContactFactory(phone="+447400000002", name="Bea")
    path = tmp_path / "out.csv"

    call_command("contacts_export", str(path))
    assert capsys.readouterr().out == f"2 contacts exported to {path}\n"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("phone,wa_id,name,email,tags")
    assert len(lines) == 3

    call_command("contacts_export", "-", "--tag", "vip")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[:3] for line in lines[1:]] == [["+447400000001", "", "Ana"]]


@pytest.mark.django_db
def test_an_export_imports_back_through_the_commands(tmp_path, capsys):
    ContactFactory(phone="+447400000001", name="Ana", tags=["vip"], attributes={"plan": "gold"})
    path = tmp_path / "out.csv"
    call_command("contacts_export", str(path))
    Contact.objects.all().delete()

    call_command("contacts_import", str(path), "--no-progress")

    assert (
        capsys.readouterr().out.splitlines()[-1]
        == "rows: 1, created: 1, updated: 0, unchanged: 0, refused: 0"
    )
    contact = Contact.objects.get()
    assert (contact.name, contact.tags, contact.attributes) == ("Ana", ["vip"], {"plan": "gold"})
