"""Content negotiation and multipart answers of the share-scoped DICOMweb (docs/requirements.md B6.4; PS3.18 8.7):
the Accept header's media ranges, whether the client takes DICOM JSON or ``multipart/related`` parts in the stored
transfer syntax (radshare never transcodes), and the multipart bodies: stored files streamed in pieces of about
``CHUNK`` bytes with an exact length, and frames.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from radshare.core.storage import Storage
from radshare.viewer.dicomweb.common import DICOM_JSON

CHUNK = 1024 * 1024


# --- the Accept header --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header: its type and its parameters (lower-case names)."""

    type: str
    params: dict[str, str]


def media_ranges(header: str) -> list[MediaRange]:
    """The Accept header's media ranges, those with q=0 left out."""
    ranges = []
    for item in header.split(","):
        pieces = [p.strip() for p in item.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            if float(params.get("q", "1")) <= 0:
                continue
        except ValueError:
            continue
        ranges.append(MediaRange(pieces[0].lower(), params))
    return ranges


def accepts_json(header: str) -> bool:
    """Whether the client takes DICOM JSON (QIDO-RS results, metadata): no Accept header takes anything."""
    if not header.strip():
        return True
    wanted = {DICOM_JSON, "application/json", "application/*", "*/*"}
    return any(r.type in wanted for r in media_ranges(header))


def accepts_multipart(header: str, part_type: str, stored: set[str], native: bool) -> bool:
    """Whether the client takes ``multipart/related; type=<part_type>`` parts as stored. A named transfer syntax
    must be every part's stored one; ``*`` takes any. Without one, DICOM files go as stored (radshare does not
    transcode) and frames only when they are uncompressed little endian (``native``)."""
    if not header.strip():
        return part_type == "application/dicom" or native
    for r in media_ranges(header):
        if r.type in ("*/*", "multipart/*") or (r.type == "multipart/related" and "type" not in r.params):
            if part_type == "application/dicom" or native:
                return True
            continue
        if r.type != "multipart/related" or r.params["type"].lower() not in (part_type, "*/*"):
            continue
        syntax = r.params.get("transfer-syntax")
        if syntax == "*" or (syntax is not None and stored == {syntax}):
            return True
        if syntax is None and (part_type == "application/dicom" or native):
            return True
    return False


# --- multipart/related answers --------------------------------------------------------------------------------


def new_boundary() -> str:
    return f"radshare-{secrets.token_hex(16)}"


def frames_body(frames: list[bytes], syntax: str, boundary: str) -> bytes:
    """``multipart/related; type="application/octet-stream"``: one part per frame, in the transfer syntax sent."""
    return b"".join(
        f"--{boundary}\r\nContent-Type: application/octet-stream; transfer-syntax={syntax}\r\n"
        f"Content-Length: {len(frame)}\r\n\r\n".encode("ascii")
        + frame
        + b"\r\n"
        for frame in frames
    ) + f"--{boundary}--\r\n".encode("ascii")


@dataclass(frozen=True)
class Part:
    """A stored file of a retrieve: its storage key, size and transfer syntax."""

    key: str
    size: int
    syntax: str


class MultipartReader:
    """``multipart/related; type="application/dicom"`` of stored files, read in pieces of about CHUNK bytes from a
    worker thread; one file open at a time."""

    def __init__(self, storage: Storage, parts: list[Part], boundary: str) -> None:
        self.storage = storage
        self.parts = parts
        self.boundary = boundary
        self._pieces = self._generate()
        self._open: BinaryIO | None = None

    def header(self, part: Part) -> bytes:
        return (
            f"--{self.boundary}\r\nContent-Type: application/dicom; transfer-syntax={part.syntax}\r\n"
            f"Content-Length: {part.size}\r\n\r\n"
        ).encode("ascii")

    @property
    def closing(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")

    @property
    def length(self) -> int:
        return sum(len(self.header(p)) + p.size + 2 for p in self.parts) + len(self.closing)

    def _generate(self) -> Iterator[bytes]:
        for part in self.parts:
            yield self.header(part)
            with self.storage.open(part.key) as handle:
                self._open = handle
                left = part.size
                while left:
                    data = handle.read(min(CHUNK, left))
                    if not data:
                        raise OSError("a stored file ended early")
                    left -= len(data)
                    yield data
            self._open = None
            yield b"\r\n"
        yield self.closing

    def read(self) -> bytes:
        """The next piece: about CHUNK bytes (small files together, so a thread hop carries a useful amount);
        b"" at the end."""
        out = bytearray()
        for piece in self._pieces:
            out += piece
            if len(out) >= CHUNK:
                break
        return bytes(out)

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
