"""Pages of big tables: counts exact up to a bound, estimated past it (the API and the admin).

An exact count reads every matching row; at a million contacts a common name or tag matches
hundreds of thousands and its count alone takes longer than the page. So a count stops at
EXACT_COUNT_MAX + 1 rows (a LIMIT-ed subquery); past it the paginator says the count is
estimated (`count_exact`) and gives the planner's estimate of the rows, never fewer than the bound.
Whether there is a next page is then known by reading one row more than the page, not from the
estimate, so a client following `next` links sees every row.

The estimate is asked first: when it is far past the bound (COUNT_SKIPPED_FROM), the capped count
is not run at all. It would only confirm what the estimate says, and it may be slow: the planner
expects the matches spread evenly, so a scan it thinks stops early reads most of the table when
they all sit at its other end.
"""

import json
from functools import cached_property

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections

EXACT_COUNT_MAX = 1000
COUNT_SKIPPED_FROM = 10 * EXACT_COUNT_MAX


class EstimatedPage(Page):
    """A page of an estimated count: there is a next page when a row follows this one."""

    def __init__(self, object_list, number, paginator, *, more: bool):
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more


class EstimatedCountPaginator(Paginator):
    """Django's paginator over a queryset, counting exactly up to EXACT_COUNT_MAX only."""

    exact_count_max = EXACT_COUNT_MAX
    count_skipped_from = COUNT_SKIPPED_FROM

    @cached_property
    def counted(self) -> int:
        """The matching rows, counted up to one past the bound; not counted when the planner
        expects far more (one past the bound is then assumed)."""
        if self.rows_estimated > self.count_skipped_from:
            return self.exact_count_max + 1
        return self.object_list.order_by()[: self.exact_count_max + 1].count()

    @property
    def count_exact(self) -> bool:
        return self.counted <= self.exact_count_max

    @cached_property
    def count(self) -> int:
        return self.counted if self.count_exact else max(self.counted, self.rows_estimated)

    @cached_property
    def rows_estimated(self) -> int:
        """The planner's estimate of the queryset's rows (EXPLAIN, nothing read)."""
        queryset = self.object_list.order_by()
        sql, params = queryset.query.sql_with_params()
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return int(plan[0]["Plan"]["Plan Rows"])

    def validate_number(self, number):
        """Past an estimated count, any page from 1 is valid; one after the last is empty."""
        if self.count_exact:
            return super().validate_number(number)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number) -> Page:
        if self.count_exact:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        return EstimatedPage(rows[: self.per_page], number, self, more=len(rows) > self.per_page)
