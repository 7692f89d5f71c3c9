"""Encryption at rest for the few secrets radshare must read back (a share's code for re-sending, a PACS's
DICOMweb password): Fernet with a key of its own per purpose, derived from ``SECRET_KEY``."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet(purpose: str) -> Fernet:
    digest = hashlib.sha256(f"radshare-{purpose}:".encode() + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(purpose: str, text: str) -> str:
    return _fernet(purpose).encrypt(text.encode()).decode("ascii")


def decrypt(purpose: str, token: str) -> str | None:
    """The text back; None if the token is empty, altered or made with another key."""
    if not token:
        return None
    try:
        return _fernet(purpose).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        return None
