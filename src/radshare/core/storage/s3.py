"""Storage in an S3 bucket (``RADSHARE_STORAGE_URL=s3://bucket/prefix?endpoint_url=...&region=...``): AWS S3, MinIO,
Ceph's RADOS Gateway or any other S3 API, through boto3 (docs/operations.md "Object storage").

Keys are object names under the prefix, unchanged (``instances/...``, ``renders/...``). A put sends the whole
object with its MD5 (``Content-MD5``), which the server checks before it stores anything; the object then exists
whole, or not at all, once the put returns (an S3 PUT is atomic and durable when acknowledged), so ``put`` and
``put_durable`` are the same here. Objects above ``MULTIPART_SIZE`` go up in parts, each with its own MD5; a put that
fails part-way aborts its upload, and ``sweep_temporary`` aborts uploads a crash left behind.

Reads stream: ``open`` and ``open_range`` return a seekable file that fetches from where it is read with one ranged
GET, and only fetches again after a seek, so a ZIP of a whole study holds no object in memory.

Credentials come the standard way (the AWS environment variables, a shared credentials file, an instance role),
with ``?profile=`` to name a profile. Data still arriving is spooled in local temporary files (``?spool=/dir``,
default the system's temporary folder), as an object store has no temporary area of its own.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import tempfile
import threading
from collections.abc import Buffer, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from radshare.core.storage.base import Data, ObjectStat, Storage, StoredObject, check_key

TEMPORARY = (
    "incoming"  # reserved as a key's first part, as on the file system: a key means the same everywhere
)
MULTIPART_SIZE = 64 << 20  # larger objects go up in parts of PART_SIZE
PART_SIZE = 16 << 20
READ_SIZE = 1 << 20
SPOOL_IN_MEMORY = 8 << 20  # a put of chunks is spooled in memory up to this size, then to a temporary file
OPTIONS = ("endpoint_url", "region", "profile", "spool")


class S3Storage(Storage):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        spool: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.profile = profile
        self.spool = spool
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        """``s3://bucket[/prefix][?endpoint_url=...&region=...&profile=...&spool=...]``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("not an s3://bucket/prefix URL")
        query = parse_qs(parts.query, strict_parsing=False)
        unknown = sorted(set(query) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
        options = {name: query[name][-1] for name in OPTIONS if query.get(name)}
        return cls(parts.netloc, parts.path, **options)

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Storage(s3://{self.bucket}/{self.prefix}{where})"

    # A render process gets the storage with each job (pickled): the client is made again there.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """One boto3 client per storage and process (clients are thread-safe; their sessions are not)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3  # late import: only installations on object storage pay for it
                    from botocore.config import Config  # late import: as boto3

                    session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
                    self._client = session.client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        config=Config(
                            retries={"max_attempts": 5, "mode": "standard"},
                            # Content-MD5 is what every S3 API checks; newer default checksums are not.
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required",
                        ),
                    )
        return self._client

    def _name(self, key: str) -> str:
        check_key(key, reserved=TEMPORARY)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _folder(self, prefix: str) -> str:
        """The object-name prefix of the folder ``prefix`` ("" for the top), ending in "/" unless it is the
        bucket's top."""
        prefix = prefix.removesuffix("/")
        if prefix:
            return self._name(prefix) + "/"
        return f"{self.prefix}/" if self.prefix else ""

    # --- writing ---------------------------------------------------------------------------------

    def put_durable(self, key: str, data: Data) -> int:
        name = self._name(key)
        with _spooled(data, self.spool) as (body, size, md5):
            if size <= MULTIPART_SIZE:
                answer = self.client.put_object(
                    Bucket=self.bucket, Key=name, Body=body, ContentLength=size, ContentMD5=_b64(md5)
                )
                self._verify(name, answer, md5.hex())
            else:
                self._put_in_parts(name, body)
        return size

    def _verify(self, name: str, answer: dict[str, Any], expected_etag: str) -> None:
        """The ETag the server computed from what it stored is the MD5 we sent (a plain or multipart ETag; not with
        KMS or customer keys, where the server's own Content-MD5 check is what holds): otherwise the object is
        removed and the put fails, so that damaged bytes are never acknowledged (a server that checks Content-MD5
        refuses them before this)."""
        if answer.get("ServerSideEncryption") == "aws:kms" or answer.get("SSECustomerAlgorithm"):
            return
        etag = str(answer.get("ETag", "")).strip('"')
        if etag and etag != expected_etag:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=name)
            raise OSError(f"object {name!r} was stored with other bytes than were sent (ETag {etag})")

    def put(self, key: str, data: Data) -> int:
        return self.put_durable(key, data)

    def _put_in_parts(self, name: str, body: IO[bytes]) -> None:
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        try:
            parts = []
            digests = []
            number = 1
            while piece := body.read(PART_SIZE):
                digests.append(hashlib.md5(piece, usedforsecurity=False).digest())
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload,
                    PartNumber=number,
                    Body=piece,
                    ContentMD5=_b64(digests[-1]),
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                number += 1
            answer = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            raise
        whole = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        self._verify(name, answer, f"{whole}-{len(digests)}")

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    # --- reading ---------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        size = self.stat(key).size
        return _reader(self, self._name(key), 0, size)

    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        if start < 0 or end < start:
            raise ValueError(f"not a byte range: {start}..{end}")
        size = self.stat(key).size
        return _reader(self, self._name(key), min(start, size), min(end, size))

    def stat(self, key: str) -> ObjectStat:
        head = self._head(self._name(key))
        return ObjectStat(
            size=int(head["ContentLength"]), version=f"etag {head.get('ETag', '').strip(chr(34))}"
        )

    def _head(self, name: str) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no object {name!r}") from None
            raise
        return answer

    def exists(self, key: str) -> bool:
        try:
            self._head(self._name(key))
        except FileNotFoundError:
            return False
        return True

    def listdir(self, prefix: str) -> tuple[list[str], list[str]]:
        folder = self._folder(prefix)
        folders: list[str] = []
        files: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(folder) :].removesuffix("/")
                if name and not (folder == self._folder("") and name == TEMPORARY):
                    folders.append(name)
            files.extend(item["Key"][len(folder) :] for item in page.get("Contents", []))
        return sorted(folders), sorted(f for f in files if f)

    def scan(self, prefix: str = "") -> Iterator[StoredObject]:
        folder = self._folder(prefix)
        top = self._folder("")
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder)
        for page in pages:  # one page (up to 1,000 keys) at a time, in the store's own (byte) order
            for item in page.get("Contents", []):
                key = item["Key"][len(top) :]
                if key and not key.startswith(f"{TEMPORARY}/"):
                    modified = item["LastModified"].astimezone(UTC)
                    yield StoredObject(key, int(item["Size"]), modified)

    # --- the temporary area ----------------------------------------------------------------------

    def temporary(self) -> BinaryIO:
        return tempfile.TemporaryFile(dir=self.spool)

    def sweep_temporary(self, older_than: timedelta) -> int:
        """Abort the multipart uploads under the prefix that a crash left unfinished (they hold storage, unseen)."""
        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._folder("")
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"].astimezone(UTC) <= cutoff:
                    with contextlib.suppress(Exception):  # finished or aborted meanwhile
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        return aborted


