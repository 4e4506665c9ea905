"""What every API view shares: permissions and pagination (errors: core/api_errors.py)."""

from rest_framework import pagination, permissions


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


class Pagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500
