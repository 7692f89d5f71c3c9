from django.apps import AppConfig


class TrailConfig(AppConfig):
    """The organisation's audit trail in the portal, with its exports (docs/security.md A19). A top layer beside
    the API: it reads the trail (``audit.queries``) and words its ids with the index and the accounts."""

    name = "radshare.trail"
    label = "trail"
    verbose_name = "Audit trail"
