"""The contacts API: each view parses its input, calls one service or selector and answers."""

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, renderers, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from contacts.models import Channel, Contact
from contacts.selectors import ContactPaginator, contact_get, contact_list
from contacts.services.contact import (
    contact_channel_opt_in,
    contact_channel_opt_out,
    contact_create,
    contact_delete,
    contact_update,
)
from contacts.services.csv_io import contacts_export_csv_stream, contacts_import_csv
from core.api import ChangePermissions, EstimatedCountPagination, ModelPermissions
from core.models import AuditLog
from core.uploads import upload_length_check, upload_size_check

SOURCE = AuditLog.Source.API


class ImportPermissions(ModelPermissions):
    """An import both adds contacts and changes those it finds."""

    perms_map = {
        **ModelPermissions.perms_map,
        "POST": ["%(app_label)s.add_%(model_name)s", "%(app_label)s.change_%(model_name)s"],
    }


class CSVRenderer(renderers.JSONRenderer):
    """Lets a client ask for text/csv; the CSV itself is streamed, errors are still JSON."""

    media_type = "text/csv"
    format = "csv"


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A file the schema describes as an upload rather than as a URL."""


# Shared by several views, so one schema component each rather than a nested copy per view.
class ContactOutputSerializer(serializers.ModelSerializer):
    is_opted_out = serializers.BooleanField(read_only=True)
    attributes = serializers.DictField(read_only=True)

    class Meta:
        model = Contact
        ref_name = "Contact"
        fields = (
            "id",
            "phone",
            "wa_id",
            "name",
            "email",
            "tags",
            "language",
            "attributes",
            "opted_in_at",
            "opt_in_source",
            "opted_out_at",
            "opt_out_source",
            "is_opted_out",
            "email_opted_out_at",
            "email_opt_out_source",
            "sms_opted_out_at",
            "sms_opt_out_source",
            "last_inbound_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


# Shapes only: the services normalise and validate the values (phone to E.164 and so on).
class ContactInputSerializer(serializers.Serializer):
    phone = serializers.CharField(max_length=64, help_text="International format, e.g. +14155550123.")
    wa_id = serializers.CharField(max_length=64, allow_blank=True, default="")
    name = serializers.CharField(max_length=400, allow_blank=True, default="")
    email = serializers.CharField(max_length=400, allow_blank=True, default="")
    tags = serializers.ListField(child=serializers.CharField(max_length=200), default=list)
    language = serializers.CharField(max_length=32, allow_blank=True, default="", help_text='"en", "pt_BR"')
    attributes = serializers.DictField(default=dict)

    class Meta:
        ref_name = "ContactInput"


class ContactFilterSerializer(serializers.Serializer):
    q = serializers.CharField(
        source="search", required=False, allow_blank=True, help_text="Name, email or phone digits."
    )
    tag = serializers.CharField(required=False, allow_blank=True)
    opted_out = serializers.BooleanField(required=False, help_text="Left out: opted out or not.")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)

    class Meta:
        ref_name = "ContactFilter"


def csv_download(contacts: QuerySet[Contact]) -> StreamingHttpResponse:
    """The contacts as a streamed CSV attachment (the admin's export action answers with it too)."""
    response = StreamingHttpResponse(
        contacts_export_csv_stream(queryset=contacts), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="contacts-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    return response


class ContactPagination(EstimatedCountPagination):
    django_paginator_class = ContactPaginator


def _filtered_contacts(request) -> QuerySet[Contact]:
    filters = ContactFilterSerializer(data=request.query_params.dict())
    filters.is_valid(raise_exception=True)
    return contact_list(**filters.validated_data)


def _contact(id: int) -> Contact:
    contact = contact_get(id=id)
    if contact is None:
        raise exceptions.NotFound()
    return contact


@extend_schema(tags=["contacts"])
class ContactListCreateApi(APIView):
    queryset = Contact.objects.all()
    pagination_class = ContactPagination

    @extend_schema(parameters=[ContactFilterSerializer], responses=ContactOutputSerializer(many=True))
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(_filtered_contacts(request), request, view=self)
        return paginator.get_paginated_response(ContactOutputSerializer(page, many=True).data)

    @extend_schema(request=ContactInputSerializer, responses={201: ContactOutputSerializer})
    def post(self, request):
        serializer = ContactInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contact = contact_create(**serializer.validated_data, actor=request.user, source=SOURCE)
        return Response(ContactOutputSerializer(contact).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["contacts"])
class ContactDetailApi(APIView):
    queryset = Contact.objects.all()

    @extend_schema(responses=ContactOutputSerializer)
    def get(self, request, id: int):
        return Response(ContactOutputSerializer(_contact(id)).data)

    @extend_schema(
        request=ContactInputSerializer,
        responses=ContactOutputSerializer,
        description="Replaces the contact's fields; those left out are emptied.",
    )
    def put(self, request, id: int):
        return self._update(request, id, partial=False)

    @extend_schema(request=ContactInputSerializer, responses=ContactOutputSerializer)
    def patch(self, request, id: int):
        return self._update(request, id, partial=True)

    @extend_schema(responses={204: None})
    def delete(self, request, id: int):
        contact_delete(contact=_contact(id), actor=request.user, source=SOURCE)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request, id: int, *, partial: bool) -> Response:
        contact = _contact(id)
        serializer = ContactInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        contact = contact_update(
            contact=contact, actor=request.user, source=SOURCE, **serializer.validated_data
        )
        return Response(ContactOutputSerializer(contact).data)


@extend_schema(tags=["contacts"])
class ContactOptOutApi(APIView):
    queryset = Contact.objects.all()
    permission_classes = [ChangePermissions]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            allow_blank=True, default="", help_text="Kept as the channel's opt-out source."
        )
        channel = serializers.ChoiceField(
            choices=Channel.choices, default=Channel.WHATSAPP, help_text="The channel opted out of."
        )

        class Meta:
            ref_name = "ContactOptOutInput"

    @extend_schema(request=InputSerializer, responses=ContactOutputSerializer)
    def post(self, request, id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contact = contact_channel_opt_out(
            contact=_contact(id),
            channel=serializer.validated_data["channel"],
            reason=serializer.validated_data["reason"],
            actor=request.user,
            source=SOURCE,
        )
        return Response(ContactOutputSerializer(contact).data)


@extend_schema(tags=["contacts"])
class ContactOptInApi(APIView):
    queryset = Contact.objects.all()
    permission_classes = [ChangePermissions]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(allow_blank=True, default="", help_text="Kept as opt_in_source.")
        channel = serializers.ChoiceField(
            choices=Channel.choices, default=Channel.WHATSAPP, help_text="The channel opted back into."
        )

        class Meta:
            ref_name = "ContactOptInInput"

    @extend_schema(
        request=InputSerializer,
        responses=ContactOutputSerializer,
        description="WhatsApp: records the contact's consent and lifts its opt-out. Email or SMS: lifts "
        "that channel's opt-out.",
    )
    def post(self, request, id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contact = contact_channel_opt_in(
            contact=_contact(id),
            channel=serializer.validated_data["channel"],
            reason=serializer.validated_data["reason"],
            actor=request.user,
            source=SOURCE,
        )
        return Response(ContactOutputSerializer(contact).data)


_CELL = serializers.CharField(allow_blank=True, trim_whitespace=False)


@extend_schema(tags=["contacts"])
class ContactImportApi(APIView):
    queryset = Contact.objects.all()
    permission_classes = [ImportPermissions]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = UploadField(help_text="UTF-8 CSV with a header line that has a phone column.")

        def validate_file(self, file):
            upload_size_check(file, limit=settings.CSV_UPLOAD_MAX_BYTES)
            return file

        class Meta:
            ref_name = "ContactImportInput"

    class OutputSerializer(serializers.Serializer):
        class RowErrorSerializer(serializers.Serializer):
            line = serializers.IntegerField()
            reason = serializers.CharField()
            cells = serializers.ListField(
                child=serializers.CharField(allow_blank=True, trim_whitespace=False),
                help_text="The row as the file has it.",
            )

            class Meta:
                ref_name = "ContactImportRowError"

        created = serializers.IntegerField()
        updated = serializers.IntegerField()
        unchanged = serializers.IntegerField()
        total_rows = serializers.IntegerField()
        header = serializers.ListField(
            child=serializers.CharField(allow_blank=True, trim_whitespace=False),
            help_text="The file's header line.",
        )
        errors = RowErrorSerializer(many=True)

        class Meta:
            ref_name = "ContactImportResult"

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses=OutputSerializer,
        description="Imports the good rows and reports the others by line. Idempotent on phone.",
    )
    def post(self, request):
        upload_length_check(request, field="file", limit=settings.CSV_UPLOAD_MAX_BYTES)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = contacts_import_csv(
            file=serializer.validated_data["file"], actor=request.user, source=SOURCE
        )
        return Response(self.OutputSerializer(result).data)


@extend_schema(tags=["contacts"])
class ContactExportApi(APIView):
    queryset = Contact.objects.all()
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[ContactFilterSerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV the import reads.")
        },
    )
    def get(self, request):
        return csv_download(_filtered_contacts(request))

    def finalize_response(self, request, response, *args, **kwargs):
        """An error is JSON whatever the client asked for (the CSV is the answer's only CSV)."""
        if response.status_code >= 400:
            request.accepted_renderer, request.accepted_media_type = (
                renderers.JSONRenderer(),
                "application/json",
            )
        return super().finalize_response(request, response, *args, **kwargs)
