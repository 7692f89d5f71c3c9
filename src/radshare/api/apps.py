from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "radshare.api"
    label = "api"
    verbose_name = "REST API"
