import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.broker import broker  # noqa: F401 - a fixture for every test package
from tests.factories import UserFactory
from tests.sms import sms_sandbox  # noqa: F401 - fixtures for every test package
from tests.smtp import smtp_server  # noqa: F401


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """API throttling counts requests in the database cache, a table that migrations do not make."""
    with django_db_blocker.unblock():
        call_command("createcachetable", verbosity=0)


@pytest.fixture
def api_client(db):
    """api_client("contacts.view_contact", ...): an APIClient with the token of a user holding them."""

    def make(*permissions: str) -> APIClient:
        user = UserFactory(permissions=permissions)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        client.user = user
        return client

    return make


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, admin_user):
    """Logged in with force_login: django-axes' backend wants a request that client.login() lacks."""
    client.force_login(admin_user)
    return client
