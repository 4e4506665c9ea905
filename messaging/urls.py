"""The messages API, mounted at /api/v1/messages/."""

from django.urls import path

from messaging.apis.messages import MessageDetailApi, MessageListApi, MessageReadApi

app_name = "messaging"

urlpatterns = [
    path("", MessageListApi.as_view(), name="list"),
    path("<int:id>/", MessageDetailApi.as_view(), name="detail"),
    path("<int:id>/read/", MessageReadApi.as_view(), name="read"),
]
