"""The messages API: each view parses its input, calls one service or selector and answers."""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from contacts.models import AuditLog
from messaging.media import media_presigned_url
from messaging.models import Message
from messaging.selectors import message_get, message_list, message_media_error, message_quoted
from messaging.services import message_delete

SOURCE = AuditLog.Source.API


class MessageErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(source="error_code")
    title = serializers.CharField(source="error_title")
    details = serializers.CharField(source="error_details")

    class Meta:
        ref_name = "MessageError"


# Shared by the list and the detail, so one schema component rather than a nested copy per view.
class MessageOutputSerializer(serializers.ModelSerializer):
    contact_phone = serializers.CharField(source="contact.phone", read_only=True, allow_null=True)
    phone_number_id = serializers.CharField(
        source="phone_number.phone_number_id", read_only=True, allow_null=True, default=None
    )
    media_error = serializers.SerializerMethodField(help_text='"media unavailable: <reason>", or null.')
    error = serializers.SerializerMethodField(help_text="Meta's error for a failed message, or null.")

    class Meta:
        model = Message
        ref_name = "Message"
        fields = (
            "id",
            "wamid",
            "direction",
            "type",
            "status",
            "contact",
            "contact_phone",
            "phone_number_id",
            "text",
            "timestamp",
            "context_wamid",
            "target_wamid",
            "reaction",
            "edited_at",
            "revoked_at",
            "media_id",
            "media_mime_type",
            "media_size",
            "media_sha256",
            "media_filename",
            "media_state",
            "media_error",
            "error",
            "sent_at",
            "delivered_at",
            "read_at",
            "played_at",
            "failed_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_media_error(self, message: Message) -> str | None:
        return message_media_error(message=message) or None

    @extend_schema_field(MessageErrorSerializer(allow_null=True))
    def get_error(self, message: Message) -> dict | None:
        if message.error_code is None and not message.error_title:
            return None
        return MessageErrorSerializer(message).data


class MessageFilterSerializer(serializers.Serializer):
    contact = serializers.IntegerField(source="contact_id", required=False, min_value=1)
    direction = serializers.ChoiceField(choices=Message.Direction.choices, required=False)
    status = serializers.ChoiceField(choices=Message.Status.choices, required=False)
    type = serializers.CharField(required=False, max_length=32, help_text='Meta\'s type: "text", "image" …')
    since = serializers.DateTimeField(required=False, help_text="Sent at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Sent before (ISO 8601).")

    class Meta:
        ref_name = "MessageFilter"

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "Must be after since."})
        return attrs


def _message(id: int) -> Message:
    message = message_get(id=id)
    if message is None:
        raise exceptions.NotFound()
    return message


@extend_schema(tags=["messages"])
class MessageListApi(APIView):
    queryset = Message.objects.all()
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        parameters=[MessageFilterSerializer],
        responses=MessageOutputSerializer(many=True),
        description="Messages, newest first.",
    )
    def get(self, request):
        filters = MessageFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(message_list(**filters.validated_data), request, view=self)
        return paginator.get_paginated_response(MessageOutputSerializer(page, many=True).data)


@extend_schema(tags=["messages"])
class MessageDetailApi(APIView):
    queryset = Message.objects.all()

    class OutputSerializer(MessageOutputSerializer):
        class ContextSerializer(serializers.Serializer):
            wamid = serializers.CharField()
            id = serializers.IntegerField(
                allow_null=True, help_text="null when Wharf lacks the quoted message."
            )
            text = serializers.CharField(help_text="The quoted message's text, when Wharf has it.")

            class Meta:
                ref_name = "MessageReplyContext"

        media_url = serializers.SerializerMethodField(
            help_text="A presigned URL to the stored media, valid for a few minutes; null when none."
        )
        context = serializers.SerializerMethodField(help_text="The message this one replies to, or null.")
        payload = serializers.JSONField(read_only=True, help_text="The message as Meta sent it.")

        class Meta(MessageOutputSerializer.Meta):
            ref_name = "MessageDetail"
            fields = (*MessageOutputSerializer.Meta.fields, "media_url", "context", "payload")
            read_only_fields = fields

        @extend_schema_field(serializers.URLField(allow_null=True))
        def get_media_url(self, message: Message) -> str | None:
            return media_presigned_url(message=message)

        @extend_schema_field(ContextSerializer(allow_null=True))
        def get_context(self, message: Message) -> dict | None:
            if not message.context_wamid:
                return None
            quoted = message_quoted(message=message)
            return {
                "wamid": message.context_wamid,
                "id": quoted.id if quoted else None,
                "text": quoted.text if quoted else "",
            }

    @extend_schema(responses=OutputSerializer)
    def get(self, request, id: int):
        return Response(self.OutputSerializer(_message(id)).data)

    @extend_schema(responses={204: None}, description="Deletes the message and its stored media.")
    def delete(self, request, id: int):
        message_delete(message=_message(id), actor=request.user, source=SOURCE)
        return Response(status=status.HTTP_204_NO_CONTENT)
