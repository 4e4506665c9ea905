"""The conversations API (the inbox): each view parses its input, calls one service or selector
and answers with the conversation.

Reading needs `messaging.view_conversation`, every action (a POST on one conversation, a private
note included) `messaging.change_conversation`; either sees only the conversations of the sender
numbers the caller sees (`messaging.conversations.conversations_visible_q`), any other is a 404.
The contact's name, phone and WhatsApp id are shown only to users who may view contacts
(`contacts.view_contact`); others get the contact's id alone, and may not search (`q` looks in
contacts' names and numbers).
"""

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from contacts.access import CONTACTS_VIEW, contact_data_visible
from contacts.models import Contact
from core.api import ChangePermissions, column_max
from core.models import AuditLog
from messaging.activity import ConversationActivity
from messaging.conversations import (
    LABELS_MAX,
    ConversationAssignConflict,
    conversation_assign,
    conversation_labels_set,
    conversation_note_add,
    conversation_priority_set,
    conversation_read,
    conversation_status_set,
)
from messaging.models import Conversation, ConversationNote, Message
from messaging.selectors import (
    CONVERSATION_SORTS,
    CONVERSATION_TABS,
    ConversationEntry,
    TimelineCall,
    conversation,
    conversation_get,
    conversation_list,
    conversation_notes,
    message_get,
)
from messaging.window import WhatsAppWindow, conversation_window, whatsapp_window

SOURCE = AuditLog.Source.API
TIMELINE_PAGE_SIZE = 50
TIMELINE_PAGE_MAX = 200
# The largest ids the columns hold (every model's but the user's are bigint).
ID_MAX = column_max(Contact._meta.pk)
USER_ID_MAX = column_max(get_user_model()._meta.pk)


# -- shapes shared by the views (one schema component each) -----------------------------------------


class ConversationContactSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(required=False, help_text="Only with contacts.view_contact.")
    phone = serializers.CharField(
        required=False, allow_null=True, help_text="E.164; only with contacts.view_contact."
    )
    wa_id = serializers.CharField(required=False, help_text="Only with contacts.view_contact.")

    class Meta:
        ref_name = "ConversationContact"


class ConversationNumberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    display = serializers.CharField(source="display_phone_number")
    phone_number_id = serializers.CharField(help_text="Meta's id of the number, as the send API takes it.")

    class Meta:
        ref_name = "ConversationNumber"


class AssigneeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="get_username")

    class Meta:
        ref_name = "ConversationAssignee"


class WindowSerializer(serializers.Serializer):
    open = serializers.BooleanField(source="is_open", help_text="Free-form messages may be sent.")
    closes_at = serializers.DateTimeField(
        allow_null=True, help_text="When it closes (or closed); null when the customer never wrote."
    )

    class Meta:
        ref_name = "ConversationWindow"


