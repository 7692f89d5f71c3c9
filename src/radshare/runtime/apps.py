from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    """The processes: ``serve``, ``web``, ``worker`` (with the periodic scheduler), ``demo`` and ``config``
    (docs/architecture.md "Processes"). The top layer: it may use every app, no app uses it."""

    name = "radshare.runtime"
    label = "runtime"
    verbose_name = "Runtime"
