from django.apps import AppConfig


class RecipientsConfig(AppConfig):
    name = "radshare.recipients"
    label = "recipients"
    verbose_name = "Recipients"
