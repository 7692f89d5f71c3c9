"""Renders in the sender portal: thumbnails on the study page, and render files scoped to the organisation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydicom
import pydicom.data
import pytest
from django.test import Client

from radshare.imaging import services
from radshare.imaging.models import InstanceRender
from radshare.organisations.services import create_sender
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode

PATIENT = FakePatient("PV1", "Preview^Pat", dt.date(1980, 2, 3))


def _client(user: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.fixture
def ct_study(organisation: Any) -> Study:
    series = ct_series(PATIENT, count=2, size=48)
    for ds in series:
        store_instance(organisation, encode(ds), source="upload")
    # pydicom's SR sample, filed into the same study of the same patient.
    sr = pydicom.dcmread(pydicom.data.get_testdata_file("reportsi.dcm"))
    sr.PatientID, sr.PatientName, sr.StudyInstanceUID = "PV1", "Preview^Pat", series[0].StudyInstanceUID
    store_instance(organisation, encode(sr), source="upload")
    return Study.objects.get(patient__patient_id="PV1")


@pytest.mark.django_db
def test_study_page_says_images_are_being_prepared_until_rendered(sender: Any, ct_study: Study) -> None:
    page = _client(sender).get(f"/portal/studies/{ct_study.pk}/").content.decode()
    assert "Being prepared" in page
    assert "/portal/renders/" not in page
    assert "JPEG known once all images are prepared" in page


@pytest.mark.django_db
def test_study_page_shows_thumbnails_once_rendered(sender: Any, ct_study: Study) -> None:
    services.render_pending_now(parallel=False)
    page = _client(sender).get(f"/portal/studies/{ct_study.pk}/").content.decode()
    first = Instance.objects.filter(series__study=ct_study).order_by("instance_number", "id").first()
    assert first is not None
    assert f'src="/portal/renders/{first.pk}/0/thumb.jpg"' in page
    assert "2 objects" in page
    _, jpeg_bytes = services.study_sizes(ct_study)
    assert jpeg_bytes
    assert "known once all images are prepared" not in page


@pytest.mark.django_db
def test_render_files_are_served_to_their_organisation_only(
    sender: Any, ct_study: Study, other_organisation: Any
) -> None:
    services.render_pending_now(parallel=False)
    instance = Instance.objects.filter(series__study=ct_study, series__modality="CT").first()
    assert instance is not None
    own = _client(sender)
    for kind in ("full", "preview", "thumb", "soft", "lung", "bone"):
        response = own.get(f"/portal/renders/{instance.pk}/0/{kind}.jpg")
        assert response.status_code == 200, kind
        assert response["Content-Type"] == "image/jpeg"
        assert response["Cache-Control"] == "no-store"
        assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"  # type: ignore[attr-defined]
    for bad in ("1/full", "0/other", "0/..%2Ffull"):
        assert own.get(f"/portal/renders/{instance.pk}/{bad}.jpg").status_code == 404, bad
    stranger = _client(create_sender(other_organisation, "bob", "another long pass phrase"))
    assert stranger.get(f"/portal/renders/{instance.pk}/0/full.jpg").status_code == 404
    assert Client().get(f"/portal/renders/{instance.pk}/0/full.jpg").status_code == 302


@pytest.mark.django_db
def test_a_report_gets_a_placeholder_with_its_reason(sender: Any, ct_study: Study) -> None:
    services.render_pending_now(parallel=False)
    sr = InstanceRender.objects.get(instance__series__study=ct_study, instance__series__modality="SR")
    assert sr.status == "unrenderable"
    page = _client(sender).get(f"/portal/studies/{ct_study.pk}/").content.decode()
    assert "This object holds no image" in page
    assert f"/portal/renders/{sr.instance_id}/" not in page
