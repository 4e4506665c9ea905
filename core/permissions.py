"""The users' permissions, read in one query per request.

Django's ModelBackend reads a user's permissions in two queries, their own and their groups', the
first time a request asks; every admin page and every live poll asks. PermissionsBackend reads the
same set (ModelBackend's rule: none for an inactive user, every one for a superuser, else the
user's own and their groups') in one, and caches it where ModelBackend does (`_perm_cache` on the
user, which lives as long as the request), so ModelBackend, after it, answers from that cache too.
It authenticates nobody: ModelBackend does, so sessions go on naming ModelBackend.
"""

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.db.models import Q


class PermissionsBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        return None

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                permissions = Permission.objects.all()
            else:
                own = user_obj.user_permissions.through.objects.filter(user=user_obj)
                from_groups = Group.permissions.through.objects.filter(group__user=user_obj)
                permissions = Permission.objects.filter(
                    Q(pk__in=own.values("permission")) | Q(pk__in=from_groups.values("permission"))
                )
            user_obj._perm_cache = {
                f"{app_label}.{codename}"
                for app_label, codename in permissions.values_list(
                    "content_type__app_label", "codename"
                ).order_by()
            }
        return user_obj._perm_cache
