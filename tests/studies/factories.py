"""Studies for portal tests, stored through the real ingest path (``store_instance``)."""

from __future__ import annotations

import datetime as dt

from pydicom.uid import generate_uid
from pynetdicom.sop_class import BasicTextSRStorage  # type: ignore[attr-defined]

from radshare.organisations.models import Organisation
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode

PIXEL_KEYWORDS = (
    "PixelData",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "WindowCenter",
    "WindowWidth",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceThickness",
)


def make_study(
    organisation: Organisation,
    patient: FakePatient,
    *,
    modalities: tuple[str, ...] = ("CT",),
    study_date: dt.date,
    accession: str = "",
    description: str = "",
    images: int = 1,
) -> Study:
    """One study with one series per modality and ``images`` instances per series (SR: text, no pixels)."""
    study_uid = generate_uid()
    for modality in modalities:
        for ds in ct_series(
            patient,
            count=images,
            size=8,
            study_uid=study_uid,
            description=description,
            study_date=study_date,
            accession=accession,
        ):
            ds.Modality = modality
            if modality == "SR":
                ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
                for keyword in PIXEL_KEYWORDS:
                    delattr(ds, keyword)
            store_instance(organisation, encode(ds), source="demo")
    return Study.objects.get(organisation=organisation, study_instance_uid=study_uid)
