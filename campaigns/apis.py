"""The campaigns API: CRUD, the start / pause / resume / cancel actions, progress and the report.

The audience's count, its CSV list and the report are contact data (contacts.access): they need
contacts.view_contact besides the campaign's own permission.
"""

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from campaigns.models import Campaign
from campaigns.reports import campaign_report_csv, campaign_report_url, csv_report_name
from campaigns.selectors import campaign_failures, campaign_progress, campaign_status_text
from campaigns.services import (
    campaign_audience_count,
    campaign_audience_csv_set,
    campaign_cancel,
    campaign_create,
    campaign_delete,
    campaign_pause,
    campaign_resume,
    campaign_start,
    campaign_update,
)
from contacts.access import ContactDataPermission, contact_data_visible
from contacts.models import Contact
from core.api import ChangePermissions, ModelPermissions, column_max
from core.models import AuditLog
from core.uploads import upload_length_check, upload_size_check
from messaging.models import PhoneNumber, Template

SOURCE = AuditLog.Source.API


class RunPermissions(ModelPermissions):
    """Start, pause, resume and cancel: the `run_campaign` permission."""

    perms_map = {**ModelPermissions.perms_map, "POST": ["%(app_label)s.run_campaign"]}


class TemplateRefSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=512)
    language = serializers.CharField(max_length=16)

    class Meta:
        ref_name = "CampaignTemplate"


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Not handed to the channel yet.")
    queued = serializers.IntegerField(help_text="Handed to the channel, not sent yet.")
    sent = serializers.IntegerField(help_text="Sent, delivered and read ones included.")
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Opted out after the start.")
    in_doubt = serializers.IntegerField(
        help_text="A request may have reached Meta and no answer came: an operator resends or abandons it."
    )
    abandoned = serializers.IntegerField(help_text="In doubt, and an operator chose not to resend.")
    done_pct = serializers.FloatField()
    rate_per_s = serializers.FloatField(help_text="Sends per second over the last 10 s.")

    class Meta:
        ref_name = "CampaignProgress"


class FailureSerializer(serializers.Serializer):
    code = serializers.CharField()
    title = serializers.CharField()
    count = serializers.IntegerField()

    class Meta:
        ref_name = "CampaignFailure"


class CampaignOutputSerializer(serializers.ModelSerializer):
    phone_number_id = serializers.CharField(
        source="phone_number.phone_number_id", read_only=True, allow_null=True, default=None
    )
    template = serializers.SerializerMethodField()
    audience_contacts = serializers.SerializerMethodField()
    status_display = serializers.SerializerMethodField(
        help_text='The status as operators read it: "completed with 3 in doubt" while any recipient is.'
    )
    progress = serializers.SerializerMethodField()
    failures = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        ref_name = "Campaign"
        fields = (
            "id",
            "name",
            "channel",
            "status",
            "status_display",
            "status_reason",
            "phone_number_id",
            "template",
            "template_parameters",
            "subject",
            "body",
            "audience_tags",
            "audience_filters",
            "audience_contacts",
            "scheduled_at",
            "rate_limit_per_s",
            "failure_pause_pct",
            "total_recipients",
            "progress",
            "failures",
            "report_key",
            "report_written_at",
            "started_at",
            "paused_at",
            "finished_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_template(self, campaign: Campaign) -> dict | None:
        if campaign.template is None:
            return None
        return {"name": campaign.template.name, "language": campaign.template.language}

    def get_audience_contacts(self, campaign: Campaign) -> int:
        return campaign.audience_contacts.count()

    def _progress(self, campaign: Campaign) -> dict:
        """Read once per campaign for both fields that need it."""
        cache = self.context.setdefault("progress", {})
        if campaign.pk not in cache:
            cache[campaign.pk] = campaign_progress(campaign=campaign)
        return cache[campaign.pk]

    def get_status_display(self, campaign: Campaign) -> str:
        return campaign_status_text(campaign=campaign, in_doubt=self._progress(campaign)["in_doubt"])

    @extend_schema(responses=ProgressSerializer)
    def get_progress(self, campaign: Campaign) -> dict:
        return self._progress(campaign)

    def get_failures(self, campaign: Campaign) -> list[dict]:
        return campaign_failures(campaign=campaign)


class CampaignInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    channel = serializers.ChoiceField(choices=Campaign.Channel.values, default=Campaign.Channel.WHATSAPP)
    phone_number_id = serializers.CharField(
        max_length=64, required=False, allow_blank=True, help_text="The WhatsApp sender number."
    )
    template = TemplateRefSerializer(required=False, allow_null=True)
    template_parameters = serializers.DictField(
        child=serializers.ListField(),
        required=False,
        help_text='By component: {"body": ["{{name|there}}", "{{attributes.code}}"], "header": [...], '
        '"button.0": [...]}.',
    )
    subject = serializers.CharField(max_length=255, required=False, allow_blank=True)
    body = serializers.CharField(required=False, allow_blank=True)
    audience_tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    audience_filters = serializers.DictField(
        required=False,
        help_text="language, attributes (an object every value of which must match), created_after, "
        "created_before, opted_in.",
    )
    audience_contacts = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=column_max(Contact._meta.pk)),
        required=False,
        help_text="Contact ids.",
    )
    scheduled_at = serializers.DateTimeField(required=False, allow_null=True)
    rate_limit_per_s = serializers.IntegerField(
        min_value=1,
        max_value=column_max(Campaign._meta.get_field("rate_limit_per_s")),
        required=False,
        allow_null=True,
    )
    failure_pause_pct = serializers.IntegerField(min_value=0, max_value=100, required=False)

    class Meta:
        ref_name = "CampaignInput"


