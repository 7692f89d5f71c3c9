from django.apps import AppConfig


class CoreConfig(AppConfig):
    default = True
    name = "radshare.core"
    label = "core"
    verbose_name = "Core"
