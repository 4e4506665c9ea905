"""The admin's login lockout behind a load balancer: django-axes counts the client's address (the
one the trusted proxy appended to X-Forwarded-For, never what the client wrote) and the username,
each locking on its own."""

import pytest

from tests.factories import UserFactory

LOGIN = "/admin/login/"
BALANCER = "10.0.1.17"  # REMOTE_ADDR of every request: the load balancer's


@pytest.fixture(autouse=True)
def behind_a_load_balancer(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.AXES_FAILURE_LIMIT = 3


def login(client, username: str, password: str, *, client_address: str, claimed: str = ""):
    forwarded = f"{claimed}, {client_address}" if claimed else client_address
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=BALANCER,
        HTTP_X_FORWARDED_FOR=forwarded,
    )


@pytest.mark.django_db
def test_one_address_trying_many_usernames_is_locked_out_and_others_behind_the_balancer_are_not(client):
    UserFactory(username="ops", password="a long enough passphrase", is_staff=True)
    UserFactory(username="other", password="a long enough passphrase", is_staff=True)

    for username in ("alice", "bob", "carol"):  # a spray from one address, written over each time
        login(client, username, "guess", client_address="203.0.113.7", claimed=f"198.51.100.{len(username)}")

    locked = login(client, "ops", "a long enough passphrase", client_address="203.0.113.7")
    elsewhere = login(client, "other", "a long enough passphrase", client_address="198.51.100.9")

    assert locked.status_code == 429
    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/admin/"


@pytest.mark.django_db
def test_one_username_tried_from_many_addresses_is_locked_out(client):
    UserFactory(username="ops", password="a long enough passphrase", is_staff=True)

    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        login(client, "ops", "guess", client_address=address)

    assert login(client, "ops", "a long enough passphrase", client_address="203.0.113.4").status_code == 429


@pytest.mark.django_db
def test_without_a_trusted_proxy_the_forwarded_header_is_not_believed(client, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    UserFactory(username="ops", password="a long enough passphrase", is_staff=True)

    for username in ("alice", "bob", "carol"):  # "different addresses" the client made up
        login(client, username, "guess", client_address=f"203.0.113.{len(username)}")

    # all came from the balancer's address, which is now locked out
    assert login(client, "ops", "a long enough passphrase", client_address="198.51.100.9").status_code == 429
