"""What the recipient's login counts: login attempts (for lockouts and throttling) and SMS codes.

None of these rows holds a code in clear, a date of birth or a phone number.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from radshare.shares.models import Share


class AccessAttempt(models.Model):
    """One try at a step of the login; counted per share (lockouts) and per client address (docs/security.md A5)."""

    class Step(models.TextChoices):
        CODE = "code", "share code"
        BIRTH_DATE = "birth_date", "date of birth"
        SMS_CODE = "sms_code", "SMS code"

    share = models.ForeignKey(Share, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    step = models.CharField(max_length=12, choices=Step.choices)
    success = models.BooleanField()
    client_address = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["client_address", "step", "created_at"], name="attempt_client"),
            models.Index(fields=["share", "step", "created_at"], name="attempt_share"),
        ]

    def __str__(self) -> str:
        return f"{self.step} {'ok' if self.success else 'wrong'}"


class OneTimeCode(models.Model):
    """An SMS code: hashed, bound to the share and to the browser session that asked for it (A4)."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="+")
    session_hash = models.CharField(max_length=64)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["share", "created_at"], name="otp_share_created")]

    def __str__(self) -> str:
        return f"SMS code {self.pk} of share {self.share_id}"
