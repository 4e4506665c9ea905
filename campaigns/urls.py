from django.urls import path

from campaigns.apis import (
    CampaignAudienceApi,
    CampaignAudienceCsvApi,
    CampaignCancelApi,
    CampaignDetailApi,
    CampaignListCreateApi,
    CampaignPauseApi,
    CampaignReportApi,
    CampaignReportCsvApi,
    CampaignResumeApi,
    CampaignStartApi,
)

app_name = "campaigns"

urlpatterns = [
    path("", CampaignListCreateApi.as_view(), name="list"),
    path("<int:id>/", CampaignDetailApi.as_view(), name="detail"),
    path("<int:id>/start/", CampaignStartApi.as_view(), name="start"),
    path("<int:id>/pause/", CampaignPauseApi.as_view(), name="pause"),
    path("<int:id>/resume/", CampaignResumeApi.as_view(), name="resume"),
    path("<int:id>/cancel/", CampaignCancelApi.as_view(), name="cancel"),
    path("<int:id>/report/", CampaignReportApi.as_view(), name="report"),
    path("<int:id>/report/csv/", CampaignReportCsvApi.as_view(), name="report-csv"),
    path("<int:id>/audience/", CampaignAudienceApi.as_view(), name="audience"),
    path("<int:id>/audience/csv/", CampaignAudienceCsvApi.as_view(), name="audience-csv"),
]
