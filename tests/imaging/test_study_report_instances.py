"""A study's reports are found from the counts kept at ingest (``number_of_reports``): the same instances, oldest
first, as a look-up over the organisation's instances gives, and no query at all for a study without a report."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from radshare.dicom import REPORT_SOP_CLASSES
from radshare.imaging.reports import study_report_instances
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import encode
from tests.imaging.test_reports import make_pdf, pdf_dataset, sr_dataset
from tests.shares.helpers import ANNA, PIET, make_study

pytestmark = pytest.mark.django_db


def organisation_wide(study: Study) -> list[Instance]:
    """How the reports were looked up before the counts: every report instance of the organisation in the study."""
    return list(
        Instance.objects.filter(
            organisation_id=study.organisation_id, series__study=study, sop_class_uid__in=REPORT_SOP_CLASSES
        ).order_by("received_at", "pk")
    )


def add(study: Study, ds: Any) -> None:
    store_instance(study.organisation, encode(ds), source="upload")


def test_the_same_reports_for_studies_with_sr_pdf_both_and_none(organisation: Any) -> None:
    sr_only, pdf_only, both, none = (make_study(organisation, ANNA) for _ in range(4))
    other_patient = make_study(organisation, PIET)
    add(sr_only, sr_dataset(ANNA, sr_only.study_instance_uid, finding="a", conclusion="b"))
    add(pdf_only, pdf_dataset(ANNA, pdf_only.study_instance_uid, make_pdf("one")))
    add(both, pdf_dataset(ANNA, both.study_instance_uid, make_pdf("first")))
    add(both, sr_dataset(ANNA, both.study_instance_uid, finding="c", conclusion="d"))
    add(both, pdf_dataset(ANNA, both.study_instance_uid, make_pdf("third")))
    add(other_patient, sr_dataset(PIET, other_patient.study_instance_uid, finding="e", conclusion="f"))
    expected = {sr_only: 1, pdf_only: 1, both: 3, none: 0, other_patient: 1}
    for study, count in expected.items():
        study = Study.objects.get(pk=study.pk)  # its counts as ingest left them
        assert study.number_of_reports == count
        found = study_report_instances(study)
        assert found == organisation_wide(study)
        assert len(found) == count
        assert all(i.series.study_id == study.pk for i in found)
    # Oldest first: the order they were received in.
    kinds = [i.sop_class_uid for i in study_report_instances(Study.objects.get(pk=both.pk))]
    assert kinds == [
        "1.2.840.10008.5.1.4.1.1.104.1",
        "1.2.840.10008.5.1.4.1.1.88.11",
        "1.2.840.10008.5.1.4.1.1.104.1",
    ]


def test_a_study_without_reports_costs_no_query_and_one_with_reports_one(organisation: Any) -> None:
    without, with_report = make_study(organisation, ANNA), make_study(organisation, ANNA)
    add(with_report, sr_dataset(ANNA, with_report.study_instance_uid, finding="a", conclusion="b"))
    without, with_report = Study.objects.get(pk=without.pk), Study.objects.get(pk=with_report.pk)
    with CaptureQueriesContext(connection) as queries:
        assert study_report_instances(without) == []
    assert len(queries) == 0
    with CaptureQueriesContext(connection) as queries:
        assert len(study_report_instances(with_report)) == 1
    assert len(queries) == 1
    # The series holding reports, by the series' study: not the organisation's instances, and not sorted there.
    where = queries[0]["sql"].split(" WHERE ", 1)[1]
    assert "organisation_id" not in where
    assert "number_of_reports" in where
    assert "ORDER BY" not in where
