"""A share: one patient's studies, made available to one recipient through a code, for a limited time.

Status is one field (docs/architecture.md "Share status"); a lock lives beside it. When a share ends (expired
or revoked) its code, encrypted code, e-mail address, phone number and the name on its letter are wiped and the row
stays as a tombstone.
"""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from radshare.core import crypto
from radshare.organisations.models import ApiKey, Organisation, Sender
from radshare.shares.phones import mask_email, mask_phone
from radshare.studies.models import Patient, Study


class ShareQuerySet(models.QuerySet["Share"]):
    def live(self, now: dt.datetime | None = None) -> ShareQuerySet:
        """Shares not ended (expired or revoked) and not past their end: ``Share.is_live()`` as a query."""
        return self.exclude(status__in=Share.ENDED).filter(expires_at__gt=now or timezone.now())


class Share(models.Model):
    """The rules of a share's life live here (docs/architecture.md "Share status"): callers ask, never re-derive."""

    class Status(models.TextChoices):
        RETRIEVING = "retrieving", _("retrieving")
        PREPARING = "preparing", _("preparing")
        READY = "ready", _("ready")
        NOTIFIED = "notified", _("notified")
        OPENED = "opened", _("opened")
        DOWNLOADED = "downloaded", _("downloaded")
        FAILED = "failed", _("failed")
        EXPIRED = "expired", _("expired")
        REVOKED = "revoked", _("revoked")

    class RecipientType(models.TextChoices):
        PATIENT = "patient", _("patient")
        CARE_PROVIDER = "care_provider", _("care provider")

    class Delivery(models.TextChoices):
        EMAIL = "email", _("e-mail")
        LETTER = "letter", _("letter")
        URL = "url", _("show link")

    class Language(models.TextChoices):
        NL = "nl", _("Dutch")
        EN = "en", _("English")

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="shares")
    patient = models.ForeignKey(Patient, on_delete=models.SET_NULL, null=True, related_name="shares")
    created_by = models.ForeignKey(Sender, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    recipient_type = models.CharField(max_length=16, choices=RecipientType.choices)
    delivery = models.CharField(max_length=8, choices=Delivery.choices, default=Delivery.EMAIL)
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.NL)
    email = models.EmailField(blank=True)  # wiped when the share ends
    # The addressee printed on the letter, as the sender typed it: encrypted (NAME_PURPOSE); wiped when it ends.
    recipient_name_encrypted = models.TextField(blank=True)
    phone = models.CharField(max_length=20, blank=True)  # E.164; wiped when the share ends
    code_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)  # None once ended
    code_encrypted = models.TextField(blank=True)  # for re-sending; wiped when the share ends
    consent_confirmed = models.BooleanField(default=False)
    confirmed_birth_date = models.DateField(
        null=True, blank=True
    )  # when the index had none (docs/architecture.md)
    reason = models.CharField(max_length=500, blank=True)  # the sender's note, kept in the audit trail too
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PREPARING, db_index=True)
    status_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(db_index=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(Sender, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    ended_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    # Recipient lockouts (docs/architecture.md "Lockouts"): wrong dates since the last lock, and locks so far.
    birth_date_failures = models.PositiveSmallIntegerField(default=0)
    birth_date_locks = models.PositiveSmallIntegerField(default=0)
    sms_code_failures = models.PositiveSmallIntegerField(
        default=0
    )  # wrong SMS codes, all codes together (A4)
    notify_on_open = models.BooleanField(default=False)  # B6.7: e-mail the sender at the first opening
    opened_at = models.DateTimeField(null=True, blank=True)
    # Onward sharing (docs/architecture.md "Onward shares"): the share the patient passed on, and their name as they
    # typed it for the provider's e-mail (encrypted, NAME_PURPOSE; wiped when the share ends). Shares are never
    # deleted (tombstones), so CASCADE only matters should an original row ever go: its onward shares go with it.
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="onward_shares"
    )
    passed_on_by_encrypted = models.TextField(blank=True)

    ENDED = (Status.EXPIRED, Status.REVOKED)
    NAME_PURPOSE = "recipient-name"  # the key derivation of ``recipient_name_encrypted`` (core.crypto)
    NAME_MAX_LENGTH = 200
    # Ready for its recipient: the link opens, the e-mail may go out, a re-send makes sense.
    OPENABLE = (Status.READY, Status.NOTIFIED, Status.OPENED, Status.DOWNLOADED)
    # ``locked_until`` at HELD: locked until the sender unlocks (docs/architecture.md "Lockouts").
    HELD = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    # Onward shares per share, ended ones included (docs/architecture.md "Onward shares").
    ONWARD_MAX = 3

    objects = ShareQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organisation", "-created_at"], name="share_org_created")]

    def __str__(self) -> str:
        return f"share {self.pk} ({self.status})"

    @property
    def has_ended(self) -> bool:
        return self.status in self.ENDED

    def is_live(self, now: dt.datetime | None = None) -> bool:
        """Not ended and not past its end (requests check this themselves: the expiry job may not have run yet)."""
        return not self.has_ended and self.expires_at > (now or timezone.now())

    def is_openable(self, now: dt.datetime | None = None) -> bool:
        """Live and ready: its recipient may log in."""
        return self.is_live(now) and self.status in self.OPENABLE

    def is_locked(self, now: dt.datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or timezone.now())

    @property
    def recipient_name(self) -> str:
        """The name on the letter, decrypted; empty when none was given, the share ended or no key reads it."""
        return crypto.decrypt(self.NAME_PURPOSE, self.recipient_name_encrypted) or ""

    @classmethod
    def encrypt_name(cls, name: str) -> str:
        """What ``recipient_name_encrypted`` holds for ``name`` (spaces tidied; nothing for no name)."""
        name = " ".join(name.split())[: cls.NAME_MAX_LENGTH]
        return crypto.encrypt(cls.NAME_PURPOSE, name) if name else ""

    @property
    def is_onward(self) -> bool:
        """Passed on by the patient of another share (``parent``)."""
        return self.parent_id is not None

    @property
    def passed_on_by(self) -> str:
        """The patient's name as they typed it when passing the share on; empty once the share ended."""
        return crypto.decrypt(self.NAME_PURPOSE, self.passed_on_by_encrypted) or ""

    @property
    def masked_email(self) -> str:
        """The recipient's e-mail address, masked for lists (``a***@example.nl``); empty once the share ended."""
        return mask_email(self.email)

    @property
    def masked_phone(self) -> str:
        """The phone for the SMS code, its last 2 digits only (``••••••••••78``); empty once the share ended."""
        return mask_phone(self.phone) if self.phone else ""

    @property
    def is_held(self) -> bool:
        """Locked until the sender unlocks (no end time)."""
        return self.locked_until is not None and self.locked_until >= self.HELD


class ShareStudy(models.Model):
    """A study in a share; UID and counts are copied so the tombstone still says what was shared."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="share_studies")
    study = models.ForeignKey(Study, on_delete=models.SET_NULL, null=True, related_name="share_studies")
    study_instance_uid = models.CharField(max_length=64)
    number_of_instances = models.PositiveIntegerField(default=0)
    size = models.BigIntegerField(default=0)
    # A study still in the PACS: retrieved from this node during preparation (status "retrieving").
    pacs_node = models.ForeignKey(
        "organisations.PacsNode", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    retrieve_expected = models.PositiveIntegerField(null=True, blank=True)
    retrieve_received = models.PositiveIntegerField(default=0)
    retrieve_claimed_at = models.DateTimeField(null=True, blank=True)  # one retriever at a time (R4)
    retrieve_claimed_by = models.CharField(max_length=64, blank=True, default="")  # its worker (core.Worker)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["share", "study_instance_uid"], name="sharestudy_unique")
        ]

    def __str__(self) -> str:
        return f"study {self.study_id} in share {self.share_id}"
