"""core.permissions.PermissionsBackend: ModelBackend's permissions, in one query."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _fresh(user):
    """The user as a new request loads it: no permissions cached yet."""
    return get_user_model().objects.get(pk=user.pk)


def test_a_user_has_their_own_and_their_groups_permissions_read_in_one_query(
    django_assert_num_queries,
):
    user = UserFactory(is_staff=True, permissions=["contacts.view_contact"])
    team = Group.objects.create(name="team")
    team.permissions.add(_permission("messaging.view_conversation"))
    user.groups.add(team)
    Group.objects.create(name="others").permissions.add(_permission("messaging.add_message"))

    user = _fresh(user)
    with django_assert_num_queries(1):
        assert user.has_perm("contacts.view_contact")
        assert user.has_perm("messaging.view_conversation")
        assert not user.has_perm("messaging.add_message")
        assert user.has_module_perms("messaging")
        assert not user.has_module_perms("campaigns")
    assert user.get_all_permissions() == {"contacts.view_contact", "messaging.view_conversation"}


def test_an_inactive_user_has_none_and_a_superuser_every_one():
    inactive = UserFactory(is_active=False, permissions=["contacts.view_contact"])
    boss = UserFactory(is_superuser=True)

    assert not _fresh(inactive).has_perm("contacts.view_contact")
    assert _fresh(inactive).get_all_permissions() == set()
    assert len(_fresh(boss).get_all_permissions()) == Permission.objects.count()


def test_a_permission_taken_away_is_gone_at_the_next_request(client):
    user = UserFactory(is_staff=True, permissions=["messaging.view_conversation"])
    client.force_login(user)
    assert client.get("/admin/messaging/conversation/changes/").status_code == 200

    user.user_permissions.clear()

    assert client.get("/admin/messaging/conversation/changes/").status_code == 403
