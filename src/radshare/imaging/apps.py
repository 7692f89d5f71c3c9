from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "radshare.imaging"
    label = "imaging"
    verbose_name = "Imaging"

    def ready(self) -> None:
        from radshare.core.workers import worker_died
        from radshare.imaging import services
        from radshare.studies import signals

        worker_died.connect(services.release_claims_of, dispatch_uid="radshare.imaging.release_claims_of")
        signals.instances_stored.connect(services.add_pending_render, dispatch_uid="radshare.imaging.pending")
        signals.study_destroying.connect(
            services.delete_render_files, dispatch_uid="radshare.imaging.destroy"
        )
        signals.instances_arrived.connect(
            services.on_instances_arrived, dispatch_uid="radshare.imaging.arrived"
        )
