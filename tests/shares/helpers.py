"""Studies and shares for share tests, made through the real ingest path and the real share service."""

from __future__ import annotations

import datetime as dt
from typing import Any

from radshare.shares.services import NewShare, create_share
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode

ANNA = FakePatient("S1", "Jansen^Anna", dt.date(1968, 3, 14), bsn="999999990")
PIET = FakePatient("S2", "Bakker^Piet", dt.date(1950, 1, 2))
NO_BIRTH = FakePatient("S3", "Doe^Jan", dt.date(1900, 1, 1))


def make_study(organisation: Any, patient: FakePatient, kind: str = "ct") -> Study:
    """A two-image CT or a one-image CR of ``patient``, stored as a PACS would send it."""
    datasets = ct_series(patient, count=2, size=32) if kind == "ct" else [cr_image(patient)]
    for ds in datasets:
        result = store_instance(organisation, encode(ds), source="upload")
    return Study.objects.get(organisation=organisation, study_instance_uid=result.study_instance_uid)


def make_share(organisation: Any, studies: list[Study], **kwargs: Any) -> NewShare:
    defaults: dict[str, Any] = {
        "recipient_type": "patient",
        "phone": "0612345678",
        "email": "anna@example.org",
    }
    return create_share(organisation, [s.pk for s in studies], **{**defaults, **kwargs})
