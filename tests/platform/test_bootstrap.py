import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command


@pytest.mark.django_db
def test_admin_bootstrap_creates_one_admin_and_prints_its_password_once(capsys):
    call_command("admin_bootstrap")
    first = capsys.readouterr().out
    call_command("admin_bootstrap")
    second = capsys.readouterr().out

    admin = get_user_model().objects.get(username="admin")
    password = first.split("password: ")[1].split()[0]
    assert admin.is_superuser and admin.check_password(password)
    assert second == ""
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_storage_setup_creates_the_bucket_with_public_access_blocked():
    from core.aws import bucket_public_access_block

    call_command("storage_setup")
    call_command("storage_setup")

    assert all(bucket_public_access_block().values())
