"""Which key holds what: the one place the storage layout is written down.

* ``instances/<hh>/<token>.dcm``: an instance's bytes as received, in one of 256 folders made ahead
  (``instance_folders``), so that no C-STORE waits for a new folder. ``Instance.storage_key`` holds the part after
  ``instances/``, so files stored under the older two-level names (``<h>/<h>/<hash>-<token>.dcm``) stay where
  they are and are read as before.
* ``renders/<NNN>/<instance id>/<frame>-<kind>.jpg``: its JPEGs, and ``0000-video.mp4`` beside them for a run of
  frames with a frame time (docs/architecture.md "Renders").
* ``layouts/<share id>/<name>``: a share's download layouts, kept to be streamed again (docs/architecture.md
  "Downloads"); derived data, deleted with the share or its studies and made again when missing.
* ``probes/<token>``: a few random bytes of the readiness check (core/health.py), deleted as soon as they are read
  back; no other data ever lives there.

Keys are made from hashes, random tokens and internal ids only, never from received data, so no sender can
choose where bytes land; the storage refuses anything else (``check_key``).
"""

from __future__ import annotations

import secrets

INSTANCES = "instances"
RENDERS = "renders"
PROBES = "probes"
LAYOUTS = "layouts"


def new_instance_name() -> str:
    """A fresh ``Instance.storage_key``, random: the name spreads the files evenly over the 256 folders of
    ``instance_folders``, and is new every time, so a put never replaces a file another association is still
    indexing. Random rather than derived from the data, so the file can be written before its header is read."""
    token = secrets.token_hex(16)
    return f"{token[:2]}/{token}.dcm"


def instance_folders() -> list[str]:
    """Every folder ``new_instance_name`` puts files in. Made ahead (``Storage.make_folders``): with one folder per
    image, as a fresh installation of the older 65536 folders had, a mkdir and an fsync of its parent doubled the
    cost of a durable put (docs/architecture.md "Performance budget")."""
    return [f"{INSTANCES}/{i:02x}" for i in range(256)]


def instance_key(storage_key: str) -> str:
    """The key of an instance's file, from its ``Instance.storage_key``."""
    return f"{INSTANCES}/{storage_key}"


def render_folder(instance_pk: int) -> str:
    """Where an instance's renders live: from its internal id only."""
    return f"{RENDERS}/{instance_pk // 1000 % 1000:03d}/{instance_pk}"


def render_key(instance_pk: int, frame: int, kind: str) -> str:
    """One render of one frame (0-based): ``kind`` is full, preview, thumb or a CT window preset."""
    return f"{render_folder(instance_pk)}/{frame:04d}-{kind}.jpg"


def video_key(instance_pk: int) -> str:
    """The H.264 MP4 of a multi-frame instance with a frame time, in its render folder (so it goes with them)."""
    return f"{render_folder(instance_pk)}/0000-video.mp4"


def layout_folder(share_pk: int) -> str:
    """Where a share's download layouts live: from its internal id only."""
    return f"{LAYOUTS}/{share_pk}"


def layout_key(share_pk: int, name: str) -> str:
    """One kept layout of a share; ``name`` is made of hex digests and a download kind, never of received data."""
    return f"{layout_folder(share_pk)}/{name}"


def probe_key() -> str:
    """A new key for one readiness probe: random, so that the probes of several processes never meet."""
    return f"{PROBES}/{secrets.token_hex(8)}"
