from django.apps import AppConfig


class ViewerConfig(AppConfig):
    name = "radshare.viewer"
    label = "viewer"
    verbose_name = "Viewer"
