"""The messages API: each view parses its input, calls one service or selector and answers.

A message's contact data (the contact's phone, Meta's raw payload, the media the contact sent) is
answered only to users who may read contacts (contacts.access); the others get null in its place.
A send to a number Wharf does not know makes a contact, so it needs contacts.add_contact too.
"""

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from contacts.access import CONTACTS_ADD, contact_create_allowed, contact_data_visible
from contacts.models import Contact
from contacts.services.cleaning import phone_normalise
from contacts.services.contact import contact_create
from core.api import column_max
from core.models import AuditLog
from core.uploads import upload_length_check
from messaging.conversations import phone_numbers_visible_q
from messaging.graph import GraphAuthError, GraphError, GraphPermanentError
from messaging.media import media_access, media_outgoing_upload
from messaging.models import Message, PhoneNumber
from messaging.outbound.content import KINDS
from messaging.outbound.send import message_mark_read, message_send_or_get, phone_number_default
from messaging.selectors import message_get, message_list, message_media_error, message_quoted
from messaging.services import message_delete

SOURCE = AuditLog.Source.API


class MessageErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(source="error_code", allow_null=True, help_text="Meta's code, or null.")
    title = serializers.CharField(source="error_title")
    details = serializers.CharField(source="error_details")

    class Meta:
        ref_name = "MessageError"


# Shared by the list and the detail, so one schema component rather than a nested copy per view.
class MessageOutputSerializer(serializers.ModelSerializer):
    """Needs the request in its context: contact data is answered only to who may read it."""

    contact_phone = serializers.SerializerMethodField(
        help_text="E.164; null without the contacts.view_contact permission."
    )
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
    def get_contact_phone(self, message: Message) -> str | None:
        return message.contact.phone if self.contacts_visible else None

    @property
    def contacts_visible(self) -> bool:
        return contact_data_visible(self.context["request"].user)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_media_error(self, message: Message) -> str | None:
        return message_media_error(message=message) or None

    @extend_schema_field(MessageErrorSerializer(allow_null=True))
    def get_error(self, message: Message) -> dict | None:
        if message.error_code is None and not message.error_title:
            return None
        return MessageErrorSerializer(message).data


class MessageFilterSerializer(serializers.Serializer):
    contact = serializers.IntegerField(
        source="contact_id", required=False, min_value=1, max_value=column_max(Contact._meta.pk)
    )
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


def _message(request, id: int) -> Message:
    """The message, 404 when it does not exist or is of a sender number the user does not see."""
    message = message_get(id=id, user=request.user)
    if message is None:
        raise exceptions.NotFound()
    return message


def _recipient(request, *, contact_id: int | None, to: str) -> Contact:
    """The contact by id, or by number, made when Wharf does not know it yet (if the user may)."""
    if contact_id is not None:
        contact = Contact.objects.filter(pk=contact_id).first()
        if contact is None:
            raise serializers.ValidationError({"contact": "No such contact."})
        return contact
    try:
        phone = phone_normalise(to)
    except DjangoValidationError as error:
        raise serializers.ValidationError({"to": error.message_dict.get("phone", error.messages)}) from None
    digits = phone.lstrip("+")
    contact = Contact.objects.filter(phone=phone).first() or Contact.objects.filter(wa_id=digits).first()
    if contact is not None:
        return contact
    if not contact_create_allowed(request.user):
        raise exceptions.PermissionDenied(
            {"to": f"No contact has this number, and making one needs the {CONTACTS_ADD} permission."}
        )
    return contact_create(phone=phone, actor=request.user, source=SOURCE)