def _fields(values: dict) -> dict:
    """The serializer's values as the services take them: the sender and template as rows."""
    fields = dict(values)
    if "phone_number_id" in fields:
        phone_number_id = fields.pop("phone_number_id")
        fields["phone_number"] = None
        if phone_number_id:
            fields["phone_number"] = PhoneNumber.objects.filter(phone_number_id=phone_number_id).first()
            if fields["phone_number"] is None:
                raise exceptions.ValidationError({"phone_number_id": "No such sender number."})
    if "template" in fields:
        ref = fields.pop("template")
        fields["template"] = None
        if ref:
            waba_id = fields["phone_number"].waba_id if fields.get("phone_number") else None
            found = Template.objects.filter(name=ref["name"], language=ref["language"])
            if waba_id is not None:
                found = found.filter(waba_id=waba_id)
            fields["template"] = found.first()
            if fields["template"] is None:
                raise exceptions.ValidationError(
                    {"template": f"No template {ref['name']} ({ref['language']}) for this sender."}
                )
    return fields


def _campaign(id: int) -> Campaign:
    campaign = Campaign.objects.select_related("phone_number", "template").filter(pk=id).first()
    if campaign is None:
        raise exceptions.NotFound()
    return campaign


def _answer(campaign: Campaign, code: int = status.HTTP_200_OK) -> Response:
    return Response(CampaignOutputSerializer(_campaign(campaign.pk)).data, status=code)


@extend_schema(tags=["campaigns"])
class CampaignListCreateApi(APIView):
    queryset = Campaign.objects.all()
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(responses=CampaignOutputSerializer(many=True))
    def get(self, request):
        paginator = self.pagination_class()
        campaigns = Campaign.objects.select_related("phone_number", "template").order_by("-created_at", "-id")
        page = paginator.paginate_queryset(campaigns, request, view=self)
        return paginator.get_paginated_response(CampaignOutputSerializer(page, many=True).data)

    @extend_schema(request=CampaignInputSerializer, responses={201: CampaignOutputSerializer})
    def post(self, request):
        serializer = CampaignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = campaign_create(actor=request.user, source=SOURCE, **_fields(serializer.validated_data))
        return _answer(campaign, status.HTTP_201_CREATED)


@extend_schema(tags=["campaigns"])
class CampaignDetailApi(APIView):
    queryset = Campaign.objects.all()

    @extend_schema(responses=CampaignOutputSerializer)
    def get(self, request, id: int):
        return _answer(_campaign(id))

    @extend_schema(
        request=CampaignInputSerializer,
        responses={
            200: CampaignOutputSerializer,
            400: OpenApiResponse(description="Refused input by field; `status` when it is not a draft."),
        },
    )
    def patch(self, request, id: int):
        campaign = _campaign(id)
        serializer = CampaignInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        values = _fields(serializer.validated_data)
        if "template" in values and "phone_number" not in values and values["template"] is not None:
            values["phone_number"] = campaign.phone_number
        campaign = campaign_update(campaign=campaign, actor=request.user, source=SOURCE, **values)
        return _answer(campaign)

    @extend_schema(
        responses={
            204: None,
            400: OpenApiResponse(
                description="`status`: a campaign under way (scheduled, running, paused): cancel it first."
            ),
        }
    )
    def delete(self, request, id: int):
        campaign_delete(campaign=_campaign(id), actor=request.user, source=SOURCE)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _action(service):
    @extend_schema(
        tags=["campaigns"],
        request=None,
        responses={
            200: CampaignOutputSerializer,
            400: OpenApiResponse(description="The campaign's state or content does not allow it."),
        },
    )
    def post(self, request, id: int):
        return _answer(service(campaign=_campaign(id), actor=request.user, source=SOURCE))

    return post


