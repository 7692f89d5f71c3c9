from django.apps import AppConfig


class SharesConfig(AppConfig):
    name = "radshare.shares"
    label = "shares"
    verbose_name = "Shares"

    def ready(self) -> None:
        from radshare.core.workers import worker_died
        from radshare.imaging.services import renders_recorded
        from radshare.shares import retrieve, services

        worker_died.connect(
            retrieve.release_retrieves_of, dispatch_uid="radshare.shares.release_retrieves_of"
        )
        renders_recorded.connect(services.prepare_waiting, dispatch_uid="radshare.shares.prepare_waiting")
