"""The calls API: WhatsApp calls as the `calls` webhooks recorded them, read-only.

Reading needs `messaging.view_call`, and shows only the calls of the sender numbers the caller
sees (`messaging.conversations.conversations_visible_q`); any other is a 404. The contact's name,
phone and WhatsApp id are shown only to users who may view contacts (`contacts.view_contact`).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from contacts.access import contact_data_visible
from messaging.apis.conversations import (
    ID_MAX,
    ApiErrorSerializer,
    ConversationContactSerializer,
    ConversationNumberSerializer,
)
from messaging.calls import call_get, call_list
from messaging.models import Call

_ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description='Bad input: {"<field>": ["why"]}.'),
    401: OpenApiResponse(ApiErrorSerializer, description="No or a bad token."),
    403: OpenApiResponse(ApiErrorSerializer, description="The user lacks the permission."),
    404: OpenApiResponse(ApiErrorSerializer, description="No such call."),
}


def _errors(*codes: int) -> dict:
    return {code: _ERRORS[code] for code in codes}


def _context(request) -> dict:
    return {"contacts_visible": contact_data_visible(request.user)}


class CallOutputSerializer(serializers.ModelSerializer):
    class ErrorSerializer(serializers.Serializer):
        code = serializers.IntegerField(source="error_code", allow_null=True)
        title = serializers.CharField(source="error_title")
        details = serializers.CharField(source="error_details")

        class Meta:
            ref_name = "CallError"

    contact = serializers.SerializerMethodField(
        help_text="The contact; only its id without the contacts.view_contact permission."
    )
    phone_number = ConversationNumberSerializer(
        read_only=True, allow_null=True, help_text="The sender number; null when Wharf does not know it."
    )
    missed = serializers.BooleanField(read_only=True, help_text="An inbound call that ended unanswered.")
    status = serializers.ChoiceField(
        choices=Call.Status.choices,
        read_only=True,
        help_text="ringing, ongoing (connected), completed, missed (inbound, unanswered), unanswered "
        "(outbound), rejected (declined by the user), failed (Meta's FAILED).",
    )
    error = serializers.SerializerMethodField(help_text="Meta's error for the call, or null.")

    class Meta:
        model = Call
        ref_name = "Call"
        fields = (
            "id",
            "call_id",
            "direction",
            "status",
            "missed",
            "contact",
            "phone_number",
            "conversation",
            "from_number",
            "to_number",
            "started_at",
            "connected_at",
            "ended_at",
            "duration_s",
            "error",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(ConversationContactSerializer)
    def get_contact(self, call: Call) -> dict:
        if not self.context.get("contacts_visible"):
            return {"id": call.contact_id}
        contact = call.contact
        return {"id": contact.id, "name": contact.name, "phone": contact.phone, "wa_id": contact.wa_id}

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, call: Call) -> dict | None:
        if call.error_code is None and not call.error_title and not call.error_details:
            return None
        return self.ErrorSerializer(call).data


@extend_schema(tags=["calls"])
class CallListApi(APIView):
    queryset = Call.objects.all()
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class FilterSerializer(serializers.Serializer):
        direction = serializers.ChoiceField(choices=Call.Direction.choices, required=False)
        status = serializers.ChoiceField(choices=Call.Status.choices, required=False)
        missed = serializers.BooleanField(
            required=False, help_text="true: inbound calls that ended unanswered; false: all others."
        )
        phone_number = serializers.IntegerField(
            required=False, min_value=1, max_value=ID_MAX, help_text="A sender number's id."
        )
        contact = serializers.IntegerField(
            required=False, min_value=1, max_value=ID_MAX, help_text="A contact's id."
        )
        since = serializers.DateTimeField(required=False, help_text="Calls started at or after this time.")

        class Meta:
            ref_name = "CallFilter"

    @extend_schema(
        parameters=[FilterSerializer],
        responses={200: CallOutputSerializer(many=True), **_errors(400, 401, 403)},
        description="Calls, the latest first.",
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        calls = call_list(user=request.user, **filters.validated_data)
        page = paginator.paginate_queryset(calls, request, view=self)
        data = CallOutputSerializer(page, many=True, context=_context(request)).data
        return paginator.get_paginated_response(data)


@extend_schema(tags=["calls"])
class CallDetailApi(APIView):
    queryset = Call.objects.all()

    class OutputSerializer(CallOutputSerializer):
        payload = serializers.JSONField(read_only=True, help_text="The latest event, as Meta sent it.")

        class Meta(CallOutputSerializer.Meta):
            ref_name = "CallDetail"
            fields = (*CallOutputSerializer.Meta.fields, "payload")
            read_only_fields = fields

    @extend_schema(responses={200: OutputSerializer, **_errors(401, 403, 404)}, description="One call.")
    def get(self, request, id: int):
        found = call_get(id=id, user=request.user)
        if found is None:
            raise exceptions.NotFound()
        return Response(self.OutputSerializer(found, context=_context(request)).data)