class CampaignStartApi(APIView):
    """Start now, or at `scheduled_at` when it is ahead (the campaign is then `scheduled`)."""

    queryset = Campaign.objects.all()
    permission_classes = [RunPermissions]
    post = _action(campaign_start)


class CampaignPauseApi(APIView):
    """No new send starts once this answers; sends already under way finish."""

    queryset = Campaign.objects.all()
    permission_classes = [RunPermissions]
    post = _action(campaign_pause)


class CampaignResumeApi(APIView):
    """Continue with exactly the recipients not sent yet."""

    queryset = Campaign.objects.all()
    permission_classes = [RunPermissions]
    post = _action(campaign_resume)


class CampaignCancelApi(APIView):
    """Stop: the recipients not sent yet are cancelled, and the report is written."""

    queryset = Campaign.objects.all()
    permission_classes = [RunPermissions]
    post = _action(campaign_cancel)


@extend_schema(tags=["campaigns"])
class CampaignAudienceApi(APIView):
    """How many contacts the audience holds now (a preview: recipients are taken at the start)."""

    queryset = Campaign.objects.all()
    permission_classes = [ModelPermissions, ContactDataPermission]

    class OutputSerializer(serializers.Serializer):
        count = serializers.IntegerField()

        class Meta:
            ref_name = "CampaignAudience"

    @extend_schema(responses=OutputSerializer)
    def get(self, request, id: int):
        return Response({"count": campaign_audience_count(campaign=_campaign(id))})


@extend_schema(tags=["campaigns"])
class CampaignAudienceCsvApi(APIView):
    """The explicit list from a CSV with an id, phone or email column; replaces the list."""

    queryset = Campaign.objects.all()
    permission_classes = [ChangePermissions, ContactDataPermission]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()

        class Meta:
            ref_name = "CampaignAudienceCsvInput"

        def validate_file(self, file):
            upload_size_check(file, limit=settings.CSV_UPLOAD_MAX_BYTES)
            return file

    class OutputSerializer(serializers.Serializer):
        lines = serializers.IntegerField()
        matched = serializers.IntegerField()
        unmatched = serializers.IntegerField()

        class Meta:
            ref_name = "CampaignAudienceCsv"

    @extend_schema(request={"multipart/form-data": InputSerializer}, responses=OutputSerializer)
    def post(self, request, id: int):
        upload_length_check(request, field="file", limit=settings.CSV_UPLOAD_MAX_BYTES)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        counts = campaign_audience_csv_set(
            campaign=_campaign(id), file=serializer.validated_data["file"], actor=request.user, source=SOURCE
        )
        return Response(counts)


@extend_schema(tags=["campaigns"])
class CampaignReportApi(APIView):
    """A short-lived link to the report in S3 (404 until it is written)."""

    queryset = Campaign.objects.all()
    permission_classes = [ModelPermissions, ContactDataPermission]

    class OutputSerializer(serializers.Serializer):
        key = serializers.CharField()
        url = serializers.URLField()
        written_at = serializers.DateTimeField()

        class Meta:
            ref_name = "CampaignReport"

    @extend_schema(responses=OutputSerializer)
    def get(self, request, id: int):
        campaign = _campaign(id)
        url = campaign_report_url(campaign=campaign)
        if url is None:
            raise exceptions.NotFound("The report is written when the campaign completes or is cancelled.")
        return Response({"key": campaign.report_key, "url": url, "written_at": campaign.report_written_at})


@extend_schema(tags=["campaigns"])
class CampaignReportCsvApi(APIView):
    """The report's rows as they are now, one per recipient, as a streamed CSV: status, message
    status, error, times. Names, phones, emails and addresses only with contacts.view_contact."""

    queryset = Campaign.objects.all()

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(description="The CSV.")})
    def get(self, request, id: int):
        campaign = _campaign(id)
        rows = campaign_report_csv(campaign=campaign, contact_data=contact_data_visible(request.user))
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        name = csv_report_name(campaign, as_of=timezone.now())
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
