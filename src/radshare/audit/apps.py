from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "radshare.audit"
    label = "audit"
    verbose_name = "Audit"
