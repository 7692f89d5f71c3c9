"""The ZIP writer of the downloads (radshare.downloads.media.zipwriter): a STORED ZIP from recorded sizes and CRC-32s,
read whole or from any offset, ZIP64 where sizes, offsets or the member count need it, and a stored file shorter
than recorded stops the stream instead of making a broken ZIP."""

from __future__ import annotations

import io
import random
import zipfile
import zlib
from typing import BinaryIO

import pytest

from radshare.downloads.media.zipwriter import ChangedFileError, Member, StoredZip

STAMP = (2026, 3, 14, 9, 26, 52)


class _Zeros(io.RawIOBase):
    """A seekable file of ``size`` zero bytes that holds none of them."""

    def __init__(self, size: int) -> None:
        self._size, self._pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._size + offset if whence == 2 else self._pos + offset
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = max(min(len(buffer), self._size - self._pos), 0)
        buffer[:count] = bytes(count)
        self._pos += count
        return count


class _Storage:
    """The part of the storage door the reader uses: ``open``."""

    def __init__(self, files: dict[str, bytes | int]) -> None:
        self.files = files

    def open(self, key: str) -> BinaryIO:
        content = self.files[key]
        if isinstance(content, int):
            return io.BufferedReader(_Zeros(content), 1 << 20)
        return io.BytesIO(content)


def _members(files: dict[str, bytes]) -> list[Member]:
    members = [Member("README.TXT", 5, zlib.crc32(b"hello"), data=b"hello")]
    members += [Member(f"DICOM/{k}", len(v), zlib.crc32(v), key=k) for k, v in files.items()]
    return [*members, Member("EMPTY", 0, 0, data=b"")]


def _body(archive: StoredZip, storage: object, start: int, end: int, piece: int) -> bytes:
    return b"".join(archive.reader(storage, start, end, piece))  # type: ignore[arg-type]


def test_a_zip_from_recorded_crcs_reads_back_and_any_range_is_its_slice() -> None:
    rng = random.Random(7)  # noqa: S311 - sizes and offsets, not secrets
    files = {f"IM{n:06d}": rng.randbytes(rng.randrange(0, 300_000)) for n in range(12)}
    storage = _Storage(dict(files))
    archive = StoredZip(_members(files), STAMP)
    full = _body(archive, storage, 0, archive.size - 1, 1 << 20)
    assert len(full) == archive.size  # the size is known from the index alone
    with zipfile.ZipFile(io.BytesIO(full)) as read:
        assert read.testzip() is None
        assert [i.compress_type for i in read.infolist()] == [zipfile.ZIP_STORED] * 14
        assert {i.date_time for i in read.infolist()} == {STAMP}
        assert all(read.read(f"DICOM/{k}") == v for k, v in files.items())
    assert _body(archive, storage, 0, archive.size - 1, 4096) == full  # the same bytes in any piece size
    for _ in range(300):
        first = rng.randrange(archive.size)
        last = rng.randrange(first, archive.size)
        piece = rng.choice([1, 100, 4096, 1 << 20])
        assert _body(archive, storage, first, last, piece) == full[first : last + 1]


def test_a_file_shorter_than_recorded_stops_the_stream() -> None:
    files = {"A": b"x" * 1000, "B": b"y" * 1000}
    archive = StoredZip(_members(files), STAMP)
    storage = _Storage({"A": b"x" * 1000, "B": b"y" * 999})
    with pytest.raises(ChangedFileError):
        _body(archive, storage, 0, archive.size - 1, 1 << 20)


def test_zip64_past_4_gib_of_offsets_and_past_65535_members() -> None:
    big = (1 << 32) + 10  # a member past 4 GiB: its size and the next one's offset need ZIP64
    crc = 0
    zeros = bytes(1 << 24)
    for _ in range(big // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(big % len(zeros)), crc)
    members = [
        Member("BIG", big, crc, key="BIG"),
        Member("AFTER.TXT", 5, zlib.crc32(b"after"), data=b"after"),
    ]
    archive = StoredZip(members, STAMP)
    storage = _Storage({"BIG": big})
    # Everything but the big member's data: read the head and the tail, as a client resuming would.
    head = _body(archive, storage, 0, 99, 1 << 20)
    tail_start = archive.size - 400
    tail = _body(archive, storage, tail_start, archive.size - 1, 1 << 20)

    class _Sparse(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return True

        def seek(self, offset: int, whence: int = 0) -> int:
            self.pos = offset if whence == 0 else archive.size + offset if whence == 2 else self.pos + offset
            return self.pos

        def tell(self) -> int:
            return self.pos

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            count = max(min(len(buffer), archive.size - self.pos), 0)
            buffer[:count] = bytes(count)  # the big member's zeros, then what was read over them
            for start, data in ((0, head), (tail_start, tail)):
                lo, hi = max(self.pos, start), min(self.pos + count, start + len(data))
                if lo < hi:
                    buffer[lo - self.pos : hi - self.pos] = data[lo - start : hi - start]
            self.pos += count
            return count

    sparse = _Sparse()
    sparse.pos = 0
    with zipfile.ZipFile(io.BufferedReader(sparse)) as read:
        assert [(i.filename, i.file_size) for i in read.infolist()] == [("BIG", big), ("AFTER.TXT", 5)]
        assert read.read("AFTER.TXT") == b"after"  # found through the ZIP64 offset of the central directory

    many = [Member(f"F{n:05d}", 1, zlib.crc32(b"z"), data=b"z") for n in range(70_000)]
    archive = StoredZip(many, STAMP)
    data = _body(archive, _Storage({}), 0, archive.size - 1, 1 << 20)
    with zipfile.ZipFile(io.BytesIO(data)) as read:
        assert len(read.infolist()) == 70_000
        assert read.testzip() is None
