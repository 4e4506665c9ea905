"""Hostile cells in a contacts CSV uploaded through the API: NUL characters, attributes nested
deeper than anything can walk, JSON escapes PostgreSQL cannot store. Each such row is reported by
its line and skipped, the good rows are imported, and the answer is never a 5xx."""

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Contact

IMPORT = "/api/v1/contacts/import/"


def upload(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("contacts.csv", text.encode(), content_type="text/csv")


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows([["phone", "name", "attributes", "plan"], *rows])
    return out.getvalue()


@pytest.fixture
def importer(api_client):
    return api_client("contacts.add_contact", "contacts.change_contact")


def imported(importer, text: str) -> dict:
    answer = importer.post(IMPORT, {"file": upload(text)}, format="multipart")
    assert answer.status_code == 200, answer.content
    return answer.json()


def deep(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


HOSTILE_ROWS = {
    "nul-name": (["Ana\x00", "", ""], "cell 2: must not contain NUL characters"),
    "nul-extra-column": (["Ana", "", "gold\x00"], "cell 4: must not contain NUL characters"),
    "950-deep": (["Ana", deep(950), ""], "nested more than 64 levels deep"),
    "5000-deep": (["Ana", deep(5000), ""], "nested more than 64 levels deep"),
    "100-deep": (["Ana", deep(100), ""], "nested more than 64 levels deep"),
    "nul-escape": (["Ana", '{"a": "\\u0000"}', ""], "attributes.a: must not contain NUL characters"),
    "surrogate-key": (["Ana", '{"\\ud800": 1}', ""], "attributes.\ufffd: this key: must not contain lone"),
    "infinite": (["Ana", '{"a": 1e400}', ""], "attributes.a: must be a finite number"),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("cells", "reason"), HOSTILE_ROWS.values(), ids=HOSTILE_ROWS.keys())
def test_a_hostile_cell_is_reported_by_its_line_and_the_good_rows_are_imported(importer, cells, reason):
    rows = [["+447400100002", "Bea", "", ""], ["+447400100001", *cells], ["+447400100003", "Cy", "", ""]]
    result = imported(importer, csv_text(rows))
    assert (result["created"], result["total_rows"]) == (2, 3)
    (error,) = result["errors"]
    assert error["line"] == 3
    assert reason in error["reason"], error["reason"]
    assert set(Contact.objects.values_list("name", flat=True)) == {"Bea", "Cy"}


cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\x00", "a\x00b", "'=1+1", "\t", "\r", '"', ",", "+447400100009", "²"]),
    st.integers(min_value=1, max_value=3000).map(deep),
    st.integers(min_value=1, max_value=3000).map(lambda depth: "[" * depth + "]" * depth),
    st.sampled_from(['{"a": "\\u0000"}', '{"\\udfff": 1}', '{"a": 1e999}', '{"a": ' + str(10**400) + "}"]),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3).map(json.dumps),
)


@pytest.mark.django_db
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(cells, cells, cells), min_size=1, max_size=4))
def test_any_hostile_cells_are_imported_or_reported_by_line_never_a_5xx(importer, rows):
    lines = [
        [f"+4474001{index:05d}", name, attributes, plan]
        for index, (name, attributes, plan) in enumerate(rows)
    ]
    answer = importer.post(IMPORT, {"file": upload(csv_text(lines))}, format="multipart")
    assert answer.status_code in (200, 400), answer.content
    if answer.status_code == 200:
        result = answer.json()
        assert all(error["line"] >= 2 and error["reason"] for error in result["errors"])
        assert (
            result["created"] + result["updated"] + result["unchanged"] + len(result["errors"])
            == result["total_rows"]
        )
    else:
        assert "file" in answer.json()  # a file no row of which can be trusted: "Line N: ..."