# --- helpers -----------------------------------------------------------------------------------------


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _missing(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


@contextlib.contextmanager
def _spooled(data: Data, spool: str | None) -> Iterator[tuple[IO[bytes], int, bytes]]:
    """``data`` as a seekable file at its start, with its size and MD5: what a put sends and checks. Bytes are used
    as they are; chunks or a file are read to their end first (spooled to a temporary file when large), so that a
    source that fails part-way fails before anything is sent."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        yield io.BytesIO(view), view.nbytes, hashlib.md5(view, usedforsecurity=False).digest()
        return
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=spool) as body:
        if hasattr(data, "read"):
            while piece := data.read(READ_SIZE):
                md5.update(piece)
                size += body.write(piece)
        else:
            for chunk in data:
                piece = chunk if isinstance(chunk, Buffer) else bytes(chunk)
                md5.update(piece)
                size += body.write(piece)
        body.seek(0)
        yield body, size, md5.digest()


def _reader(storage: S3Storage, name: str, start: int, end: int) -> BinaryIO:
    return io.BufferedReader(_Range(storage, name, start, end), READ_SIZE)


class _Range(io.RawIOBase):
    """Bytes ``start``..``end - 1`` of an object, seekable (positions count from ``start``): a ranged GET from the
    position read, kept open for the reads that follow and opened again only after a seek."""

    def __init__(self, storage: S3Storage, name: str, start: int, end: int) -> None:
        self._storage, self._name = storage, name
        self.name = name  # as a file's name: pydicom and others read it
        self._start, self._end = start, end
        self._position = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        length = self._end - self._start
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._position + offset, io.SEEK_END: length + offset}[
            whence
        ]
        if target < 0:
            raise ValueError("negative seek position")
        if target != self._position:
            self._drop()
            self._position = target
        return self._position

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        left = self._end - self._start - self._position
        if left <= 0 or not view.nbytes:
            return 0
        if self._body is None:
            first = self._start + self._position
            answer = self._storage.client.get_object(
                Bucket=self._storage.bucket, Key=self._name, Range=f"bytes={first}-{self._end - 1}"
            )
            self._body = answer["Body"]
        data = self._body.read(min(view.nbytes, left))
        if not data:
            raise OSError(f"object {self._name!r} ended early")
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()
