"""The share-scoped DICOMweb's paths under ``r/dicomweb/`` (docs/requirements.md B6.4): QIDO-RS searches, WADO-RS
retrieves and metadata, and a 404 (past the gate) for any other path. The paths hold Study, Series and SOP Instance
UIDs, as DICOMweb requires, and nothing else.
"""

from django.urls import path, re_path

from radshare.viewer.dicomweb import common, qido, wado

_S = "r/dicomweb/studies/<str:study>"
_SE = f"{_S}/series/<str:series>"
_I = f"{_SE}/instances/<str:sop>"

urlpatterns = [
    path("r/dicomweb/studies", qido.search_studies, name="dicomweb_studies"),
    path("r/dicomweb/series", qido.search_series, name="dicomweb_series"),
    path("r/dicomweb/instances", qido.search_instances, name="dicomweb_instances"),
    path(_S, wado.retrieve_study, name="dicomweb_study"),
    path(f"{_S}/metadata", wado.study_metadata, name="dicomweb_study_metadata"),
    path(f"{_S}/series", qido.search_series, name="dicomweb_study_series"),
    path(f"{_S}/instances", qido.search_instances, name="dicomweb_study_instances"),
    path(_SE, wado.retrieve_series, name="dicomweb_series_retrieve"),
    path(f"{_SE}/metadata", wado.series_metadata, name="dicomweb_series_metadata"),
    path(f"{_SE}/instances", qido.search_instances, name="dicomweb_series_instances"),
    path(_I, wado.retrieve_instance, name="dicomweb_instance"),
    path(f"{_I}/metadata", wado.instance_metadata_view, name="dicomweb_instance_metadata"),
    path(f"{_I}/frames/<str:frames>", wado.retrieve_frames, name="dicomweb_frames"),
    re_path(r"^r/dicomweb(?:/(?P<rest>.*))?$", common.unknown, name="dicomweb_unknown"),
]
