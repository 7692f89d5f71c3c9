"""``Config``: the validated settings as one frozen dataclass with a typed field per setting.

mypy checks every ``settings.RADSHARE.<name>`` against these fields; a test keeps them in step with ``SETTINGS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from radshare.core.config.masking import masked
from radshare.core.config.table import PREFIX, SETTINGS


@dataclass(frozen=True, kw_only=True)
class Config:
    """The validated settings, one typed field per entry of ``SETTINGS`` (same names, lower case, same order).

    ``load()`` makes it; ``settings.RADSHARE`` holds it. Frozen: a test changes it with ``dataclasses.replace``.
    """

    data_dir: str
    database_url: str
    database_pool_size: int
    secret_key: str
    old_secret_keys: tuple[str, ...]
    demo: bool
    role: str
    base_url: str
    allowed_hosts: tuple[str, ...]
    http_bind: str
    http_port: int
    web_workers: int
    trusted_proxies: tuple[str, ...]
    metrics_allow: tuple[str, ...]
    dicom_ae_title: str
    dicom_bind: str
    dicom_port: int
    dicom_max_associations: int
    dicom_accept_any: bool
    ingest_journal: bool
    email_url: str
    email_from: str
    sms_url: str
    sms_sender: str
    sms_body: str
    storage_url: str
    share_validity_days: int
    downloads_per_day: int
    download_on_mobile: bool
    render_processes: int
    upload_max_mb: int
    bsn_issuer: str
    recipient_dicomweb: bool
    unshared_retention_days: int
    audit_retention_years: int
    log_level: str
    log_format: str
    # Not a setting: where ``secret_key`` came from (the environment or a key file), for ``radshare config``.
    secret_key_source: str

    def public_items(self) -> list[tuple[str, str]]:
        """Effective settings for display, secrets masked."""
        rows = []
        for setting in SETTINGS:
            value = getattr(self, setting.name.lower())
            if setting.name == "OLD_SECRET_KEYS":
                shown = f"({len(value)} set)" if value else "(none)"
            elif setting.secret:
                shown = f"(set, from {self.secret_key_source})"
            elif isinstance(value, bool):
                shown = "true" if value else "false"
            elif isinstance(value, tuple):
                shown = ",".join(value) or "(none)"
            else:
                shown = masked(setting.name, str(value))
            rows.append((PREFIX + setting.name, shown))
        return rows
