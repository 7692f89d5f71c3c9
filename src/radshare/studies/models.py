"""The DICOM index: Patient -> Study -> Series -> Instance, per organisation.

Field names are DICOM keywords in snake_case. Counts and sizes are kept on Study and Series, updated in the
same transaction as each new Instance, so lists never aggregate over instances.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from radshare.organisations.models import Organisation, PacsNode
from radshare.studies.templatetags.dicom import person_name


class Patient(models.Model):
    """One patient of one organisation, keyed by (organisation, issuer of patient id, patient id)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="patients")
    issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    patient_id = models.CharField(max_length=64)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_birth_date = models.DateField(null=True, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    # docs/security.md A23: of the BSN only the last 3 digits (for the e-mail) and a keyed hash (for search).
    bsn_last3 = models.CharField(max_length=3, blank=True)
    bsn_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "issuer_of_patient_id", "patient_id"], name="patient_unique_key"
            ),
        ]
        indexes = [models.Index(fields=["organisation", "patient_name"], name="patient_org_name")]

    def __str__(self) -> str:
        return f"patient {self.pk}"

    @property
    def display_name(self) -> str:
        return person_name(self.patient_name)


class StudyQuerySet(models.QuerySet["Study"]):
    def present(self) -> StudyQuerySet:
        """Studies not being destroyed: the only ones anybody may list, open or share."""
        return self.filter(destroy_started_at__isnull=True)


class Study(models.Model):
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="studies")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_instance_uid = models.CharField(max_length=64)
    study_date = models.DateField(null=True, blank=True)
    study_time = models.CharField(max_length=16, blank=True)
    study_description = models.CharField(max_length=200, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    referring_physician_name = models.CharField(max_length=324, blank=True)
    modalities_in_study = models.CharField(max_length=100, blank=True)  # "CT\\SR", sorted, deduplicated
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    number_of_reports = models.PositiveIntegerField(default=0)  # of the instances: SR documents and PDFs
    size = models.BigIntegerField(default=0)  # bytes of the stored DICOM files
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The retention of a study no live share holds counts from here (docs/architecture.md "Destruction").
    last_instance_at = models.DateTimeField(default=timezone.now)
    # Set when destruction starts: from then on the study serves nobody, and a rerun finishes the job.
    destroy_started_at = models.DateTimeField(null=True, blank=True)

    objects = StudyQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "study_instance_uid"], name="study_unique_uid"),
        ]
        indexes = [
            models.Index(fields=["organisation", "-study_date"], name="study_org_date"),
            models.Index(fields=["organisation", "accession_number"], name="study_org_accession"),
            models.Index(fields=["last_instance_at"], name="study_last_instance"),
        ]
        verbose_name_plural = _("studies")

    def __str__(self) -> str:
        return f"study {self.pk}"

    @property
    def modalities(self) -> list[str]:
        return [m for m in self.modalities_in_study.split("\\") if m]

    @property
    def number_of_images(self) -> int:
        """The instances that are not reports (docs/requirements.md S4.12: a report is counted apart)."""
        return self.number_of_instances - self.number_of_reports


class Series(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=200, blank=True)
    body_part_examined = models.CharField(max_length=64, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    number_of_reports = models.PositiveIntegerField(default=0)  # of the instances: SR documents and PDFs
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "series_instance_uid"], name="series_unique_uid"),
        ]
        ordering = ["series_number", "id"]
        verbose_name_plural = _("series")

    def __str__(self) -> str:
        return f"series {self.pk}"

    @property
    def number_of_images(self) -> int:
        """The instances that are not reports, as ``Study.number_of_images``."""
        return self.number_of_instances - self.number_of_reports


class Instance(models.Model):
    class Source(models.TextChoices):
        SCP = "scp", _("DICOM C-STORE")
        UPLOAD = "upload", _("upload")
        DEMO = "demo", _("demo data")
        PACS = "pacs", _("retrieved from a PACS")

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_class_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    number_of_frames = models.PositiveIntegerField(default=1)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # The file's CRC-32 (as a ZIP member records it), computed once at ingest (docs/architecture.md "Downloads");
    # NULL for instances stored before it was kept: the download computes it once and caches it with its layout.
    crc32 = models.BigIntegerField(null=True, blank=True)
    storage_key = models.CharField(max_length=200, unique=True)  # built from hashes only, never from input
    source = models.CharField(max_length=10, choices=Source.choices)
    source_node = models.ForeignKey(
        PacsNode, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    # Set by `radshare storage check --repair` when the stored file is missing or no longer what was received.
    broken_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "sop_instance_uid"], name="instance_unique_uid"),
        ]
        ordering = ["instance_number", "id"]

    def __str__(self) -> str:
        return f"instance {self.pk}"


class StudyConflict(models.Model):
    """A study sent again under another patient (IHE Patient Information Reconciliation): the instances are refused
    (0xA900), and an organisation admin may accept the correction or dismiss it (docs/architecture.md
    "Corrections from the PACS"). One open row per study and new patient; ``refused`` counts the instances."""

    class State(models.TextChoices):
        OPEN = "open", _("open")
        ACCEPTED = "accepted", _("accepted")
        DISMISSED = "dismissed", _("dismissed")

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="conflicts")
    old_patient_id = models.CharField(max_length=64)
    old_issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    new_patient_id = models.CharField(max_length=64)
    new_issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    # The new patient's attributes as the sender wrote them (Patient's field names), applied when accepted.
    new_patient = models.JSONField(default=dict)
    source_node = models.ForeignKey(
        PacsNode, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    refused = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        "organisations.Sender", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "new_issuer_of_patient_id", "new_patient_id"],
                condition=models.Q(state="open"),
                name="conflict_one_open",
            ),
        ]
        indexes = [models.Index(fields=["organisation", "state"], name="conflict_org_state")]

    def __str__(self) -> str:
        return f"conflict {self.pk} on study {self.study_id} ({self.state})"


class JournalCursor(models.Model):
    """How far the indexer has filed one ingest journal (``studies/indexer.py``), moved in the same transaction as
    what it filed, so that a restart goes on exactly where it stopped. ``associations``: what each association
    still open in that journal has come to so far (for its audit entry, written when its end record is filed)."""

    journal = models.CharField(max_length=32, unique=True)
    position = models.BigIntegerField(default=0)
    associations = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"journal {self.journal} at {self.position}"
