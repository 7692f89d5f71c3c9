"""Storage of instances and renders behind one interface, chosen by ``RADSHARE_STORAGE_URL``.

``get_storage()`` is the door; ``layout`` names the keys; ``base.Storage`` is what every backend implements
(``filesystem``, and ``s3`` for object storage).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from radshare.core.storage.base import Data, ObjectStat, Storage, StoredObject, check_key
from radshare.core.storage.filesystem import FileSystemStorage
from radshare.core.storage.layout import (
    instance_folders,
    instance_key,
    layout_folder,
    layout_key,
    new_instance_name,
    render_folder,
    render_key,
    video_key,
)
from radshare.core.storage.s3 import S3Storage

__all__ = [
    "Data",
    "FileSystemStorage",
    "ObjectStat",
    "S3Storage",
    "Storage",
    "StoredObject",
    "check_key",
    "get_storage",
    "instance_folders",
    "instance_key",
    "layout_folder",
    "layout_key",
    "new_instance_name",
    "render_folder",
    "render_key",
    "storage_for_url",
    "video_key",
]


def get_storage() -> Storage:
    """The storage ``settings.RADSHARE.storage_url`` names."""
    return storage_for_url(settings.RADSHARE.storage_url)


@lru_cache(maxsize=8)
def storage_for_url(url: str) -> Storage:
    """The storage a ``RADSHARE_STORAGE_URL`` names: ``file:///dir`` or ``s3://bucket/prefix?...`` (the
    configuration refuses any other already; this is the last line)."""
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path:
        return FileSystemStorage(Path(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        try:
            return S3Storage.from_url(url)
        except ValueError as exc:
            raise ImproperlyConfigured(f"RADSHARE_STORAGE_URL: {exc}") from None
    raise ImproperlyConfigured("RADSHARE_STORAGE_URL: must be file:///absolute/dir or s3://bucket/prefix")
