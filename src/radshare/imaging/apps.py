from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "radshare.imaging"
    label = "imaging"
    verbose_name = "Imaging"