class ConversationOutputSerializer(serializers.ModelSerializer):
    contact = serializers.SerializerMethodField(
        help_text="The contact; only its id without the contacts.view_contact permission."
    )
    phone_number = ConversationNumberSerializer(
        read_only=True, allow_null=True, help_text="The sender number; null when Wharf does not know it."
    )
    assignee = AssigneeSerializer(read_only=True, allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(), read_only=True)
    window = serializers.SerializerMethodField(
        help_text="WhatsApp's 24-hour customer service window with this number."
    )

    class Meta:
        model = Conversation
        ref_name = "Conversation"
        fields = (
            "id",
            "contact",
            "phone_number",
            "status",
            "snoozed_until",
            "assignee",
            "labels",
            "priority",
            "unread_count",
            "last_inbound_at",
            "last_outbound_at",
            "last_message_at",
            "last_message_preview",
            "waiting_since",
            "window",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(ConversationContactSerializer)
    def get_contact(self, conversation: Conversation) -> dict:
        if not self.context.get("contacts_visible"):
            return {"id": conversation.contact_id}
        contact = conversation.contact
        return {"id": contact.id, "name": contact.name, "phone": contact.phone, "wa_id": contact.wa_id}

    @extend_schema_field(WindowSerializer)
    def get_window(self, conversation: Conversation) -> dict:
        return WindowSerializer(self.window_of(conversation)).data

    def window_of(self, conversation: Conversation) -> WhatsAppWindow:
        """From the row alone, as the inbox lists it: no query per row of a list."""
        return conversation_window(conversation)


class TimelineMessageSerializer(serializers.ModelSerializer):
    class ErrorSerializer(serializers.Serializer):
        code = serializers.IntegerField(source="error_code", allow_null=True)
        title = serializers.CharField(source="error_title")

        class Meta:
            ref_name = "ConversationMessageError"

    error = serializers.SerializerMethodField(help_text="Meta's error for a failed message, or null.")

    class Meta:
        model = Message
        ref_name = "ConversationMessage"
        fields = ("id", "wamid", "direction", "type", "text", "status", "timestamp", "reaction", "error")
        read_only_fields = fields

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, message: Message) -> dict | None:
        if message.error_code is None and not message.error_title:
            return None
        return self.ErrorSerializer(message).data


class ConversationUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="get_username")

    class Meta:
        ref_name = "ConversationUser"


class NoteSerializer(serializers.ModelSerializer):
    author = ConversationUserSerializer(read_only=True, allow_null=True, help_text="null: a removed user.")

    class Meta:
        model = ConversationNote
        ref_name = "ConversationNote"
        fields = ("id", "body", "author", "created_at")
        read_only_fields = fields


class ActivitySerializer(serializers.Serializer):
    action = serializers.CharField(
        help_text="The audit log's action: conversation.assign, .status, .labels, ..."
    )
    text = serializers.CharField(help_text='What happened, as the console says it: "alice resolved this".')
    actor = ConversationUserSerializer(allow_null=True, help_text="Who did it; null: Wharf itself.")
    snoozed_until = serializers.DateTimeField(
        source="until", allow_null=True, help_text="For a snooze: until when."
    )

    class Meta:
        ref_name = "ConversationActivity"


class TimelineCallSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="call.pk", help_text="The call, as GET /api/v1/calls/<id>/ has it.")
    direction = serializers.CharField(source="call.direction")
    status = serializers.CharField(source="call.status")
    missed = serializers.BooleanField(source="call.missed")
    started_at = serializers.DateTimeField(source="call.started_at")
    ended_at = serializers.DateTimeField(source="call.ended_at", allow_null=True)
    duration_s = serializers.IntegerField(source="call.duration_s", allow_null=True)
    text = serializers.CharField(
        help_text='What the timeline says: "Missed call", "Incoming call (2:05)" ...'
    )

    class Meta:
        ref_name = "ConversationTimelineCall"


class TimelineEntrySerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text="message, note, activity or call: which of the other fields holds the entry (a "
        "client skips a kind it does not know: more may come)."
    )
    at = serializers.DateTimeField(help_text="When it happened: the entries are in this order.")
    message = serializers.SerializerMethodField(help_text="With kind message; else null.")
    note = serializers.SerializerMethodField(help_text="With kind note: a private note; else null.")
    activity = serializers.SerializerMethodField(help_text="With kind activity; else null.")
    call = serializers.SerializerMethodField(help_text="With kind call: a WhatsApp call; else null.")

    class Meta:
        ref_name = "ConversationTimelineEntry"

    @extend_schema_field(TimelineMessageSerializer(allow_null=True))
    def get_message(self, entry: ConversationEntry) -> dict | None:
        return TimelineMessageSerializer(entry.message).data if entry.message is not None else None

    @extend_schema_field(NoteSerializer(allow_null=True))
    def get_note(self, entry: ConversationEntry) -> dict | None:
        return NoteSerializer(entry.item).data if isinstance(entry.item, ConversationNote) else None

    @extend_schema_field(ActivitySerializer(allow_null=True))
    def get_activity(self, entry: ConversationEntry) -> dict | None:
        return ActivitySerializer(entry.item).data if isinstance(entry.item, ConversationActivity) else None

    @extend_schema_field(TimelineCallSerializer(allow_null=True))
    def get_call(self, entry: ConversationEntry) -> dict | None:
        return TimelineCallSerializer(entry.item).data if isinstance(entry.item, TimelineCall) else None


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    assignee = AssigneeSerializer(allow_null=True, help_text="Who holds the conversation now.")

    class Meta:
        ref_name = "ConversationAssignConflict"


class ApiErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()

    class Meta:
        ref_name = "ConversationError"


_ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT, description='Bad input: {"<field>": ["why"]}, nothing changed.'
    ),
    401: OpenApiResponse(ApiErrorSerializer, description="No or a bad token."),
    403: OpenApiResponse(ApiErrorSerializer, description="The user lacks the permission."),
    404: OpenApiResponse(ApiErrorSerializer, description="No such conversation."),
}


def _errors(*codes: int) -> dict:
    return {code: _ERRORS[code] for code in codes}


def _context(request) -> dict:
    return {"contacts_visible": contact_data_visible(request.user)}


def _conversation(request, id: int) -> Conversation:
    """The conversation, or 404 when it does not exist or the caller does not see its number."""
    found = conversation_get(id=id, user=request.user)
    if found is None:
        raise exceptions.NotFound()
    return found


def _answer(request, conversation: Conversation) -> Response:
    return Response(ConversationOutputSerializer(conversation, context=_context(request)).data)


# -- reading ----------------------------------------------------------------------------------------


@extend_schema(tags=["conversations"])
class ConversationListApi(APIView):
    queryset = Conversation.objects.all()
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class FilterSerializer(serializers.Serializer):
        tab = serializers.ChoiceField(
            choices=CONVERSATION_TABS, default="all", help_text="mine: assigned to the caller."
        )
        status = serializers.ChoiceField(choices=Conversation.Status.choices, required=False)
        phone_number = serializers.IntegerField(
            required=False, min_value=1, max_value=ID_MAX, help_text="A sender number's id."
        )
        label = serializers.CharField(required=False, max_length=32)
        assignee = serializers.IntegerField(
            required=False, min_value=1, max_value=USER_ID_MAX, help_text="A user's id."
        )
        sort = serializers.ChoiceField(
            choices=CONVERSATION_SORTS,
            default="waiting",
            help_text="waiting: longest waiting first, then the latest; latest: the latest message first.",
        )
        q = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=200,
            help_text="In contacts (name, phone, WhatsApp id) and message text; needs contacts.view_contact.",
        )

        class Meta:
            ref_name = "ConversationFilter"

    @extend_schema(
        parameters=[FilterSerializer],
        responses={200: ConversationOutputSerializer(many=True), **_errors(400, 401, 403)},
        description="The inbox, filtered and sorted as in the admin.",
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        if filters.validated_data.get("q", "").strip() and not contact_data_visible(request.user):
            raise exceptions.PermissionDenied(f"Searching looks in contacts: it needs {CONTACTS_VIEW}.")
        paginator = self.pagination_class()
        conversations = conversation_list(user=request.user, **filters.validated_data)
        page = paginator.paginate_queryset(conversations, request, view=self)
        data = ConversationOutputSerializer(page, many=True, context=_context(request)).data
        return paginator.get_paginated_response(data)


@extend_schema(tags=["conversations"])
class ConversationDetailApi(APIView):
    queryset = Conversation.objects.all()

    class FilterSerializer(serializers.Serializer):
        before = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=ID_MAX,
            help_text="A message's id: the page of messages older than it.",
        )
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=TIMELINE_PAGE_MAX, default=TIMELINE_PAGE_SIZE
        )

        class Meta:
            ref_name = "ConversationTimelineFilter"

    class OutputSerializer(ConversationOutputSerializer):
        messages = serializers.SerializerMethodField(
            help_text="The page's messages, oldest first; reactions are on the message they are about."
        )
        timeline = serializers.SerializerMethodField(
            help_text="The page of the timeline, oldest first: its messages, and the private notes and "
            "activity (assignment, status, labels, priority) from its oldest message on."
        )
        before = serializers.SerializerMethodField(
            help_text="Pass as ?before= for the older page; null when this page reaches the first message."
        )

        class Meta(ConversationOutputSerializer.Meta):
            ref_name = "ConversationDetail"
            fields = (*ConversationOutputSerializer.Meta.fields, "messages", "timeline", "before")
            read_only_fields = fields

        def window_of(self, conversation: Conversation) -> WhatsAppWindow:
            if conversation.phone_number is None:
                return super().window_of(conversation)
            return whatsapp_window(conversation.contact, phone_number=conversation.phone_number)

        @extend_schema_field(TimelineMessageSerializer(many=True))
        def get_messages(self, conversation: Conversation) -> list:
            return TimelineMessageSerializer(self.context["page"].messages, many=True).data

        @extend_schema_field(TimelineEntrySerializer(many=True))
        def get_timeline(self, conversation: Conversation) -> list:
            return TimelineEntrySerializer(self.context["page"].entries, many=True).data

        @extend_schema_field(serializers.IntegerField(allow_null=True))
        def get_before(self, conversation: Conversation) -> int | None:
            earlier = self.context["page"].earlier
            return earlier.id if earlier else None

    @extend_schema(
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, **_errors(400, 401, 403, 404)},
        description="One conversation with the newest page of its timeline (or the page before a message).",
    )
    def get(self, request, id: int):
        found = _conversation(request, id)
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        before = filters.validated_data.get("before")
        if before is not None:
            anchor = message_get(id=before)
            if anchor is None or anchor.conversation_id != found.id:
                raise serializers.ValidationError({"before": "No such message in this conversation."})
        page = conversation(
            contact=found.contact,
            conversation_id=found.id,
            before_id=before,
            limit=filters.validated_data["limit"],
        )
        return Response(self.OutputSerializer(found, context={**_context(request), "page": page}).data)


