"""Is a received DICOM file whole and well formed? One check for every door in (SCP, upload, PACS retrieve).

``check_encoding`` walks the element headers of a Part 10 file (PS3.10 section 7) the way pydicom reads them,
but strictly: every value lies within the data, every VR is one PS3.5 section 6.2 defines, every undefined-length
sequence and item ends with its delimitation item (PS3.5 section 7.5), encapsulated pixel data is framed as items
ending in a sequence delimiter (PS3.5 Annex A.4), and native Pixel Data holds as many bytes as the image pixel
attributes call for (PS3.5 section 8.1.1). Values are skipped, never decoded: the pixel data is not touched apart
from the 8-byte headers of its fragments, so the check costs microseconds per element whatever the image size.

pydicom itself is tolerant: it stops quietly at the end of the data, reads an unknown VR and fails only when the
value is used. That is right for reading what is already stored, wrong for deciding what to store (a file cut
off in transfer would be kept and acknowledged; docs/security.md R1).
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_16, EXPLICIT_VR_LENGTH_32

_PREAMBLE = 128
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_TRANSFER_SYNTAX = 0x00020010
_MAX_DEPTH = 64  # sequences nested deeper are refused, not followed (no recursion without bound)

_VR_16 = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_16)
_VR_32 = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)
# Binary numbers pydicom unpacks with struct: a value must be a whole number of them (PS3.5 Table 6.2-1).
_NUMBER_SIZE = {
    b"US": 2, b"SS": 2, b"US or SS": 2, b"UL": 4, b"SL": 4, b"FL": 4, b"AT": 4, b"FD": 8, b"SV": 8, b"UV": 8,
}  # fmt: skip
# The Image Pixel Module attributes (PS3.3 C.7.6.3) that size native Pixel Data, read at the top level only.
_ROWS, _COLUMNS, _SAMPLES, _BITS = 0x00280010, 0x00280011, 0x00280002, 0x00280100
_FRAMES, _PHOTOMETRIC = 0x00280008, 0x00280004
_IMAGE_TAGS = frozenset({_ROWS, _COLUMNS, _SAMPLES, _BITS, _FRAMES, _PHOTOMETRIC})


class EncodingError(Exception):
    """The bytes are not a well-formed data set. ``incomplete``: they end before the data set does (a copy or
    transfer cut off), as opposed to bytes that are broken where they stand. ``reason`` names tags and sizes,
    never values (no patient data; docs/security.md A21)."""

    def __init__(self, reason: str, *, incomplete: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.incomplete = incomplete


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@functools.cache
def _dictionary_vr(tag: int) -> bytes | None:
    """The VR the data dictionary gives a tag (implicit VR); None for private and unknown tags."""
    try:
        return dictionary_VR(tag).encode()
    except KeyError:
        return None


@dataclass
class _PixelData:
    length: int | None = None  # None: undefined length (encapsulated)
    fragments: int = 0  # encapsulated: items after the Basic Offset Table


@dataclass
class _Walk:
    """One pass over one data set: the buffer, its encoding, and what the top level says about its pixels.

    The hot path (one struct unpack per element, VRs kept as bytes) matters for enhanced multi-frame objects:
    thousands of per-frame items, each walked.
    """

    buf: bytes | memoryview
    implicit: bool
    little: bool
    # Top-level tags whose elements ``elements`` keeps, as pydicom's reader gives them.
    collect: frozenset[int] = frozenset()
    image: dict[int, bytes] = field(default_factory=dict)
    pixel_data: _PixelData | None = None
    elements: dict[int, RawDataElement] = field(default_factory=dict)

    def __post_init__(self) -> None:
        prefix = "<" if self.little else ">"
        self.tag_length = struct.Struct(f"{prefix}HHL")  # items and delimiters (PS3.5 section 7.5)
        self.tag_vr_length = struct.Struct(f"{prefix}HH2sH")  # an element header's first 8 bytes
        self.length32 = struct.Struct(f"{prefix}L")

    def fail(self, reason: str, at: int) -> EncodingError:
        # Running into the end of the data is a cut-off copy; anything else is broken bytes.
        return EncodingError(reason, incomplete=at >= len(self.buf))

    def data_set(self, pos: int, end: int, *, within: int | None, depth: int) -> int:
        """The elements from ``pos`` up to ``end`` or, in an undefined-length item of sequence ``within``, up to its
        Item Delimitation Item. Returns the position after the data set (after its delimiter)."""
        while pos < end:
            if end - pos < 8:
                if depth == 0 and not any(self.buf[pos:end]):
                    return end  # a few zero bytes of padding after the last element: harmless
                raise self.fail("the data ends inside an element header", end)
            pos = self.element(pos, end, depth)
            if pos < 0:  # an Item Delimitation Item: ends an item (sequence() checks a defined length's end)
                if depth == 0:
                    raise self.fail("an item delimitation item outside any sequence", -pos)
                return -pos
        if within is not None:
            raise self.fail(f"an item of sequence {_tag(within)} has no item delimitation item", pos)
        return pos

    def element(self, pos: int, end: int, depth: int) -> int:
        """The element at ``pos``: the position after it, or minus that after an Item Delimitation Item."""
        group, number, vr, short = self.tag_vr_length.unpack_from(self.buf, pos)
        tag: int = group << 16 | number
        length: int
        if group == 0xFFFE:
            if tag == _ITEM_DELIMITER:
                return -(pos + 8)  # data_set decides whether one belongs here
            raise self.fail(f"item tag {_tag(tag)} where an element should be", pos)
        explicit: bytes | None = vr
        if self.implicit or not (b"AA" <= vr <= b"ZZ"):
            # Implicit VR, or (as pydicom reads it) an explicit VR data set switching to implicit VR here.
            length = self.length32.unpack_from(self.buf, pos + 4)[0]
            value = pos + 8
            vr, explicit = _dictionary_vr(tag), None
        elif vr in _VR_32:
            if end - pos < 12:
                raise self.fail("the data ends inside an element header", end)
            length, value = self.length32.unpack_from(self.buf, pos + 8)[0], pos + 12
        elif vr in _VR_16:
            length, value = short, pos + 8
        else:
            raise self.fail(f"{_tag(tag)} has an unknown VR", pos)
        if length == _UNDEFINED:
            if vr in (b"SQ", b"UN") or (vr is None and tag != _PIXEL_DATA):
                after = self.sequence(value, end, None, tag, depth)  # UN: PS3.5 section 6.2.2
            else:
                after = self.fragments(value, end, tag, depth)
            if depth == 0 and tag in self.collect:
                self._keep(tag, explicit, length, value, after)
            return after
        if value + length > end:
            raise self.fail(f"the value of {_tag(tag)} runs past the end of its data set", end)
        if vr in _NUMBER_SIZE and length % _NUMBER_SIZE[vr]:
            raise self.fail(f"{_tag(tag)} ({vr.decode()}) has a length of {length} bytes", pos)
        if vr == b"SQ":
            self.sequence(value, value + length, length, tag, depth)
        elif depth == 0 and tag == _PIXEL_DATA:
            self.pixel_data = _PixelData(length=length)
        elif depth == 0 and tag in _IMAGE_TAGS:
            self.image[tag] = bytes(self.buf[value : value + length])
        if depth == 0 and tag in self.collect:
            self._keep(tag, explicit, length, value, value + length)
        return value + length

    def _keep(self, tag: int, explicit: bytes | None, length: int, value: int, after: int) -> None:
        """The element as pydicom's reader gives it before converting it (``RawDataElement``; ``explicit``: the VR
        as written, None for implicit VR). An undefined-length value runs to the end of its delimiter, where
        pydicom's sequence reader stops."""
        self.elements[tag] = RawDataElement(
            BaseTag(tag),
            None if explicit is None else explicit.decode(),
            length,
            bytes(self.buf[value:after]),
            value,
            explicit is None,
            self.little,
        )

    def sequence(self, pos: int, end: int, length: int | None, tag: int, depth: int) -> int:
        """The items of a sequence (PS3.5 section 7.5); ``length`` None: undefined, ending in a delimiter."""
        if depth >= _MAX_DEPTH:
            raise self.fail(f"sequences nested deeper than {_MAX_DEPTH} levels", pos)
        while length is None or pos < end:
            if end - pos < 8:
                raise self.fail(f"sequence {_tag(tag)} has no sequence delimitation item", end)
            group, number, item_length = self.tag_length.unpack_from(self.buf, pos)
            item_tag = group << 16 | number
            if item_tag == _SEQUENCE_DELIMITER:  # in a defined length too: pydicom stops there as well
                return pos + 8 if length is None else end
            if item_tag != _ITEM:
                raise self.fail(f"sequence {_tag(tag)} holds {_tag(item_tag)} where an item should be", pos)
            if item_length == _UNDEFINED:
                pos = self.data_set(pos + 8, end, within=tag, depth=depth + 1)
                continue
            item_end = pos + 8 + item_length
            if item_end > end:
                raise self.fail(f"an item of sequence {_tag(tag)} runs past its end", end)
            after = self.data_set(pos + 8, item_end, within=None, depth=depth + 1)
            if after != item_end:  # an item delimiter inside a defined-length item: only as its last 8 bytes
                raise self.fail(f"an item of sequence {_tag(tag)} ends before its length says", after)
            pos = item_end
        return pos

    def fragments(self, pos: int, end: int, tag: int, depth: int) -> int:
        """Encapsulated data (PS3.5 Annex A.4): a Basic Offset Table item, fragment items, a sequence delimiter.
        Only the item headers are read."""
        items = 0
        while True:
            if end - pos < 8:
                raise self.fail(f"the fragments of {_tag(tag)} have no sequence delimitation item", end)
            group, number, length = self.tag_length.unpack_from(self.buf, pos)
            item_tag = group << 16 | number
            if item_tag == _SEQUENCE_DELIMITER and items:
                break
            if item_tag != _ITEM or length == _UNDEFINED:
                raise self.fail(f"the encapsulated value of {_tag(tag)} is not framed as items", pos)
            if pos + 8 + length > end:
                raise self.fail(f"a fragment of {_tag(tag)} runs past the end of the data", end)
            pos += 8 + length
            items += 1
        if depth == 0 and tag == _PIXEL_DATA:
            self.pixel_data = _PixelData(fragments=items - 1)
        return pos + 8


