from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact
from contacts.selectors import (
    NEWEST_FIRST,
    NEWEST_FIRST_SORTED,
    ContactPaginator,
    contact_get,
    contact_list,
    contact_tags_most_common,
)
from tests.factories import ContactFactory


@pytest.fixture
def people(db):
    return {
        "ana": ContactFactory(name="Ana Silva", email="ana@example.com", phone="+447400123456", tags=["vip"]),
        "bruno": ContactFactory(name="Bruno Okafor", email="bruno@shop.example", phone="+14155550123"),
        "chen": ContactFactory(
            name="Chen Nguyen", email="chen@example.org", phone="+33612345678", tags=["lead"]
        ),
    }


def names(queryset) -> set[str]:
    return {contact.name for contact in queryset}


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("silva", {"Ana Silva"}),
        ("OKAF", {"Bruno Okafor"}),
        ("shop.example", {"Bruno Okafor"}),
        ("7400123", {"Ana Silva"}),
        ("+44 7400 123", {"Ana Silva"}),
        ("4155-550", {"Bruno Okafor"}),
        ("(415) 555 0123", {"Bruno Okafor"}),
        ("example", {"Ana Silva", "Bruno Okafor", "Chen Nguyen"}),
        ("nobody", set()),
    ],
)
def test_search_matches_name_email_and_phone_digits(people, term, expected):
    assert names(contact_list(search=term)) == expected


def test_search_finds_a_number_written_in_the_default_regions_format(people, settings):
    settings.PHONE_DEFAULT_REGION = "GB"

    assert names(contact_list(search="07400 123456")) == {"Ana Silva"}


def test_filters_combine(people):
    people["chen"].opted_out_at = timezone.now()
    people["chen"].save()

    assert names(contact_list(tag="vip")) == {"Ana Silva"}
    assert names(contact_list(opted_out=True)) == {"Chen Nguyen"}
    assert names(contact_list(opted_out=False)) == {"Ana Silva", "Bruno Okafor"}
    assert names(contact_list(search="example", tag="lead", opted_out=True)) == {"Chen Nguyen"}
    assert names(contact_list(tag="")) == {"Ana Silva", "Bruno Okafor", "Chen Nguyen"}


def test_created_after_and_before(people):
    old = timezone.now() - timedelta(days=10)
    Contact.objects.filter(id=people["ana"].id).update(created_at=old)

    assert names(contact_list(created_before=timezone.now() - timedelta(days=1))) == {"Ana Silva"}
    assert names(contact_list(created_after=timezone.now() - timedelta(days=1))) == {
        "Bruno Okafor",
        "Chen Nguyen",
    }
    assert names(contact_list(created_after=old, created_before=old + timedelta(seconds=1))) == {"Ana Silva"}


def test_list_is_newest_first(people):
    assert [c.name for c in contact_list()] == ["Chen Nguyen", "Bruno Okafor", "Ana Silva"]


def test_search_is_written_the_way_the_trigram_indexes_answer(people):
    """With sequential scans off, PostgreSQL uses the trigram indexes of migration 0002 if it can."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'contact_%%_trgm'")
        if cursor.fetchone()[0] != 3:
            pytest.skip("this PostgreSQL has no pg_trgm")
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = contact_list(search="4155").order_by().query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "contact_name_trgm" in plan
    assert "contact_email_trgm" in plan
    assert "contact_phone_trgm" in plan


def test_contact_get(people):
    assert contact_get(id=people["ana"].id) == people["ana"]
    assert contact_get(id=0) is None


@pytest.mark.django_db
def test_tags_most_common_counts_each_tag():
    ContactFactory.create_batch(3, tags=["vip", "lead"])
    ContactFactory(tags=["lead", "beta"])

    assert contact_tags_most_common(limit=2) == [("lead", 4), ("vip", 3)]


# -- pages: the count exact up to a bound, the plan chosen by it --------------------------------


@pytest.mark.django_db
def test_paginator_counts_exactly_up_to_the_bound_and_sorts_the_few(monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 3)
    contacts = ContactFactory.create_batch(3, tags=["vip"])
    ContactFactory(tags=["lead"])

    paginator = ContactPaginator(contact_list(tag="vip"), 2)
    page = paginator.page(1)

    assert (paginator.count, paginator.count_exact, paginator.num_pages) == (3, True, 2)
    assert [c.id for c in page] == [contacts[2].id, contacts[1].id]
    assert page.has_next()
    assert tuple(paginator.object_list.query.order_by) == NEWEST_FIRST_SORTED


@pytest.mark.django_db
def test_paginator_past_the_bound_estimates_walks_the_index_and_finds_every_page(monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 2)
    contacts = ContactFactory.create_batch(5, tags=["vip"])
    ContactFactory(tags=["lead"])

    paginator = ContactPaginator(contact_list(tag="vip"), 2)

    assert paginator.count_exact is False
    assert paginator.count >= 3  # the planner's estimate, never below the bound + 1
    pages = [paginator.page(number) for number in (1, 2, 3)]
    assert tuple(paginator.object_list.query.order_by) == NEWEST_FIRST
    assert [c.id for page in pages for c in page] == [c.id for c in reversed(contacts)]
    assert [page.has_next() for page in pages] == [True, True, False]
    assert list(paginator.page(4)) == []  # past the end: empty, not an error


@pytest.mark.django_db
def test_paginator_searches_a_few_matches_once_and_reads_the_page_by_their_ids(monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 3)
    contacts = ContactFactory.create_batch(3, name="Ana Silva")
    ContactFactory(name="Bruno Okafor")

    paginator = ContactPaginator(contact_list(search="silva"), 2)
    with CaptureQueriesContext(connection) as queries:
        pages = [list(paginator.page(1)), list(paginator.page(2))]

    assert (paginator.count, paginator.count_exact) == (3, True)
    assert pages == [[contacts[2], contacts[1]], [contacts[0]]]
    searches = [q["sql"] for q in queries if "LIKE" in q["sql"] and not q["sql"].startswith("EXPLAIN")]
    assert len(searches) == 1


@pytest.mark.django_db
def test_paginator_far_past_the_bound_by_the_estimate_counts_nothing(monkeypatch):
    monkeypatch.setattr(ContactPaginator, "count_skipped_from", 0)
    contacts = ContactFactory.create_batch(3, tags=["vip"])

    paginator = ContactPaginator(contact_list(tag="vip"), 2)
    with CaptureQueriesContext(connection) as queries:
        assert paginator.count_exact is False
        assert paginator.count == max(paginator.rows_estimated, paginator.exact_count_max + 1)
    assert [query["sql"] for query in queries if "COUNT(" in query["sql"].upper()] == []
    assert [c.id for c in paginator.page(1)] == [contacts[2].id, contacts[1].id]


@pytest.mark.django_db
def test_paginator_leaves_another_ordering_alone(monkeypatch):
    monkeypatch.setattr(ContactPaginator, "exact_count_max", 1)
    ContactFactory.create_batch(3, name="Ana")

    paginator = ContactPaginator(Contact.objects.order_by("name", "id"), 2)
    paginator.page(1)

    assert tuple(paginator.object_list.query.order_by) == ("name", "id")
