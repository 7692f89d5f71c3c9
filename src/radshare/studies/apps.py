from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "radshare.studies"
    label = "studies"
    verbose_name = "Studies"

    def ready(self) -> None:
        import pydicom.config

        # Tolerant on what comes in: never refuse or warn about a malformed value while reading. pydicom's
        # validation warnings quote the offending value, which may be a name or a birth date (docs/security.md A21).
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