def _number(raw: bytes | None, little: bool, *, text: bool = False) -> int | None:
    """A US value (or an IS one, ``text``) as read by the walk; None when absent or not a plain number."""
    if not raw:
        return None
    if text:
        try:
            return int(raw.decode("ascii").strip(" \0").split("\\")[0])
        except (UnicodeDecodeError, ValueError):
            return None
    return int.from_bytes(raw[:2], "little" if little else "big") if len(raw) >= 2 else None


def _check_pixel_data(walk: _Walk, native: bool) -> None:
    """Pixel Data against Rows, Columns, Number of Frames, Samples per Pixel and Bits Allocated.

    Native (PS3.5 section 8.1.1): at least Rows x Columns x Frames x Samples x Bits Allocated / 8 bytes (bits
    packed when Bits Allocated is 1; YBR_FULL_422 holds two samples per pixel, PS3.3 C.7.6.3.1.2), plus one pad
    byte when that is odd. More is tolerated: pydicom ignores the excess and real devices write it.
    Encapsulated (PS3.5 Annex A.4): at least one fragment per frame, as a fragment never holds two frames.
    Without the attributes there is nothing to check against; rendering reports such an image later.
    """
    pixels = walk.pixel_data
    if pixels is None:
        return
    image = walk.image
    frames = _number(image.get(_FRAMES), walk.little, text=True) or 1
    if pixels.length is None:
        if pixels.fragments < frames:
            raise EncodingError(
                f"Pixel Data has {pixels.fragments} fragments for {frames} frames", incomplete=True
            )
        return
    rows, columns, bits = (_number(image.get(t), walk.little) for t in (_ROWS, _COLUMNS, _BITS))
    samples = _number(image.get(_SAMPLES), walk.little) or 1
    if not native or not (rows and columns and bits) or (bits != 1 and bits % 8) or frames < 1:
        return
    cells = rows * columns * frames * samples
    expected = (cells + 7) // 8 if bits == 1 else cells * (bits // 8)
    if samples == 3 and image.get(_PHOTOMETRIC, b"").strip(b" \0") == b"YBR_FULL_422":
        expected = expected // 3 * 2
    if pixels.length < expected:
        raise EncodingError(
            f"Pixel Data holds {pixels.length} bytes where the image attributes call for {expected}",
            incomplete=True,
        )


