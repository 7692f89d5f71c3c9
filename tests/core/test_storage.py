"""The storage door (radshare.core.storage), as every backend must behave.

The tests taking the ``storage`` fixture run once per entry of ``BACKENDS``: an object-storage backend adds a
factory there and must pass the same suite. Tests of one backend's own promises (the filesystem layout of existing
installations, its fsyncs) follow at the end.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation

from radshare.core.storage import (
    FileSystemStorage,
    S3Storage,
    Storage,
    get_storage,
    instance_folders,
    instance_key,
    new_instance_name,
    render_key,
    storage_for_url,
)
from tests import s3

BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "filesystem": lambda tmp_path: FileSystemStorage(tmp_path / "storage"),
    "s3": lambda tmp_path: s3.new_bucket(),  # moto's S3 server on loopback (tests/s3.py)
}

KEY = "instances/ab/cd/0123456789abcdef-00.dcm"
DATA = bytes(range(256)) * 40  # 10240 bytes, each position recognisable


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return BACKENDS[request.param](tmp_path)


def read(storage: Storage, key: str) -> bytes:
    with storage.open(key) as f:
        return f.read()


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def nothing_left(storage: Storage) -> bool:
    """No object and no temporary file: what a failed put must leave behind."""
    return list(storage.iterate()) == [] and storage.sweep_temporary(timedelta(0)) == 0


# --- writing and reading back ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_given",
    [bytes, memoryview, bytearray, chunks, io.BytesIO],
    ids=["bytes", "memoryview", "bytearray", "chunks", "file"],
)
@pytest.mark.parametrize("method", ["put_durable", "put", "put_new"])
def test_a_put_reads_back_byte_for_byte(
    storage: Storage, method: str, as_given: Callable[[bytes], Any]
) -> None:
    assert getattr(storage, method)(KEY, as_given(DATA)) == len(DATA)
    assert read(storage, KEY) == DATA
    assert storage.size(KEY) == len(DATA)
    assert storage.exists(KEY)


def test_save_is_django_s_name_for_a_durable_put(storage: Storage) -> None:
    assert storage.save(KEY, DATA) == KEY
    assert read(storage, KEY) == DATA


def test_an_empty_object_is_an_object(storage: Storage) -> None:
    assert storage.put_durable(KEY, b"") == 0
    assert storage.exists(KEY)
    assert storage.size(KEY) == 0
    assert read(storage, KEY) == b""


def test_a_put_again_replaces_the_object_whole(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    storage.put_durable(KEY, DATA)  # the same again: still one object, the same bytes
    assert list(storage.iterate()) == [KEY]
    assert read(storage, KEY) == DATA
    storage.put_durable(KEY, b"shorter")
    assert read(storage, KEY) == b"shorter"
    assert storage.size(KEY) == len(b"shorter")
    storage.put(KEY, DATA)
    assert read(storage, KEY) == DATA


def test_a_new_put_over_an_object_replaces_it_whole(storage: Storage) -> None:
    storage.put_new(KEY, DATA)
    with storage.open(KEY) as reader:
        assert storage.put_new(KEY, b"made again") == len(b"made again")
        if isinstance(storage, FileSystemStorage):  # a new file under the name: the one opened stays whole
            assert reader.read() == DATA
    assert read(storage, KEY) == b"made again"
    assert list(storage.iterate()) == [KEY]


def test_the_version_identifies_the_content(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    first = storage.stat(KEY)
    assert first.size == len(DATA)
    assert first.version
    assert storage.stat(KEY) == first  # stable while nothing changes: a validator for HTTP


def test_an_open_object_is_seekable(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    with storage.open(KEY) as f:
        f.seek(1000)
        assert f.read(3) == DATA[1000:1003]
        f.seek(0)
        assert f.read(2) == DATA[:2]


# --- byte ranges -----------------------------------------------------------------------------------------------


def test_pydicom_reads_a_stored_instance_straight_from_the_storage(storage: Storage) -> None:
    """Renders and DICOMweb read instances with pydicom from ``open`` and ``open_range`` (it wants a file with
    a name that seeks)."""
    import pydicom

    from radshare.studies.synthetic import FakePatient, ct_series, encode

    [ds] = ct_series(FakePatient("S1", "Test^Anna", datetime(1968, 3, 14).date()), count=1, size=16)
    data = encode(ds)
    storage.put_durable(KEY, data)
    with storage.open(KEY) as f:
        assert pydicom.dcmread(f).pixel_array.shape == (16, 16)
    with storage.open_range(KEY, 0, len(data)) as f:
        assert pydicom.dcmread(f).SOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 100), (4000, 4100), (len(DATA) - 10, len(DATA)), (len(DATA) - 10, len(DATA) + 500), (5, 5)],
    ids=["start", "middle", "end", "past-end", "empty"],
)
def test_a_byte_range_is_those_bytes(storage: Storage, start: int, end: int) -> None:
    storage.put_durable(KEY, DATA)
    with storage.open_range(KEY, start, end) as f:
        assert f.read() == DATA[start:end]


def test_a_range_starting_past_the_end_is_empty(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    with storage.open_range(KEY, len(DATA) + 10, len(DATA) + 20) as f:
        assert f.read() == b""


def test_a_range_reads_in_pieces_and_seeks_within_itself(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    with storage.open_range(KEY, 1000, 3000) as f:
        pieces = []
        while piece := f.read(300):
            pieces.append(piece)
        assert b"".join(pieces) == DATA[1000:3000]
        f.seek(10)
        assert f.read(5) == DATA[1010:1015]
        assert f.tell() == 15


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 5)])
def test_a_range_that_is_no_range_is_refused(storage: Storage, start: int, end: int) -> None:
    storage.put_durable(KEY, DATA)
    with pytest.raises(ValueError, match="byte range"):
        storage.open_range(KEY, start, end)


# --- missing objects, delete -----------------------------------------------------------------------------------


def test_a_missing_object_is_file_not_found(storage: Storage) -> None:
    assert not storage.exists(KEY)
    with pytest.raises(FileNotFoundError):
        storage.open(KEY)
    with pytest.raises(FileNotFoundError):
        storage.open_range(KEY, 0, 10)
    with pytest.raises(FileNotFoundError):
        storage.size(KEY)
    with pytest.raises(FileNotFoundError):
        storage.stat(KEY)


def test_delete_removes_the_object_and_tolerates_none(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    storage.put_durable("instances/ab/cd/other.dcm", b"other")
    storage.delete(KEY)
    assert not storage.exists(KEY)
    assert list(storage.iterate()) == ["instances/ab/cd/other.dcm"]
    storage.delete(KEY)  # gone already: nothing happens


def test_a_folder_of_keys_is_not_an_object(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    assert not storage.exists("instances/ab")
    with pytest.raises(FileNotFoundError):
        storage.size("instances/ab")


# --- listing ---------------------------------------------------------------------------------------------------


def test_listing_shows_objects_and_folders_not_the_temporary_area(storage: Storage) -> None:
    keys = [
        "instances/ab/cd/1.dcm",
        "instances/ab/cd/2.dcm",
        "instances/ab/ef/3.dcm",
        "renders/001/1001/0000-full.jpg",
        "renders/001/1001/0000-thumb.jpg",
        "top.txt",
    ]
    for key in reversed(keys):
        storage.put_durable(key, key.encode())
    with storage.temporary() as spool:
        spool.write(b"arriving")
        assert storage.listdir("") == (["instances", "renders"], ["top.txt"])
        assert storage.listdir("instances/ab") == (["cd", "ef"], [])
        assert storage.listdir("instances/ab/cd/") == ([], ["1.dcm", "2.dcm"])
        assert storage.listdir("nothing/here") == ([], [])
        assert list(storage.iterate()) == sorted(keys)
    assert list(storage.iterate("instances")) == keys[:3]
    assert list(storage.iterate("renders/001/1001")) == keys[3:5]
    assert list(storage.iterate("instances/a")) == []  # a prefix is a folder, not the start of a name
    assert list(storage.iterate("missing")) == []
    assert [read(storage, key) for key in storage.iterate()] == [key.encode() for key in sorted(keys)]


def test_a_scan_lists_keys_in_string_order_with_size_and_age(storage: Storage) -> None:
    """The order of whole keys, as an object store lists them (``radshare storage check`` relies on it): a folder's
    keys sort by their "/" (after "-" and "."), not before every longer name in that folder."""
    keys = [
        "instances/ab/cd/1.dcm",
        "renders/001/1001-x/0000-full.jpg",
        "renders/001/1001.txt",
        "renders/001/1001/0000-full.jpg",
        "renders/001/1001/0000-thumb.jpg",
        "renders/001/10010/0000-full.jpg",
        "top.txt",
    ]
    before = datetime.now(UTC) - timedelta(seconds=5)
    for n, key in enumerate(reversed(keys)):
        storage.put(key, b"x" * n)
    with storage.temporary() as spool:
        spool.write(b"arriving")
        found = list(storage.scan())
    assert [f.key for f in found] == sorted(keys) == keys
    assert list(storage.iterate()) == keys
    assert {f.key: f.size for f in found} == {key: n for n, key in enumerate(reversed(keys))}
    assert all(before <= f.modified <= datetime.now(UTC) + timedelta(seconds=5) for f in found)
    assert [f.key for f in storage.scan("renders/001")] == keys[1:6]
    assert [f.key for f in storage.scan("renders/001/1001/")] == keys[3:5]
    assert list(storage.scan("renders/00")) == []  # a prefix is a folder, not the start of a name
    assert list(storage.scan("missing")) == []
    with pytest.raises(SuspiciousFileOperation):
        list(storage.scan("../outside"))


# --- a failed put ----------------------------------------------------------------------------------------------


class InterruptedPutError(Exception):
    pass


def breaking(data: bytes) -> Iterator[bytes]:
    """The chunks of ``data``, broken off half-way (a sender gone, a read error)."""
    yield data[: len(data) // 2]
    raise InterruptedPutError


@pytest.mark.parametrize("method", ["put_durable", "put", "put_new"])
def test_a_put_that_fails_half_way_leaves_nothing(storage: Storage, method: str) -> None:
    with pytest.raises(InterruptedPutError):
        getattr(storage, method)(KEY, breaking(DATA))
    assert not storage.exists(KEY)
    assert nothing_left(storage)
    if isinstance(storage, FileSystemStorage):  # not even a hidden temporary file beside the key
        assert [p for p in storage.root.rglob("*") if not p.is_dir()] == []


@pytest.mark.parametrize("method", ["put_durable", "put", "put_new"])
def test_a_failed_replacement_keeps_the_object_as_it_was(storage: Storage, method: str) -> None:
    storage.put_durable(KEY, DATA)
    with pytest.raises(InterruptedPutError):
        getattr(storage, method)(KEY, breaking(b"new content" * 100))
    assert read(storage, KEY) == DATA
    assert list(storage.iterate()) == [KEY]
    assert storage.sweep_temporary(timedelta(0)) == 0


# --- the temporary area ----------------------------------------------------------------------------------------


def test_a_temporary_file_is_read_write_invisible_and_gone_when_closed(storage: Storage) -> None:
    with storage.temporary() as spool:
        spool.write(DATA)
        spool.seek(100)
        assert spool.read(10) == DATA[100:110]
        assert list(storage.iterate()) == []
    assert nothing_left(storage)


def test_sweeping_an_unused_temporary_area_removes_nothing(storage: Storage) -> None:
    assert storage.sweep_temporary(timedelta(hours=1)) == 0
    storage.put_durable(KEY, DATA)
    assert storage.sweep_temporary(timedelta(0)) == 0  # a stored object is never the sweep's
    assert storage.exists(KEY)


# --- keys ------------------------------------------------------------------------------------------------------

ESCAPES = [
    "../outside",
    "instances/../../outside",
    "/etc/passwd",
    "",
    "instances//x.dcm",
    "instances/x.dcm/",
    ".hidden",
    "renders/.x.jpg.tmp",
    "instances\\..\\x",
    "instances/x\0.dcm",
]


@pytest.mark.parametrize("key", ESCAPES)
def test_a_key_that_is_no_plain_relative_name_is_refused(storage: Storage, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: storage.put_durable(key, b"x"),
        lambda: storage.put(key, b"x"),
        lambda: storage.save(key, b"x"),
        lambda: storage.open(key),
        lambda: storage.open_range(key, 0, 1),
        lambda: storage.size(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
    ]
    for call in calls:
        with pytest.raises(SuspiciousFileOperation):
            call()
    if key and not key.endswith("/"):  # as a prefix "" is the top, and a trailing "/" says "folder"
        with pytest.raises(SuspiciousFileOperation):
            storage.listdir(key)
        with pytest.raises(SuspiciousFileOperation):
            list(storage.iterate(key))
    assert nothing_left(storage)


def test_a_storage_travels_to_a_render_process(storage: Storage) -> None:
    """Render processes get the storage with each job (pickled): the copy reads and writes the same objects."""
    storage.put_durable(KEY, DATA)
    copy = pickle.loads(pickle.dumps(storage))  # noqa: S301 - our own object, made one line above
    assert read(copy, KEY) == DATA
    copy.put("renders/001/1001/0000-full.jpg", b"jpeg")
    assert read(storage, "renders/001/1001/0000-full.jpg") == b"jpeg"


def test_local_path_is_the_object_s_file_or_not_offered(storage: Storage) -> None:
    storage.put_durable(KEY, DATA)
    try:
        path = storage.local_path(KEY)
    except NotImplementedError:
        return
    assert path.read_bytes() == DATA


# --- the filesystem backend's own promises -----------------------------------------------------------------------


def test_the_layout_is_where_existing_installations_keep_their_files(tmp_path: Path) -> None:
    """Same relative paths under the storage root as before the storage interface (docs/architecture.md)."""
    name = new_instance_name()
    assert re.fullmatch(r"([0-9a-f]{2})/\1[0-9a-f]{30}\.dcm", name)
    assert name != new_instance_name()  # a fresh name every time
    assert f"instances/{name[:2]}" in instance_folders()  # in one of the folders made ahead
    assert instance_key(name) == f"instances/{name}"
    assert render_key(1234, 0, "full") == "renders/001/1234/0000-full.jpg"
    assert render_key(1_234_567, 12, "lung") == "renders/234/1234567/0012-lung.jpg"

    storage = FileSystemStorage(tmp_path)
    storage.put_durable(instance_key(name), DATA)
    storage.put(render_key(1234, 0, "full"), b"jpeg")
    assert (tmp_path / "instances" / name).read_bytes() == DATA
    assert (tmp_path / "renders/001/1234/0000-full.jpg").read_bytes() == b"jpeg"
    assert storage.local_path(instance_key(name)) == tmp_path / "instances" / name
    # A file an older version stored is read through the same key.
    old = tmp_path / "instances/ff/ee/ffee0000000000000000000000000000-0000000000000000.dcm"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    assert read(storage, "instances/ff/ee/ffee0000000000000000000000000000-0000000000000000.dcm") == b"old"


def test_folders_made_ahead_are_durable_and_leave_what_is_there_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 256 instance folders are made once, before the first put, with one fsync per parent for all their
    entries; a put into one of them then fsyncs only the file and that folder (docs/architecture.md "Performance
    budget")."""
    synced: list[str] = []
    fsync = os.fsync

    def recording(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    storage = FileSystemStorage(tmp_path)
    (tmp_path / "instances/07").mkdir(parents=True)
    (tmp_path / "instances/07/kept.dcm").write_bytes(b"kept")
    storage.make_folders(instance_folders())
    assert sorted(p.name for p in (tmp_path / "instances").iterdir()) == [f"{i:02x}" for i in range(256)]
    assert (tmp_path / "instances/07/kept.dcm").read_bytes() == b"kept"
    assert sorted(synced) == [str(tmp_path / "instances")]  # made earlier here: its parent fsynced then
    assert [found.key for found in storage.scan()] == ["instances/07/kept.dcm"]  # folders are no objects

    synced.clear()
    storage.make_folders(instance_folders())  # all there: nothing to do
    assert synced == []
    storage.put_durable(instance_key(new_instance_name()), DATA)  # the first also makes the temporary area
    synced.clear()
    name = new_instance_name()
    storage.put_durable(instance_key(name), DATA)
    assert len(synced) == 2
    assert synced[-1] == str(tmp_path / "instances" / name[:2])


def test_the_temporary_area_cannot_be_named_by_a_key(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path)
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "x.part").write_bytes(b"half")
    for call in (lambda: storage.open("incoming/x.part"), lambda: storage.delete("incoming/x.part")):
        with pytest.raises(SuspiciousFileOperation):
            call()
    with pytest.raises(SuspiciousFileOperation):
        storage.listdir("incoming")
    assert (tmp_path / "incoming" / "x.part").read_bytes() == b"half"


