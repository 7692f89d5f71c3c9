from django.apps import AppConfig


class OrganisationsConfig(AppConfig):
    name = "radshare.organisations"
    label = "organisations"
    verbose_name = "Organisations"

    def ready(self) -> None:
        from radshare.organisations import signals  # noqa: F401 - connects the auth audit receivers
