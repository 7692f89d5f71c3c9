"""Which key holds what: the one place the storage layout is written down.

* ``instances/<h>/<h>/<hash>-<token>.dcm``: an instance's bytes as received. ``Instance.storage_key`` holds the
  part after ``instances/`` (so rows stored before this module existed keep pointing at their files).
* ``renders/<NNN>/<instance id>/<frame>-<kind>.jpg``: its JPEGs (docs/architecture.md "Renders").
* ``probes/<token>``: a few random bytes of the readiness check (core/health.py), deleted as soon as they are read
  back; no other data ever lives there.

Keys are made from hashes, random tokens and internal ids only, never from received data, so no sender can
choose where bytes land; the storage refuses anything else (``check_key``).
"""

from __future__ import annotations

import hashlib
import secrets

INSTANCES = "instances"
RENDERS = "renders"
PROBES = "probes"


def new_instance_name(name_hint: str) -> str:
    """A fresh ``Instance.storage_key``: ``name_hint`` (e.g. organisation + SOP Instance UID) only spreads the files
    over 65536 folders, through its hash; the random token makes every name new, so a put never replaces a file
    another association is still indexing."""
    spread = hashlib.sha256(name_hint.encode()).hexdigest()
    return f"{spread[:2]}/{spread[2:4]}/{spread[:32]}-{secrets.token_hex(8)}.dcm"


def instance_key(storage_key: str) -> str:
    """The key of an instance's file, from its ``Instance.storage_key``."""
    return f"{INSTANCES}/{storage_key}"


def render_folder(instance_pk: int) -> str:
    """Where an instance's renders live: from its internal id only."""
    return f"{RENDERS}/{instance_pk // 1000 % 1000:03d}/{instance_pk}"


def render_key(instance_pk: int, frame: int, kind: str) -> str:
    """One render of one frame (0-based): ``kind`` is full, preview, thumb or a CT window preset."""
    return f"{render_folder(instance_pk)}/{frame:04d}-{kind}.jpg"


def probe_key() -> str:
    """A new key for one readiness probe: random, so that the probes of several processes never meet."""
    return f"{PROBES}/{secrets.token_hex(8)}"