def test_a_durable_put_fsyncs_the_file_and_every_folder_it_lands_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/security.md R1: once put_durable returns, a crash keeps the object (the file and its folder entries
    are on disk); a plain put (renders) skips the cost."""
    synced: list[str] = []
    fsync = os.fsync

    def recording(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    storage = FileSystemStorage(tmp_path)
    storage.put_durable("instances/ab/cd/x.dcm", DATA)
    final = tmp_path / "instances/ab/cd/x.dcm"
    [part] = [p for p in synced if p.endswith(".part")]  # the file itself, before its rename
    assert Path(part).parent == tmp_path / "incoming"
    assert {str(tmp_path), str(tmp_path / "instances"), str(tmp_path / "instances/ab")} <= set(synced)
    assert synced[-1] == str(final.parent)  # the rename itself
    assert stat.S_IMODE(final.stat().st_mode) == 0o600

    synced.clear()
    storage.put_durable("instances/ab/cd/y.dcm", DATA)  # folders there already: the file and its folder only
    assert len(synced) == 2
    assert synced[-1] == str(final.parent)

    synced.clear()
    storage.put("renders/001/1001/0000-full.jpg", b"jpeg")
    assert synced == []
    assert stat.S_IMODE((tmp_path / "renders/001/1001/0000-full.jpg").stat().st_mode) == 0o600


def test_a_crash_leftover_is_swept_once_stale(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path)
    with pytest.raises(InterruptedPutError):
        storage.put_durable(KEY, breaking(DATA))
    (tmp_path / "incoming").mkdir(exist_ok=True)
    crashed = tmp_path / "incoming" / "0123.part"  # what a killed process leaves
    crashed.write_bytes(b"half")
    assert storage.sweep_temporary(timedelta(hours=1)) == 0  # too fresh: maybe still being written
    assert storage.sweep_temporary(timedelta(0)) == 1
    assert not crashed.exists()


def test_a_full_disk_is_an_os_error_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    root.write_bytes(b"")  # a file where the folder should be: every write fails as on a broken disk
    storage = FileSystemStorage(root)
    with pytest.raises(OSError):  # noqa: PT011 - any errno: the caller reports it as out of resources
        storage.put_durable(KEY, DATA)
    with pytest.raises(OSError):  # noqa: PT011
        storage.put(KEY, DATA)
    with pytest.raises(OSError):  # noqa: PT011
        storage.put_new(KEY, DATA)
    assert root.read_bytes() == b""


# --- configuration ---------------------------------------------------------------------------------------------


def test_get_storage_follows_the_storage_url(
    storage_root: Path, radshare_config: Any, tmp_path: Path
) -> None:
    storage = get_storage()
    assert isinstance(storage, FileSystemStorage)
    assert storage.root == storage_root
    radshare_config(storage_url=f"file://{tmp_path / 'elsewhere'}")
    other = get_storage()
    assert isinstance(other, FileSystemStorage)
    assert other.root == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    "url", ["gs://bucket/prefix", "file://", "/plain/path", "s3://", "s3://bucket/x?endpoint=http://s3.local"]
)
def test_a_storage_url_of_another_kind_is_refused(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="RADSHARE_STORAGE_URL"):
        storage_for_url(url)


def test_an_s3_url_names_bucket_prefix_endpoint_region_and_profile() -> None:
    storage = storage_for_url(
        "s3://images/radshare/?endpoint_url=https://minio.example:9000&region=eu&profile=rs"
    )
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.endpoint_url, storage.region, storage.profile) == (
        "images",
        "radshare",
        "https://minio.example:9000",
        "eu",
        "rs",
    )


# --- the S3 backend's own promises ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [len(DATA), 11 << 20])
def test_an_s3_put_whose_bytes_change_on_the_way_fails_and_leaves_nothing(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes damaged between radshare and the server (here: a proxy flipping one byte of the request) are never
    acknowledged: the server refuses them by their Content-MD5, or the ETag it answers differs from the MD5 sent."""
    from radshare.core.storage import s3 as backend

    monkeypatch.setattr(backend, "MULTIPART_SIZE", 6 << 20)
    monkeypatch.setattr(backend, "PART_SIZE", 5 << 20)
    storage = s3.new_bucket()

    def damage(request: Any, **kwargs: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else request.body.read()
        if len(body) > 100:
            request.body = body[:50] + bytes([body[50] ^ 0xFF]) + body[51:]

    storage.client.meta.events.register("before-send.s3.PutObject", damage)
    storage.client.meta.events.register("before-send.s3.UploadPart", damage)
    data = os.urandom(size)
    with pytest.raises(Exception, match=r"BadDigest|InvalidDigest|Content-MD5|other bytes"):
        storage.put_durable(KEY, data)
    assert not storage.exists(KEY)
    assert nothing_left(storage)


def test_a_large_s3_object_goes_up_in_parts_and_reads_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from radshare.core.storage import s3 as backend

    monkeypatch.setattr(backend, "MULTIPART_SIZE", 6 << 20)
    monkeypatch.setattr(backend, "PART_SIZE", 5 << 20)  # S3's smallest part
    storage = s3.new_bucket()
    data = os.urandom(11 << 20)
    assert storage.put_durable(KEY, chunks(data, 1 << 20)) == len(data)
    assert read(storage, KEY) == data
    with storage.open_range(KEY, (5 << 20) - 10, (5 << 20) + 10) as part:
        assert part.read() == data[(5 << 20) - 10 : (5 << 20) + 10]
    assert storage.sweep_temporary(timedelta(0)) == 0


def test_an_s3_upload_a_crash_left_unfinished_is_swept() -> None:
    storage = s3.new_bucket()
    storage.client.create_multipart_upload(Bucket=storage.bucket, Key=f"{storage.prefix}/{KEY}")
    # (moto reports every upload as begun in 2010, so "not yet old enough" cannot be shown against it)
    assert storage.sweep_temporary(timedelta(0)) == 1
    assert storage.sweep_temporary(timedelta(0)) == 0
    assert not storage.exists(KEY)


def test_get_storage_follows_an_s3_storage_url(radshare_config: Any) -> None:
    bucket = s3.new_bucket("installation")
    radshare_config(storage_url=s3.storage_url(bucket))
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    storage.put_durable(KEY, DATA)
    assert read(bucket, KEY) == DATA
