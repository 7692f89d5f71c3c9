from django.apps import AppConfig


class DownloadsConfig(AppConfig):
    name = "radshare.downloads"
    label = "downloads"
    verbose_name = "Downloads"

    def ready(self) -> None:
        from radshare.downloads import receivers
        from radshare.shares import signals as share_signals
        from radshare.studies import signals as study_signals

        share_signals.share_ready.connect(
            receivers.share_ready, dispatch_uid="radshare.downloads.share_ready"
        )
        share_signals.share_ended.connect(
            receivers.share_ended, dispatch_uid="radshare.downloads.share_ended"
        )
        study_signals.study_destroying.connect(
            receivers.study_destroying, dispatch_uid="radshare.downloads.destroy"
        )
