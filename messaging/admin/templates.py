"""Templates: written here and submitted to Meta ("Add template", "Duplicate into another language"),
deleted at Meta ("Delete", after a confirmation), synced from Meta (every hour and on "Sync now").
A template is never edited in place: Meta reviews each one it is given; its status, rejection reason
and quality come from Meta."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.params import int_param
from messaging.admin.common import SOURCE, pretty_json
from messaging.graph import GraphError
from messaging.models import (
    Template,
)
from messaging.numbers import phone_numbers_waba_ids
from messaging.template_drafts import (
    CATEGORIES,
    HEADER_FORMATS,
    LANGUAGES,
    TemplateDraft,
    template_placeholders,
)
from messaging.templates import (
    DELETED,
    template_create,
    template_delete,
    template_duplicate,
    templates_sync,
)

LANGUAGE_CHOICES = [(code, f"{label} ({code})") for code, label in LANGUAGES.items()]
HEADER_CHOICES = [("", "None"), *((value, value.capitalize()) for value in HEADER_FORMATS)]
EXAMPLE_PREFIX = "body_example_"


class TemplateForm(forms.Form):
    """The fields of a `TemplateDraft`; the body's examples are `body_example_1`, `body_example_2` ...,
    one per variable of the body (the page adds them as the variables are typed)."""

    waba_id = forms.ChoiceField(label="WhatsApp Business Account")
    name = forms.CharField(
        max_length=512, help_text="Lowercase letters, digits and underscores: order_shipped."
    )
    category = forms.ChoiceField(
        choices=[(value, value.capitalize()) for value in CATEGORIES], initial="UTILITY"
    )
    language = forms.ChoiceField(choices=LANGUAGE_CHOICES, initial="en_US")
    header_format = forms.ChoiceField(label="Header", choices=HEADER_CHOICES, required=False)
    header_text = forms.CharField(label="Header text", required=False, max_length=200)
    header_example = forms.CharField(
        label="Header example",
        required=False,
        max_length=2000,
        help_text="The example of the header's {{1}}, or the handle of a sample image, video or document.",
    )
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        max_length=4000,
        help_text="Variables are {{1}}, {{2}} … in order; give an example of each below.",
    )
    footer = forms.CharField(required=False, max_length=200)
    quick_replies = forms.CharField(
        label="Quick reply buttons",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 30}),
        help_text="One per line.",
    )
    url_text = forms.CharField(label="Link button text", required=False, max_length=100)
    url = forms.CharField(label="Link button address", required=False, max_length=2000)
    url_example = forms.CharField(label="Link example", required=False, max_length=2000)
    phone_text = forms.CharField(label="Call button text", required=False, max_length=100)
    phone_number = forms.CharField(label="Call button number", required=False, max_length=32)

    def __init__(self, *args, waba_ids: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["waba_id"].choices = [(waba_id, waba_id) for waba_id in waba_ids]
        self.example_errors: dict[str, str] = {}

    def body_examples(self) -> list[tuple[str, str]]:
        """(number, value) for each variable of the posted (or initial) body."""
        source = self.data if self.is_bound else self.initial
        body = str(source.get("body") or "")
        given = self.initial.get("body_examples", ()) if not self.is_bound else ()
        examples = []
        for number in template_placeholders(body):
            if self.is_bound:
                value = str(self.data.get(f"{EXAMPLE_PREFIX}{number}", ""))
            else:
                index = int(number) - 1 if number.isdigit() else len(given)
                value = given[index] if index < len(given) else ""
            examples.append((number, value))
        return examples

    def example_fields(self) -> list[dict]:
        return [
            {
                "number": number,
                "value": value,
                "error": self.example_errors.get(f"{EXAMPLE_PREFIX}{number}", ""),
            }
            for number, value in self.body_examples()
        ]

    def draft(self) -> TemplateDraft:
        data = self.cleaned_data
        examples = dict(self.body_examples())
        count = max((int(number) for number in examples if number.isdigit()), default=0)
        return TemplateDraft(
            name=data["name"].strip(),
            category=data["category"],
            language=data["language"],
            header_format=data["header_format"],
            header_text=data["header_text"] if data["header_format"] == "TEXT" else "",
            header_example=data["header_example"].strip() if data["header_format"] else "",
            body=data["body"].strip(),
            body_examples=tuple(examples.get(str(number), "").strip() for number in range(1, count + 1)),
            footer=data["footer"].strip(),
            quick_replies=tuple(line.strip() for line in data["quick_replies"].splitlines() if line.strip()),
            url_text=data["url_text"].strip(),
            url=data["url"].strip(),
            url_example=data["url_example"].strip(),
            phone_text=data["phone_text"].strip(),
            phone_number=data["phone_number"].strip().replace(" ", ""),
        )

    def errors_take(self, error: ValidationError) -> None:
        """A service's errors on their fields; an example's beside its input."""
        for field, messages_ in error.message_dict.items():
            if field.startswith(EXAMPLE_PREFIX):
                self.example_errors[field] = " ".join(messages_)
                self.add_error(None, f"{{{{{field.removeprefix(EXAMPLE_PREFIX)}}}}}: {' '.join(messages_)}")
            else:
                self.add_error(field if field in self.fields else None, messages_)


def _draft_initial(draft: TemplateDraft) -> dict:
    initial = {
        name: getattr(draft, name)
        for name in (
            "name",
            "category",
            "language",
            "header_format",
            "header_text",
            "header_example",
            "body",
            "footer",
            "url_text",
            "url",
            "url_example",
            "phone_text",
            "phone_number",
        )
    }
    return initial | {"quick_replies": "\n".join(draft.quick_replies), "body_examples": draft.body_examples}


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    """Meta holds the templates: they are created and deleted there through the services, read and
    synced here, never edited in place."""

    change_list_template = "admin/messaging/template/change_list.html"
    change_form_template = "admin/messaging/template/change_form.html"
    list_display = ("name", "language", "status", "category", "quality_score", "waba_id", "synced_at")
    list_filter = ("status", "category", "quality_score", "waba_id")
    search_fields = ("name", "=meta_id")
    actions = ("sync_now",)
    fields = (
        "name",
        "language",
        "status",
        "rejected_reason",
        "category",
        "quality_score",
        "waba_id",
        "meta_id",
        "synced_at",
        "updated_at",
        "components_pretty",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("messaging.add_template")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("messaging.delete_template")

    def has_sync_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_template")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each at Meta, each confirmed
        return actions

    @admin.display(description="components")
    def components_pretty(self, template: Template) -> str:
        return pretty_json(template.components)

    @admin.action(description="Sync the selected templates' WABAs from Meta now", permissions=["sync"])
    def sync_now(self, request, queryset):
        self._sync(request, sorted(set(queryset.values_list("waba_id", flat=True))))

    def _sync(self, request: HttpRequest, waba_ids: list[str]) -> None:
        if not waba_ids:
            self.message_user(request, "No sender number names a WABA to sync.", messages.WARNING)
        for waba_id in waba_ids:
            try:
                count = templates_sync(waba_id=waba_id)
            except GraphError as error:
                self.message_user(request, f"WABA {waba_id}: {error.reason}", messages.ERROR)
            else:
                text = f"WABA {waba_id}: {count} template(s) from Meta."
                self.message_user(request, text, messages.SUCCESS)

    def get_urls(self):
        sync_path = path("sync/", self.admin_site.admin_view(self.sync_view), name="messaging_template_sync")
        return [sync_path, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_sync": self.has_sync_permission(request)}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        template = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "template_row": template,
            "can_duplicate": self.has_add_permission(request),
            "can_delete_template": self.has_delete_permission(request)
            and template
            and template.status != DELETED,
            "languages": LANGUAGE_CHOICES,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        """The list's "Sync now" button: every WABA of the sender numbers."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_sync_permission(request):
            raise PermissionDenied
        self._sync(request, phone_numbers_waba_ids())
        return HttpResponseRedirect(reverse("admin:messaging_template_changelist"))

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        """The template form; `?duplicate=<id>&language=<code>` starts from that template's text."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        known = Template.objects.values_list("waba_id", flat=True)
        waba_ids = sorted(set(phone_numbers_waba_ids()) | set(known))
        initial: dict = {"waba_id": waba_ids[0]} if len(waba_ids) == 1 else {}
        source = None
        if (duplicate := int_param(request.GET.get("duplicate"))) is not None:
            source = Template.objects.filter(pk=duplicate).first()
            if source is None:
                raise Http404("No such template.")
            language = request.GET.get("language", "")
            draft = template_duplicate(template=source, language=language)
            initial = _draft_initial(draft) | {"waba_id": source.waba_id}
        if request.method == "POST":
            form = TemplateForm(request.POST, waba_ids=waba_ids)
            if form.is_valid():
                try:
                    template = template_create(
                        waba_id=form.cleaned_data["waba_id"],
                        draft=form.draft(),
                        actor=request.user,
                        source=SOURCE,
                    )
                except ValidationError as error:
                    form.errors_take(error)
                except GraphError as error:
                    form.add_error(None, f"Meta could not be reached, nothing was created: {error.reason}")
                else:
                    text = f"Sent to Meta: {template} is {template.status}."
                    if template.status == "PENDING":
                        text = f"Sent to Meta: {template} is PENDING review."
                    self.message_user(request, text, messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:messaging_template_change", args=[template.pk])
                    )
        else:
            form = TemplateForm(initial=initial, waba_ids=waba_ids)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Duplicate {source} into another language" if source else "Add template",
            "opts": self.opts,
            "form": form,
            "source": source,
            "has_view_permission": self.has_view_permission(request),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/messaging/template/add.html", context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None) -> HttpResponse:
        """Asks first; then deletes this language of the template at Meta and marks the row DELETED."""
        template = self.get_object(request, object_id)
        if template is None:
            raise Http404("No such template.")
        if not self.has_delete_permission(request, template):
            raise PermissionDenied
        change_url = reverse("admin:messaging_template_change", args=[template.pk])
        if request.method == "POST":
            try:
                template_delete(template=template, actor=request.user, source=SOURCE)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
            except GraphError as error:
                self.message_user(request, f"Meta could not be reached: {error.reason}", messages.ERROR)
            else:
                self.message_user(request, f"Deleted at Meta: {template}.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Delete {template}?",
            "opts": self.opts,
            "template_row": template,
            "others": Template.objects.filter(waba_id=template.waba_id, name=template.name)
            .exclude(pk=template.pk)
            .exclude(status=DELETED)
            .count(),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/messaging/template/delete_confirmation.html", context)
