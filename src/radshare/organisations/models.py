"""Organisations, their staff (senders and organisation admins) and the PACS nodes that may send to them."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    validate_ipv46_address,
)
from django.db import models
from django.utils.translation import gettext_lazy as _

from radshare.core import crypto

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    _("Use 1-50 lowercase letters, digits and dashes, not starting or ending with a dash."),
)
ae_title_validator = RegexValidator(
    r"^[\x20-\x5b\x5d-\x7e]{1,16}$", _("An AE title is 1-16 printable ASCII characters without backslash.")
)


class Organisation(models.Model):
    """A participating hospital or clinic; everything a sender sees is scoped to one."""

    class OnwardSharing(models.TextChoices):
        """Whether a recipient may pass a share on to a care provider (docs/architecture.md "Onward shares")."""

        OFF = "off", _("off")
        PATIENTS = "patients", _("patients only")

    slug = models.SlugField(_("slug"), max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(_("name"), max_length=200)
    # Where recipients are pointed with questions (at least one is shown on every recipient page).
    contact_phone = models.CharField(_("phone for questions"), max_length=40, blank=True)
    contact_email = models.EmailField(_("e-mail for questions"), blank=True)
    contact_url = models.URLField(_("web page for questions"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    # Every sender must pass a second factor (TOTP) after the password (docs/security.md A9). On unless the
    # organisation was made in demo mode; operators (superusers) always need one, whatever this says.
    require_two_factor = models.BooleanField(_("require two-factor authentication"), default=True)
    onward_sharing = models.CharField(
        _("onward sharing"),
        max_length=8,
        choices=OnwardSharing.choices,
        default=OnwardSharing.OFF,
        help_text=_("Whether a patient may pass their share on to a care provider."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")

    def __str__(self) -> str:
        return self.name


class Sender(AbstractUser):
    """A member of staff. ``organisation`` is empty only for operators (superusers of the installation)."""

    class Role(models.TextChoices):
        SENDER = "sender", _("sender")
        ADMIN = "admin", _("organisation admin")

    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="senders",
        verbose_name=_("organisation"),
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.SENDER)
    # A log administrator reads the organisation's audit trail (NEN 7513), as an organisation admin may.
    is_log_admin = models.BooleanField(_("log administrator"), default=False)

    class Meta:
        verbose_name = _("sender")
        verbose_name_plural = _("senders")

    @property
    def is_org_admin(self) -> bool:
        return self.organisation_id is not None and self.role == self.Role.ADMIN

    @property
    def may_read_audit(self) -> bool:
        """Organisation admins and log administrators read their organisation's audit trail."""
        return self.organisation_id is not None and (self.role == self.Role.ADMIN or self.is_log_admin)


class PacsNode(models.Model):
    """A DICOM peer of one organisation. Its calling AE title (and host, if given) admits it to the SCP."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="pacs_nodes")
    ae_title = models.CharField(_("AE title"), max_length=16, validators=[ae_title_validator])
    host = models.CharField(
        _("host"),
        max_length=45,
        blank=True,
        validators=[validate_ipv46_address],
        help_text=_("IP address the node connects from; empty accepts any address."),
    )
    port = models.PositiveIntegerField(
        _("port"), null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    description = models.CharField(_("description"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Query/retrieve (docs/requirements.md S1.2): by DIMSE (host + port: C-FIND, then C-MOVE to radshare's AE
    # or C-GET) and/or by DICOMweb (QIDO-RS, WADO-RS). A node with a port or a DICOMweb URL is searched
    # unless ``queried`` is off.
    queried = models.BooleanField(_("search this node"), default=True)
    retrieve = models.CharField(
        _("retrieve by"), max_length=4, choices=[("move", "C-MOVE"), ("get", "C-GET")], default="move"
    )
    dicomweb_url = models.URLField(_("DICOMweb base URL"), blank=True)
    dicomweb_auth = models.CharField(
        _("DICOMweb authentication"),
        max_length=6,
        choices=[("none", _("none")), ("basic", _("basic")), ("bearer", _("bearer token"))],
        default="none",
    )
    dicomweb_username = models.CharField(_("DICOMweb user name"), max_length=150, blank=True)
    dicomweb_secret = models.TextField(blank=True)  # password or token, encrypted (core.crypto)

    SECRET_PURPOSE = "pacs-dicomweb-secret"  # noqa: S105 - names a key derivation, holds no secret

    class Meta:
        ordering = ["organisation", "ae_title"]
        constraints = [models.UniqueConstraint(fields=["ae_title", "host"], name="pacsnode_unique_ae_host")]
        verbose_name = _("PACS node")
        verbose_name_plural = _("PACS nodes")

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host or '*'}"

    @property
    def dimse_queryable(self) -> bool:
        return bool(self.host and self.port)

    @property
    def searchable(self) -> bool:
        return self.is_active and self.queried and (self.dimse_queryable or bool(self.dicomweb_url))

    def set_dicomweb_secret(self, secret: str) -> None:
        self.dicomweb_secret = crypto.encrypt(self.SECRET_PURPOSE, secret) if secret else ""

    def get_dicomweb_secret(self) -> str:
        return crypto.decrypt(self.SECRET_PURPOSE, self.dicomweb_secret) or ""


class ApiKey(models.Model):
    """An organisation's key for the REST API (docs/security.md A11).

    Only ``prefix`` (shown, to recognise a key) and a keyed hash of the whole key are stored; the key itself is
    shown once, when it is made.
    """

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("organisation")
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    key_hash = models.CharField(max_length=100)  # tagged with its scheme (organisations.services)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.ForeignKey(
        Sender,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        Sender,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("revoked by"),
    )

    class Meta:
        ordering = ["organisation", "-created_at", "-id"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.prefix} ({self.name})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class RecoveryCode(models.Model):
    """One of a sender's one-time recovery codes for the second login step (docs/security.md A9).

    Only a keyed hash is stored (``organisations.two_factor``); the code itself is shown once, when it is made. A
    used code keeps its row with ``used_at`` set, so that it cannot work again.
    """

    sender = models.ForeignKey(Sender, on_delete=models.CASCADE, related_name="recovery_codes")
    code_hash = models.CharField(max_length=100)  # "<key id>$<HMAC-SHA256 hex>"
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["sender", "code_hash"], name="recoverycode_sender_hash")]
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")

    def __str__(self) -> str:
        return f"recovery code {self.pk} of {self.sender_id}"
