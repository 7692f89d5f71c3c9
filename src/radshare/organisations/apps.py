from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class OrganisationsConfig(AppConfig):
    default = True
    name = "radshare.organisations"
    label = "organisations"
    verbose_name = "Organisations"

    def ready(self) -> None:
        from radshare.organisations import signals  # noqa: F401 - connects the auth audit receivers


class OperatorAdminConfig(admin_apps.AdminConfig):
    """Django's admin, for operators only (``admin_site.OperatorAdminSite``)."""

    default = False
    default_site = "radshare.organisations.admin_site.OperatorAdminSite"
