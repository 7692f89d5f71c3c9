"""Request and response shapes of the REST API (they make the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from ninja import Field, Schema
from pydantic import BaseModel, StringConstraints

# PostgreSQL cannot store a NUL character (a 500 there): no string the API takes may hold one (a 422).
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
DicomLO = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=NO_NUL)
]


class Error(Schema):
    """Every error: a stable machine-readable ``code`` and a human-readable ``message`` (English)."""

    code: str = Field(examples=["unauthorized"])
    message: str


class StudyQuery(Schema):
    patient_id: DicomLO = Field(description="Patient ID (0010,0020) as the PACS knows it; required.")
    issuer: DicomLO | None = Field(
        default=None, description="Issuer of Patient ID (0010,0021); when given, only that issuer's patient."
    )
    source: Literal["local", "pacs"] = Field(
        default="local",
        description="'local': studies held by radshare; 'pacs': studies found in the organisation's PACS nodes "
        "(C-FIND or QIDO-RS), to be shared by UID (they are retrieved while the share is prepared).",
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
    size: int = Field(description="Bytes of the stored DICOM files (0 for a study only in the PACS).")
    patient: PatientOut
    pacs_node: str | None = Field(
        default=None, description="AE title of the PACS it was found in (source=pacs)."
    )
    in_radshare: bool = Field(default=True, description="Whether radshare holds the study already.")


class In(BaseModel):
    """A request body (or part of one): a JSON object. Not ninja's Schema, which reads any value's attributes
    (ORM mode) and so would take a string, number or list for an object with all its defaults."""


class RecipientIn(In):
    type: Text = Field(description="'patient' or 'care_provider'.", examples=["patient"])
    phone: Text = Field(
        description="Mobile number for the SMS code; Dutch numbers need no +31.", examples=["0612345678"]
    )
    email: Text = Field(default="", description="Required for delivery 'email'.")


class ShareIn(In):
    patient_id: DicomLO
    issuer: DicomLO | None = None
    study_instance_uids: list[DicomLO] = Field(min_length=1, max_length=1000)
    recipient: RecipientIn
    delivery: Text = Field(default="email", description="'email', 'letter' or 'url' (show the link).")
    language: Text = Field(default="nl", description="'nl' or 'en': the language of e-mail and letter.")
    consent_confirmed: bool = Field(default=False, description="Required true for a care provider.")
    reason: Text = Field(default="", max_length=500)
    birth_date: dt.date | None = Field(
        default=None, description="Only to confirm the patient's birth date when the images lack a real one."
    )


class ShareCreatedOut(Schema):
    id: int
    status: str
    expires_at: dt.datetime
    url: str | None = Field(default=None, description="The link, for delivery 'url' only.")
    letter_url: str | None = Field(default=None, description="The letter PDF, for delivery 'letter' only.")
    warnings: list[str] = []


class NotificationOut(Schema):
    state: str = Field(description="'pending', 'sending', 'sent', 'failed' or 'dropped'.")
    attempts: int
    error: str = Field(description="Why the last attempt failed; empty when it did not.")
    sent_at: dt.datetime | None


class ShareOut(Schema):
    id: int
    status: str
    status_reason: str = Field(
        description="Why the share failed or waits, as a code: 'study_missing', 'preparation_timeout', "
        "'storage_unwritable', 'pacs_node_missing', or 'pacs:' and what went wrong with the PACS (e.g. "
        "'pacs:unreachable', 'pacs:no_service'); empty when there is nothing to say."
    )
    recipient_type: str
    delivery: str
    created_at: dt.datetime
    expires_at: dt.datetime
    ready_at: dt.datetime | None
    study_instance_uids: list[str]
    instances: int
    instances_prepared: int = Field(
        description="Instances whose renders are done (or known not to be images)."
    )
    instances_retrieved: int = Field(default=0, description="Instances received from the PACS so far.")
    instances_expected: int | None = Field(
        default=None,
        description="Instances the PACS said it would send (null: not known yet or nothing to fetch).",
    )
    locked: bool = Field(description="Locked after wrong dates of birth or SMS codes; unlock in the portal.")
    notification: NotificationOut | None = Field(
        default=None, description="The latest e-mail with the link (delivery 'email' only)."
    )


class ResendIn(In):
    email: Text = Field(default="", description="A corrected e-mail address; empty: the registered one.")


class ResendOut(Schema):
    id: int
    notification: NotificationOut
