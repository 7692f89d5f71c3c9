"""Moving the secrets of messages waiting in the outbox to the current key (docs/security.md A28).

An SMS code (or a share's code) waits encrypted until its message is sent or dropped; ``radshare keys rotate``
encrypts it again with the current key. The update is conditional on the token it read, so a message sent
meanwhile (its secret wiped) is left alone.
"""

from __future__ import annotations

from radshare.core import crypto
from radshare.core.crypto import Rotation
from radshare.delivery.models import Notification
from radshare.shares import codes


def rotate_secrets(*, apply: bool = True) -> Rotation:
    """Encrypt every waiting secret again with the current key; ``apply=False`` only counts. ``left``: secrets
    no known key reads (their message cannot be sent)."""
    return crypto.reencrypt_field(Notification, "secret", codes.PURPOSE, apply=apply)
