"""What every API view shares: permissions, pagination, the JSON parser and the error answers the
schema documents for every operation (errors themselves: core/api_errors.py)."""

from typing import Any

from django.db import connection, models
from rest_framework import exceptions, pagination, parsers, permissions
from rest_framework.response import Response

from core.json_input import JSON_MAX_DEPTH, NESTED_TOO_DEEP, json_problem
from core.paging import EXACT_COUNT_MAX, EstimatedCountPaginator


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django's model permissions per action, reads included (DRF lets any user read by default)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class ChangePermissions(ModelPermissions):
    """For actions posted to one object (opt-out, assign): they change it, they add nothing."""

    perms_map = {**ModelPermissions.perms_map, "POST": ["%(app_label)s.change_%(model_name)s"]}


def column_max(field: models.Field) -> int:
    """The largest integer the field's column holds (a foreign key's: its target's), as an input
    field's max_value: a larger one is refused with 400 rather than failing in the database."""
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    return connection.ops.integer_field_range(target.get_internal_type())[1]


class Pagination(pagination.PageNumberPagination):
    """DRF's page numbers; a page_size that is not a whole number from 1 up is refused, not ignored
    (a larger one than max_page_size is taken as max_page_size)."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        given = request.query_params.get(self.page_size_query_param, "")
        if given and not (given.isascii() and given.isdigit() and int(given) > 0):
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return super().get_page_size(request)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters


class EstimatedCountPagination(Pagination):
    """Pagination of a big table (core/paging.py): `count` is exact up to EXACT_COUNT_MAX, past it
    an estimate, which `count_exact` says; `next` is there whenever a row follows the page."""

    django_paginator_class = EstimatedCountPaginator

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.page.paginator.count,
                "count_exact": self.page.paginator.count_exact,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        properties = response["properties"]
        properties["count"]["description"] = (
            f"The number of results: exact up to {EXACT_COUNT_MAX}, past it an estimate (see count_exact)."
        )
        properties["count_exact"] = {
            "type": "boolean",
            "example": True,
            "description": f"False when more than {EXACT_COUNT_MAX} results matched and count is "
            "the database's estimate; follow `next` to read them all.",
        }
        response["properties"] = {
            name: properties[name] for name in ("count", "count_exact", "next", "previous", "results")
        }
        response["required"] = ["count", "count_exact", "results"]
        return response


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering 400 for a body no field could store (core/json_input.py),
    named by its path: nested deeper than JSON_MAX_DEPTH (deep enough bodies exhaust Python's
    decoder first), a NUL character, a lone surrogate or an infinite number anywhere."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(f"JSON parse error - {NESTED_TOO_DEEP}") from None
        problem = json_problem(data)
        if problem is not None:
            path, message = problem
            if message == NESTED_TOO_DEEP:
                raise exceptions.ParseError(f"JSON parse error - {path or 'the body'}: {message}")
            raise exceptions.ValidationError({path or "non_field_errors": [message]})
        return data


# -- the error answers, as the schema documents them ----------------------------------------------

ERROR_SCHEMAS = {
    "Error": {
        "type": "object",
        "description": "DRF's error answer: what went wrong, in words.",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    "ValidationError": {
        "type": "object",
        "description": "The refused fields, each with its messages (a nested object for a nested "
        'field, "non_field_errors" for the request as a whole), or "detail" for a body that is '
        f"not JSON or is nested more than {JSON_MAX_DEPTH} levels deep.",
        "additionalProperties": {},
    },
}
ERROR_ANSWERS = {
    "400": ("ValidationError", "Refused input, by field."),
    "401": ("Error", "No credentials, or wrong ones."),
    "403": ("Error", "The user lacks the permission."),
    "404": ("Error", "No such object (or one the user does not see), no such page or no such format."),
    "415": ("Error", "A body of a content type the operation does not take."),
    "429": ("Error", "Too many requests: try again after the Retry-After header's seconds."),
}


def _error_answers(operation: dict, *, path: str) -> list[str]:
    """The answers any operation can give; 400 where it takes input (an operation that refuses
    for another reason, such as the object's state, documents its 400 itself), 415 where it takes
    a body, 404 where the path names an object or the query a page or a format."""
    query = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "query"}
    answers = ["401", "403", "429"]
    if "requestBody" in operation or query:
        answers.append("400")
    if "requestBody" in operation:
        answers.append("415")
    if "{" in path or query & {"page", "format"}:
        answers.append("404")
    return answers


def error_responses_add(result: dict, **kwargs: Any) -> dict:
    """drf-spectacular's postprocessing hook: every operation documents the error answers it can give,
    and an error answer an operation documents without a body gets the body of its kind (those it
    documents with one stay as they are)."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.update({name: schema for name, schema in ERROR_SCHEMAS.items() if name not in components})
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            documented = set(responses) & set(ERROR_ANSWERS)
            for code in sorted({*_error_answers(operation, path=path), *documented}):
                component, description = ERROR_ANSWERS[code]
                answer = responses.setdefault(code, {"description": description})
                answer.setdefault("description", description)
                if "content" not in answer:
                    schema = {"$ref": f"#/components/schemas/{component}"}
                    answer["content"] = {"application/json": {"schema": schema}}
    return result
