"""The notification outbox (docs/security.md R3): a row per message, written in the transaction that causes it.

A task delivers each row at least once; the row's Message-ID is stable across attempts so a mail system can drop a
duplicate. Nothing personal is stored here: the address is looked up when the message is sent (the share's e-mail
and phone are wiped when it ends), and the one secret an SMS carries is kept encrypted until it is sent or dropped.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from radshare.organisations.models import Organisation, Sender
from radshare.shares.models import Share


class Notification(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", _("e-mail")
        SMS = "sms", _("SMS")

    class Kind(models.TextChoices):
        SHARE_LINK = "share_link", _("link to the recipient")
        SMS_CODE = "sms_code", _("SMS code to the recipient")
        OPENED = "opened", _("share opened (to the sender)")
        LOCKED = "locked", _("share locked (to the sender)")
        LOGIN_LOCKED = "login_locked", _("login blocked (to the sender)")
        REVOKED = "revoked", _("share revoked after a correction (to the sender)")
        EMAIL_CHANGED = "email_changed", _("address changed (to the sender's old address)")

    class State(models.TextChoices):
        PENDING = "pending", _("waiting to be sent")
        SENDING = "sending", _("being sent")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        DROPPED = "dropped", _("not sent")

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    share = models.ForeignKey(Share, on_delete=models.CASCADE, null=True, related_name="notifications")
    to_sender = models.ForeignKey(Sender, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING, db_index=True)
    secret = models.TextField(blank=True)  # encrypted; wiped once sent or dropped
    # The audit entry a message reports (a login lock): where from and until when are read from it when sent.
    audit_event = models.UUIDField(null=True, blank=True)
    message_id = models.CharField(max_length=200, unique=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=200, blank=True)  # short, English, no personal data
    created_at = models.DateTimeField(default=timezone.now)
    not_after = models.DateTimeField(null=True, blank=True)  # dropped rather than sent later (A4)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} ({self.state})"
