"""The audit trail (NEN 7513): one append-only row per meaningful access to patient data or auth decision.

Rows reference patients and studies by internal id and UID, never by name, so they can outlive the images
(docs/security.md A17). Rows cannot be changed or deleted through the ORM; the only deletion is pruning past the
retention period (``audit.chain``).

Each row is linked into its chain by hash (docs/security.md A17): one chain per organisation, and one for the
entries of no organisation (the installation's). ``AuditChainHead`` holds each chain's newest link and is the row
a writer locks, so that two writers can never both take the same place (``seq``) in a chain. ``AuditCheckpoint``
is a signed snapshot of a chain's head, from which the chain stays verifiable after older entries are pruned.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.db import models
from django.utils.translation import gettext_lazy as _

# The link before a chain's first entry.
GENESIS = "0" * 64


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
    # The hash chain (audit.chain): the chain this entry belongs to, its place in it, the hash of the entry before
    # (or of the checkpoint the chain was pruned to) and its own hash (SHA-256 of its canonical form).
    chain = models.CharField(max_length=32, editable=False)
    seq = models.BigIntegerField(editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    entry_hash = models.CharField(max_length=64, editable=False)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["organisation_id", "-timestamp"], name="audit_org_time")]
        # One entry per place in a chain: a chain cannot fork.
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq")]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("audit entries are append-only")
        if not self.entry_hash:
            raise AppendOnlyError("audit entries are written by audit.services.record, which links them")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit entries are append-only")


class AuditChainHead(models.Model):
    """The newest link of one chain. A writer locks this row (``select_for_update``) to append; verification
    compares it with the newest entry, so entries removed from the end are noticed too."""

    chain = models.CharField(max_length=32, primary_key=True)
    seq = models.BigIntegerField(default=0)
    entry_hash = models.CharField(max_length=64, default=GENESIS)

    def __str__(self) -> str:
        return f"{self.chain} #{self.seq}"


class AuditCheckpoint(models.Model):
    """A chain's head at one moment, signed (HMAC-SHA256) with the audit key of docs/security.md A28 and kept
    with that key's id. Entries up to a checkpoint can be rewritten only by someone who has the key as well."""

    chain = models.CharField(max_length=32)
    seq = models.BigIntegerField()
    entry_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_checkpoint_chain_seq")]

    def __str__(self) -> str:
        return f"{self.chain} #{self.seq} {self.created_at:%Y-%m-%d %H:%M:%S}"
