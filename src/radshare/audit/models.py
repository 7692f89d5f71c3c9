"""The audit trail (NEN 7513): one append-only row per meaningful access to patient data or auth decision.

Rows reference patients and studies by internal id and UID, never by name, so they can outlive the images
(docs/security.md A17). Rows cannot be changed or deleted through the ORM.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.db import models
from django.utils.translation import gettext_lazy as _


class AppendOnlyError(Exception):
    """Audit entries are never changed or deleted."""


class AuditQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit entries are append-only")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("audit entries are append-only")


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        SUCCESS = "success", _("success")
        FAILURE = "failure", _("failure")
        DENIED = "denied", _("denied")

    class ActorType(models.TextChoices):
        SENDER = "sender", _("sender")
        OPERATOR = "operator", _("operator")
        API_KEY = "api_key", _("API key")
        RECIPIENT = "recipient", _("recipient")
        DICOM_NODE = "dicom_node", _("DICOM node")
        SYSTEM = "system", _("system")
        ANONYMOUS = "anonymous", _("anonymous")

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    timestamp = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    actor_type = models.CharField(max_length=12, choices=ActorType.choices)
    # Plain ids, not foreign keys: the trail must survive the deletion of what it mentions.
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)  # username, AE title, "share 123"
    on_behalf_of_id = models.BigIntegerField(null=True, blank=True)
    organisation_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    patient_ref = models.BigIntegerField(null=True, blank=True, db_index=True)
    study_uids = models.JSONField(default=list, blank=True)
    client_address = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["organisation_id", "-timestamp"], name="audit_org_time")]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit entries are append-only")
