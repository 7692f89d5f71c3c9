"""Request and response shapes of the REST API (they make the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from ninja import Field, Schema
from pydantic import StringConstraints

DicomLO = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class Error(Schema):
    """Every error: a stable machine-readable ``code`` and a human-readable ``message`` (English)."""

    code: str = Field(examples=["unauthorized"])
    message: str


class StudyQuery(Schema):
    patient_id: DicomLO = Field(description="Patient ID (0010,0020) as the PACS knows it; required.")
    issuer: DicomLO | None = Field(
        default=None, description="Issuer of Patient ID (0010,0021); when given, only that issuer's patient."
    )


class PatientOut(Schema):
    patient_id: str
    issuer: str = Field(description="Issuer of Patient ID; empty when the images carried none.")
    name: str = Field(description="Patient's Name as in the images (DICOM PN, e.g. 'Jansen^Anna').")
    birth_date: dt.date | None


class StudyOut(Schema):
    study_instance_uid: str
    study_date: dt.date | None
    description: str
    accession_number: str
    modalities: list[str]
    number_of_series: int
    number_of_instances: int
    size: int = Field(description="Bytes of the stored DICOM files.")
    patient: PatientOut
