"""What the operators' console (the Django admin) shares across apps."""

from django.contrib import admin
from django.db import models


def set_or_unset_filter(
    *, title: str, parameter_name: str, field: str, yes: str, no: str, yes_when_set: bool = True
) -> type[admin.SimpleListFilter]:
    """A two-choice list filter on whether a nullable `field` is set (opted out, paused, acknowledged)."""

    class SetOrUnsetFilter(admin.SimpleListFilter):
        def lookups(self, request, model_admin):
            return [("yes", yes), ("no", no)]

        def queryset(self, request, queryset):
            if self.value() not in ("yes", "no"):
                return queryset
            is_set = (self.value() == "yes") == yes_when_set
            return queryset.filter(**{f"{field}__isnull": not is_set})

    SetOrUnsetFilter.title = title
    SetOrUnsetFilter.parameter_name = parameter_name
    return SetOrUnsetFilter


def admin_object_take(obj: models.Model, saved: models.Model) -> None:
    """After a service saved the row, make the admin's `obj` that row: the admin goes on with `obj`
    (its messages, history and redirect)."""
    for field in type(saved)._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False


class ReadOnlyAdmin(admin.ModelAdmin):
    """A page to look at rows that only services write (audit, events, recipients, batches)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
