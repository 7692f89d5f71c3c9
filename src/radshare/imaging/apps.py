from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "radshare.imaging"
    label = "imaging"
    verbose_name = "Imaging"

    def ready(self) -> None:
        from radshare.core.workers import worker_died
        from radshare.imaging import services

        worker_died.connect(services.release_claims_of, dispatch_uid="radshare.imaging.release_claims_of")