@dataclass(frozen=True)
class Checked:
    """What the walk of a well-formed file found on the way: the Transfer Syntax UID its file meta gives (``""``
    without one) and the top-level elements asked for, unconverted (absent ones are left out)."""

    transfer_syntax: str
    elements: dict[int, RawDataElement]


def check_encoding(data: bytes | memoryview, collect: frozenset[int] = frozenset()) -> Checked:
    """Raise ``EncodingError`` unless ``data`` is a whole, well-formed DICOM Part 10 file (see the module).

    A deflated data set (PS3.5 Annex A.5) is inflated to be walked. ``collect``: top-level tags whose elements the
    walk keeps on the way, as pydicom's reader gives them before converting them: what ``header.read_header``
    reads, without pydicom reading the file a second time.
    """
    buf = data if isinstance(data, bytes) else memoryview(data).cast("B")
    if buf[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
        raise EncodingError("no DICOM Part 10 preamble and prefix", incomplete=len(buf) < _PREAMBLE + 4)
    # File meta: group 0002, always explicit VR little endian (PS3.10 section 7.1).
    meta = _Walk(buf, implicit=False, little=True)
    pos = _PREAMBLE + 4
    transfer_syntax = ""
    while len(buf) - pos >= 8 and buf[pos : pos + 2] == b"\x02\x00":
        after = meta.element(pos, len(buf), depth=1)
        if 0x00020000 | int.from_bytes(buf[pos + 2 : pos + 4], "little") == _TRANSFER_SYNTAX:
            value = pos + (12 if buf[pos + 4 : pos + 6] in _VR_32 else 8)
            transfer_syntax = bytes(buf[value:after]).strip(b" \0").decode("latin-1")  # as pydicom reads it
        pos = after
    implicit, little, deflated, native = True, True, False, False  # pydicom's assumption without a UID
    if transfer_syntax:
        try:
            syntax = UID(transfer_syntax)
            implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
            deflated, native = syntax.is_deflated, not syntax.is_encapsulated
        except (
            ValueError
        ):  # one pydicom does not know: explicit VR little endian, as pydicom reads it (PS3.5 A.4)
            implicit = False
    if deflated:
        try:
            buf = zlib.decompress(memoryview(data)[pos:], -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise EncodingError("the deflated data set cannot be inflated", incomplete=False) from exc
        pos = 0
    if len(buf) - pos >= 6:
        # As pydicom reads it: the first element decides implicit or explicit VR whatever the UID says, and
        # without a UID a big endian group number too.
        group, raw_vr = int.from_bytes(buf[pos : pos + 2], "little"), bytes(buf[pos + 4 : pos + 6])
        implicit = not all(0x41 <= c <= 0x5A for c in raw_vr)
        if not transfer_syntax and (raw_vr in _VR_16 or raw_vr in _VR_32) and group >= 1024:
            little = False
    walk = _Walk(buf, implicit=implicit, little=little, collect=collect)
    walk.data_set(pos, len(buf), within=None, depth=0)
    _check_pixel_data(walk, native)
    return Checked(transfer_syntax, walk.elements)
