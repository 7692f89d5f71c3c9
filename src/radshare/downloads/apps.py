from django.apps import AppConfig


class DownloadsConfig(AppConfig):
    name = "radshare.downloads"
    label = "downloads"
    verbose_name = "Downloads"
