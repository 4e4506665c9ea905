import pytest
from django.core.management import CommandError, call_command

from contacts.models import Contact
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
    ]
    assert "import: 100%" in err  # tqdm's bar over the file's bytes
    assert Contact.objects.count() == 2
    log = AuditLog.objects.get()
    assert (log.source, log.actor, log.target_repr) == ("csv", None, str(path))


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
