from django.apps import AppConfig


class PacsConfig(AppConfig):
    """The organisation's PACS: its nodes' portal pages, query and retrieve (docs/architecture.md "PACS")."""

    name = "radshare.pacs"
    label = "pacs"
    verbose_name = "PACS"
