"""The conversations API, mounted at /api/v1/conversations/."""

from django.urls import path

from messaging.apis.conversations import (
    ConversationAssignApi,
    ConversationDetailApi,
    ConversationLabelsApi,
    ConversationListApi,
    ConversationNotesApi,
    ConversationPriorityApi,
    ConversationReadApi,
    ConversationStatusApi,
)

app_name = "conversations"

urlpatterns = [
    path("", ConversationListApi.as_view(), name="list"),
    path("<int:id>/", ConversationDetailApi.as_view(), name="detail"),
    path("<int:id>/assign/", ConversationAssignApi.as_view(), name="assign"),
    path("<int:id>/status/", ConversationStatusApi.as_view(), name="status"),
    path("<int:id>/labels/", ConversationLabelsApi.as_view(), name="labels"),
    path("<int:id>/priority/", ConversationPriorityApi.as_view(), name="priority"),
    path("<int:id>/read/", ConversationReadApi.as_view(), name="read"),
    path("<int:id>/notes/", ConversationNotesApi.as_view(), name="notes"),
]
