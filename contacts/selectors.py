from contextlib import suppress
from datetime import datetime
from functools import cached_property

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F, Q, QuerySet

from contacts.models import Contact
from contacts.services.cleaning import phone_normalise
from core.paging import EstimatedCountPaginator

_PHONE_PUNCTUATION = str.maketrans("", "", " -().\t")
# Newest first, but not along the created_at index: with a LIMIT, PostgreSQL would walk that
# index backwards and filter every row (a full second at 1M rows for a rare name). NULLS LAST,
# meaningless on a non-null column, keeps the index out, so the trigram and tag indexes find the
# matches and a top-N sort orders them. ContactPaginator walks the index after all when the
# matches are many: then the first page's rows are found after a few thousand rows at most.
NEWEST_FIRST_SORTED = (F("created_at").desc(nulls_last=True), F("id").desc())
NEWEST_FIRST = ("-created_at", "-id")


def contact_search_q(term: str) -> Q:
    """Names and emails containing the term, and phones containing its digits.

    Written as the trigram indexes of migration 0002 expect: `icontains` on name and email
    (UPPER(col) LIKE), `contains` on phone (phone LIKE). A term that is a whole number in the
    default region's national format ("07400 123456") also finds that number.
    """
    q = Q(name__icontains=term) | Q(email__icontains=term)
    digits = term.translate(_PHONE_PUNCTUATION).removeprefix("+")
    if digits.isascii() and digits.isdigit():
        q |= Q(phone__contains=digits)
        if not term.startswith("+"):
            with suppress(ValidationError):
                q |= Q(phone=phone_normalise(term))
    return q


def contact_list(
    *,
    search: str | None = None,
    tag: str | None = None,
    opted_out: bool | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Contact]:
    """Contacts, newest first; every filter left as None is not applied."""
    queryset = Contact.objects.all()
    if search and search.strip():
        queryset = queryset.filter(contact_search_q(search.strip()))
    if tag:
        queryset = queryset.filter(tags__contains=[tag])
    if (search and search.strip()) or tag:
        queryset = queryset.order_by(*NEWEST_FIRST_SORTED)
    if opted_out is not None:
        queryset = queryset.filter(opted_out_at__isnull=not opted_out)
    if created_after is not None:
        queryset = queryset.filter(created_at__gte=created_after)
    if created_before is not None:
        queryset = queryset.filter(created_at__lt=created_before)
    return queryset


class ContactPaginator(EstimatedCountPaginator):
    """Pages of contacts (the API's and the admin's), the count exact up to EXACT_COUNT_MAX.

    Newest first sorted (NEWEST_FIRST_SORTED) suits a few matches: past the exact count they are
    many, and a sort would read them all, so the page walks the created_at index instead. The
    admin's changelist repeats its ordering after the one it asked for, hence a prefix.

    A few matches are counted by reading their ids, and the page is then read by those ids: the
    search (a trigram index scan of tens of milliseconds for a full name) runs once, not twice.
    """

    ids_counted: list[int] | None = None

    def _sorted_newest_first(self) -> bool:
        return self.object_list.query.order_by[: len(NEWEST_FIRST_SORTED)] == NEWEST_FIRST_SORTED

    @cached_property
    def counted(self) -> int:
        if not self._sorted_newest_first() or self.rows_estimated > self.count_skipped_from:
            return super().counted
        self.ids_counted = list(
            self.object_list.order_by().values_list("id", flat=True)[: self.exact_count_max + 1]
        )
        return len(self.ids_counted)

    def page(self, number):
        if self._sorted_newest_first():
            if not self.count_exact:
                self.object_list = self.object_list.order_by(*NEWEST_FIRST)
            elif self.ids_counted is not None:
                self.object_list = Contact.objects.filter(id__in=self.ids_counted).order_by(
                    *NEWEST_FIRST_SORTED
                )
        return super().page(number)


def contact_get(*, id: int) -> Contact | None:
    return Contact.objects.filter(id=id).first()


def contact_tags_most_common(*, limit: int = 100, cache_seconds: int = 60) -> list[tuple[str, int]]:
    """The most used tags with their counts. Counting reads every row, so the answer is cached."""
    key = f"contacts:tags-most-common:{limit}"
    tags = cache.get(key)
    if tags is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tag, count(*) FROM contacts_contact, unnest(tags) AS tag"
                " GROUP BY tag ORDER BY count(*) DESC, tag LIMIT %s",
                [limit],
            )
            tags = [(tag, count) for tag, count in cursor.fetchall()]
        cache.set(key, tags, cache_seconds)
    return tags


def contact_attribute_keys(*, sample: int = 5000, limit: int = 200, cache_seconds: int = 60) -> list[str]:
    """The attribute keys found among the latest `sample` contacts (a bounded read, cached): the
    names a form offers as {{attributes.KEY}} and as audience filters. Keys, never values."""
    key = f"contacts:attribute-keys:{sample}:{limit}"
    keys = cache.get(key)
    if keys is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT k FROM"
                " (SELECT attributes FROM contacts_contact ORDER BY id DESC LIMIT %s) s,"
                " jsonb_object_keys(CASE jsonb_typeof(s.attributes) WHEN 'object' THEN s.attributes"
                " ELSE '{}'::jsonb END) AS k ORDER BY k LIMIT %s",
                [sample, limit],
            )
            keys = [name for (name,) in cursor.fetchall()]
        cache.set(key, keys, cache_seconds)
    return keys
