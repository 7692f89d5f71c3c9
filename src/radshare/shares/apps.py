from django.apps import AppConfig


class SharesConfig(AppConfig):
    name = "radshare.shares"
    label = "shares"
    verbose_name = "Shares"
