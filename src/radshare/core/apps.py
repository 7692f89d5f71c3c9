from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoreConfig(AppConfig):
    default = True
    name = "radshare.core"
    label = "core"
    verbose_name = "Core"


class OperatorAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "radshare.core.admin.OperatorAdminSite"