@extend_schema(tags=["conversations"])
class ConversationNotesApi(APIView):
    """A conversation's private notes: reading them needs `messaging.view_conversation`, adding
    one `messaging.change_conversation` (as every operator's action on a conversation)."""

    queryset = Conversation.objects.all()
    permission_classes = [ChangePermissions]
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class InputSerializer(serializers.Serializer):
        body = serializers.CharField(
            allow_blank=True, trim_whitespace=False, help_text="The note: up to 4000 characters."
        )

        class Meta:
            ref_name = "ConversationNoteInput"

    @extend_schema(
        responses={200: NoteSerializer(many=True), **_errors(401, 403, 404)},
        description="The conversation's private notes, oldest first.",
    )
    def get(self, request, id: int):
        found = _conversation(request, id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(conversation_notes(conversation=found), request, view=self)
        return paginator.get_paginated_response(NoteSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={201: NoteSerializer, **_errors(400, 401, 403, 404)},
        description="Add a private note: operators see it in the timeline; the customer never does.",
    )
    def post(self, request, id: int):
        found = _conversation(request, id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        note = conversation_note_add(
            conversation=found, body=serializer.validated_data["body"], actor=request.user, source=SOURCE
        )
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)


# -- actions ----------------------------------------------------------------------------------------


class ConversationActionApi(APIView):
    """A POST on one conversation changes it: `messaging.change_conversation`, not add."""

    queryset = Conversation.objects.all()
    permission_classes = [ChangePermissions]


@extend_schema(tags=["conversations"])
class ConversationAssignApi(ConversationActionApi):
    class InputSerializer(serializers.Serializer):
        assignee = serializers.PrimaryKeyRelatedField(
            queryset=get_user_model().objects.all(),
            allow_null=True,
            help_text="A user's id (an active staff member who sees the conversation's number), or null "
            "to unassign.",
        )
        expected_assignee = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            max_value=USER_ID_MAX,
            help_text="The assignee the client saw (null: unassigned). When someone else holds the "
            "conversation now, nothing changes and the answer is 409. Left out: whoever holds it.",
        )

        class Meta:
            ref_name = "ConversationAssignInput"

    @extend_schema(
        request=InputSerializer,
        responses={
            200: ConversationOutputSerializer,
            **_errors(400, 401, 403, 404),
            409: OpenApiResponse(ConflictSerializer, description="Someone else changed the assignee."),
        },
    )
    def post(self, request, id: int):
        found = _conversation(request, id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "expected_assignee" in serializer.validated_data:
            found.assignee_id = serializer.validated_data["expected_assignee"]
        try:
            assigned = conversation_assign(
                conversation=found,
                assignee=serializer.validated_data["assignee"],
                actor=request.user,
                source=SOURCE,
            )
        except ConversationAssignConflict as conflict:
            body = {"detail": conflict.message_dict["assignee"][0], "assignee": conflict.holder}
            return Response(ConflictSerializer(body).data, status=status.HTTP_409_CONFLICT)
        return _answer(request, assigned)


@extend_schema(tags=["conversations"])
class ConversationStatusApi(ConversationActionApi):
    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Conversation.Status.choices)
        snoozed_until = serializers.DateTimeField(
            required=False, allow_null=True, help_text="Required with snoozed: a time in the future."
        )

        class Meta:
            ref_name = "ConversationStatusInput"

    @extend_schema(
        request=InputSerializer, responses={200: ConversationOutputSerializer, **_errors(400, 401, 403, 404)}
    )
    def post(self, request, id: int):
        found = _conversation(request, id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changed = conversation_status_set(
            conversation=found,
            status=serializer.validated_data["status"],
            snoozed_until=serializer.validated_data.get("snoozed_until"),
            actor=request.user,
            source=SOURCE,
        )
        return _answer(request, changed)


@extend_schema(tags=["conversations"])
class ConversationLabelsApi(ConversationActionApi):
    class InputSerializer(serializers.Serializer):
        labels = serializers.ListField(
            child=serializers.CharField(max_length=64, allow_blank=True),
            max_length=LABELS_MAX,
            help_text="Replaces the labels: names from the catalogue of labels (the admin's Labels).",
        )

        class Meta:
            ref_name = "ConversationLabelsInput"

    @extend_schema(
        request=InputSerializer, responses={200: ConversationOutputSerializer, **_errors(400, 401, 403, 404)}
    )
    def post(self, request, id: int):
        found = _conversation(request, id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changed = conversation_labels_set(
            conversation=found, labels=serializer.validated_data["labels"], actor=request.user, source=SOURCE
        )
        return _answer(request, changed)


@extend_schema(tags=["conversations"])
class ConversationPriorityApi(ConversationActionApi):
    class InputSerializer(serializers.Serializer):
        priority = serializers.ChoiceField(choices=Conversation.Priority.choices)

        class Meta:
            ref_name = "ConversationPriorityInput"

    @extend_schema(
        request=InputSerializer, responses={200: ConversationOutputSerializer, **_errors(400, 401, 403, 404)}
    )
    def post(self, request, id: int):
        found = _conversation(request, id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changed = conversation_priority_set(
            conversation=found,
            priority=serializer.validated_data["priority"],
            actor=request.user,
            source=SOURCE,
        )
        return _answer(request, changed)


@extend_schema(tags=["conversations"])
class ConversationReadApi(ConversationActionApi):
    @extend_schema(
        request=None,
        responses={200: ConversationOutputSerializer, **_errors(401, 403, 404)},
        description="The caller has seen the conversation: nothing unread.",
    )
    def post(self, request, id: int):
        return _answer(
            request,
            conversation_read(conversation=_conversation(request, id), actor=request.user, source=SOURCE),
        )