class MessageSendApi(APIView):
    """POST /api/v1/messages/: shares its path with the list, whose view inherits this one."""

    queryset = Message.objects.all()

    class InputSerializer(serializers.Serializer):
        contact = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=column_max(Contact._meta.pk),
            help_text="The contact's id; or `to`.",
        )
        to = serializers.CharField(required=False, max_length=32, help_text="A phone number, E.164.")
        phone_number_id = serializers.CharField(
            required=False, max_length=64, help_text="The sender; default: the number the contact wrote to."
        )
        type = serializers.ChoiceField(choices=KINDS)
        reply_to = serializers.CharField(required=False, max_length=255, help_text="The wamid replied to.")
        text = serializers.JSONField(required=False, help_text='{"body", "preview_url"}')
        template = serializers.JSONField(required=False, help_text='{"name", "language", "components"}')
        image = serializers.JSONField(required=False, help_text='{"s3_key" or "link", "caption"}')
        video = serializers.JSONField(required=False)
        audio = serializers.JSONField(required=False)
        document = serializers.JSONField(
            required=False, help_text='{"s3_key" or "link", "caption", "filename"}'
        )
        sticker = serializers.JSONField(required=False)
        interactive = serializers.JSONField(required=False, help_text="Meta's interactive object.")
        reaction = serializers.JSONField(required=False, help_text='{"message_id", "emoji"}')
        location = serializers.JSONField(required=False)
        contacts = serializers.JSONField(required=False, help_text="Meta's contact cards.")

        class Meta:
            ref_name = "MessageSend"

        def validate(self, attrs):
            if ("contact" in attrs) == ("to" in attrs):
                raise serializers.ValidationError({"contact": "Give either contact or to."})
            if attrs["type"] not in attrs:
                raise serializers.ValidationError({attrs["type"]: "This field is required."})
            return attrs

    @extend_schema(
        tags=["messages"],
        request=InputSerializer,
        responses={201: MessageOutputSerializer, 200: MessageOutputSerializer},
        description="Queue a message. With an Idempotency-Key header, the same key returns the same "
        "message (200) and sends nothing again.",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        phone_number = None
        if values.get("phone_number_id"):
            phone_number = PhoneNumber.objects.filter(
                phone_numbers_visible_q(request.user), phone_number_id=values["phone_number_id"]
            ).first()
            if phone_number is None:
                raise serializers.ValidationError({"phone_number_id": "No such sender number."})
        with transaction.atomic():  # a contact made for a send that is refused is not kept
            message, created = self._send(request, values, phone_number)
        return Response(
            MessageOutputSerializer(message, context={"request": request}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def _send(self, request, values: dict, phone_number: PhoneNumber | None) -> tuple[Message, bool]:
        contact = _recipient(request, contact_id=values.get("contact"), to=values.get("to", ""))
        if phone_number is None:
            phone_number = phone_number_default(contact=contact, user=request.user)
            if phone_number is None:
                raise serializers.ValidationError(
                    {"phone_number_id": "No sender number you may write from is available."}
                )
        return message_send_or_get(
            phone_number=phone_number,
            contact=contact,
            kind=values["type"],
            content=values[values["type"]],
            actor=request.user,
            source=SOURCE,
            idempotency_key=request.headers.get("Idempotency-Key", "").strip(),
            reply_to_wamid=values.get("reply_to", ""),
        )


class GraphRefusalSerializer(serializers.Serializer):
    class MetaErrorSerializer(serializers.Serializer):
        code = serializers.IntegerField(allow_null=True, help_text="Meta's error code.")
        title = serializers.CharField()
        details = serializers.CharField(help_text="Meta's details, or empty.")

        class Meta:
            ref_name = "MetaError"

    detail = serializers.CharField()
    error = MetaErrorSerializer(help_text="What Meta answered.")

    class Meta:
        ref_name = "GraphRefusal"


@extend_schema(tags=["messages"])
class MessageReadApi(APIView):
    queryset = Message.objects.all()

    @extend_schema(
        request=None,
        responses={
            200: MessageOutputSerializer,
            400: OpenApiResponse(description="Not an inbound message, or one without a sender number."),
            409: OpenApiResponse(
                GraphRefusalSerializer,
                description="Meta refused for good (an unknown or too old message, say): asking again "
                "will not help. Its code and message are in `error`.",
            ),
            502: OpenApiResponse(
                GraphRefusalSerializer,
                description="Meta could not be reached, failed, or refused Wharf's token: try again later.",
            ),
        },
        description="Mark an inbound message read.",
    )
    def post(self, request, id: int):
        try:
            message = message_mark_read(message=_message(request, id), actor=request.user, source=SOURCE)
        except GraphError as error:
            refused = isinstance(error, GraphPermanentError) and not isinstance(error, GraphAuthError)
            body = {
                "detail": f"Meta {'refused' if refused else 'did not answer'}: {error.reason}",
                "error": {"code": error.code, "title": error.title, "details": error.details},
            }
            answer = status.HTTP_409_CONFLICT if refused else status.HTTP_502_BAD_GATEWAY
            return Response(GraphRefusalSerializer(body).data, status=answer)
        return Response(MessageOutputSerializer(message, context={"request": request}).data)


@extend_schema(tags=["messages"])
class MediaUploadApi(APIView):
    """POST /api/v1/media/: a file to send, stored in S3; its `s3_key` then goes in a media message."""

    queryset = Message.objects.all()  # uploading is part of sending: messaging.add_message
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()

        class Meta:
            ref_name = "MediaUpload"

    class OutputSerializer(serializers.Serializer):
        s3_key = serializers.CharField()
        mime_type = serializers.CharField()
        size = serializers.IntegerField()

        class Meta:
            ref_name = "MediaUploaded"

    @extend_schema(request={"multipart/form-data": InputSerializer}, responses={201: OutputSerializer})
    def post(self, request):
        """413 naming `file` past MEDIA_UPLOAD_MAX_BYTES, unread; 400 past WhatsApp's limit for its type."""
        upload_length_check(request, field="file", limit=settings.MEDIA_UPLOAD_MAX_BYTES)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        mime_type = upload.content_type or "application/octet-stream"
        key = media_outgoing_upload(file=upload, filename=upload.name, content_type=mime_type)
        data = {"s3_key": key, "mime_type": mime_type, "size": upload.size}
        return Response(self.OutputSerializer(data).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["messages"])
class MessageListApi(MessageSendApi):
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
        messages = message_list(**filters.validated_data, user=request.user)
        page = paginator.paginate_queryset(messages, request, view=self)
        return paginator.get_paginated_response(
            MessageOutputSerializer(page, many=True, context={"request": request}).data
        )


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
        media_note = serializers.SerializerMethodField(
            help_text='Why media_url is null for stored media: "archived, restore requested" while'
            " archived media are brought back from cold storage, or hidden without the"
            " contacts.view_contact permission; empty otherwise."
        )
        context = serializers.SerializerMethodField(help_text="The message this one replies to, or null.")
        payload = serializers.SerializerMethodField(
            help_text="The message as Meta sent it; null without the contacts.view_contact permission."
        )

        class Meta(MessageOutputSerializer.Meta):
            ref_name = "MessageDetail"
            fields = (*MessageOutputSerializer.Meta.fields, "media_url", "media_note", "context", "payload")
            read_only_fields = fields

        @extend_schema_field(serializers.JSONField(allow_null=True))
        def get_payload(self, message: Message) -> dict | None:
            return message.payload if self.contacts_visible else None

        @extend_schema_field(serializers.URLField(allow_null=True))
        def get_media_url(self, message: Message) -> str | None:
            return self._media_access(message)[0]

        def get_media_note(self, message: Message) -> str:
            return self._media_access(message)[1]

        def _media_access(self, message: Message) -> tuple[str | None, str]:
            if not hasattr(message, "_media_access"):
                message._media_access = media_access(message=message, user=self.context["request"].user)
            return message._media_access

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
        return Response(self.OutputSerializer(_message(request, id), context={"request": request}).data)

    @extend_schema(responses={204: None}, description="Deletes the message and its stored media.")
    def delete(self, request, id: int):
        message_delete(message=_message(request, id), actor=request.user, source=SOURCE)
        return Response(status=status.HTTP_204_NO_CONTENT)
