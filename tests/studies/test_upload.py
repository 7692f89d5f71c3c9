"""Upload in the sender portal (docs/requirements.md B1.4, S1.5): files, ZIPs and DICOMDIR folders, through
the real ingest path.

Requests are built as browsers send them (multipart, relative paths as the folder picker gives them), files are
small synthetic images, and every test checks the rows and the files on disk, not only the page.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import RLELossless

from radshare.audit.models import AuditEvent
from radshare.organisations.models import Organisation, Sender
from radshare.organisations.services import create_sender
from radshare.studies import upload as upload_module
from radshare.studies import views
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode
from radshare.studies.upload import Outcome, Reason, SpoolUploadHandler, UploadImport, UploadSpool

URL = "/portal/upload/"
ANNA = FakePatient("P100", "Jansen^Anna", dt.date(1968, 3, 14), sex="F")
PIET = FakePatient("P200", "Jansen^Piet", dt.date(1970, 5, 1), sex="M")
BOUNDARY = "----radshare-test-boundary-7MA4YWxkTrZu0gW"


# --- helpers ---------------------------------------------------------------------------------------


def images(patient: FakePatient = ANNA, count: int = 2, **kwargs: Any) -> list[Dataset]:
    return ct_series(patient, count=count, size=32, **kwargs)


def multipart(files: Iterable[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A body as a browser sends it; ``filename`` carries the relative path (folder picker, or our script)."""
    out = io.BytesIO()
    for name, value in (fields or {}).items():
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for path, data in files:
        out.write(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{path}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={BOUNDARY}"


def client_for(user: Sender | None, language: str = "en", **kwargs: Any) -> Client:
    client = Client(headers={"accept-language": language}, **kwargs)
    if user is not None:
        client.force_login(user)
    return client


def upload(client: Client, files: Iterable[tuple[str, bytes]], **headers: str) -> Any:
    body, content_type = multipart(files)
    return client.post(URL, body, content_type=content_type, headers=headers)


def zipped(members: Iterable[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(
                zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=compression
            )
    return buffer.getvalue()


def report_rows(page: str) -> dict[str, tuple[str, str]]:
    """path -> (outcome, reason) from the report's "all files" table."""
    found = re.findall(
        r'<tr class="(stored|duplicate|refused|skipped)">\s*<td[^>]*class="path">(.*?)</td>\s*<td[^>]*>(.*?)</td>'
        r"\s*<td[^>]*>(.*?)</td>",
        page,
        re.S,
    )
    return {html.unescape(p): (o, html.unescape(re.sub(r"<[^>]+>", "", r)).strip()) for o, p, _t, r in found}


def totals(page: str) -> dict[str, int]:
    return {
        k: int(v)
        for v, k in re.findall(r"<strong>(\d+)</strong> (stored|already present|refused|skipped)", page)
    }


def stored_files(root: Path) -> list[Path]:
    return (
        sorted(p for p in (root / "instances").rglob("*") if p.is_file())
        if (root / "instances").exists()
        else []
    )


def write_fileset(folder: Path, datasets: list[Dataset]) -> None:
    """A CD/DVD export as PS3.10 media: a DICOMDIR and PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx files."""
    fs = FileSet()
    for ds in datasets:
        ds.StudyID = ds.get("StudyID") or "1"  # a STUDY record key FileSet.add() insists on
        fs.add(ds)
    fs.write(folder)


def folder_files(root: Path, prefix: str) -> list[tuple[str, bytes]]:
    return [
        (f"{prefix}/{p.relative_to(root).as_posix()}", p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]


@pytest.fixture
def alice(sender: Sender) -> Client:
    return client_for(sender)


# --- a ZIP with good, duplicate, broken and non-DICOM files -----------------------------------------

EN = {
    "unreadable": "Not a readable DICOM file (damaged or incomplete).",
    "truncated": "The file is incomplete (cut off). Copy it again from the original disc or folder.",
    "missing_uids": "The file lacks identifiers every DICOM image must have (study, series or image UID).",
    "not_dicom": "Not a DICOM file.",
}


@pytest.mark.django_db
def test_zip_with_good_duplicate_broken_and_other_files_reports_each(
    organisation: Organisation, alice: Client, storage_root: Path
) -> None:
    good = images(count=2)
    already = images(count=1)[0]
    store_instance(organisation, encode(already), source=Instance.Source.SCP)
    before = stored_files(storage_root)
    no_uid = images(count=1)[0]
    del no_uid.StudyInstanceUID
    whole = encode(images(count=1)[0])
    members = [
        ("export/IMG1.dcm", encode(good[0])),
        ("export/IMG2.dcm", encode(good[1])),
        ("export/again.dcm", encode(already)),
        ("export/garbage.dcm", bytes(range(256)) * 8),
        ("export/truncated.dcm", whole[: len(whole) * 2 // 3]),
        ("export/no_uid.dcm", encode(no_uid)),
        ("export/autorun.inf", b"[autorun]\r\nopen=viewer.exe\r\n"),
        ("export/viewer.exe", b"MZ\x90\x00" + bytes(500)),
    ]

    response = upload(alice, [("export.zip", zipped(members))])

    assert response.status_code == 200
    page = response.content.decode()
    assert report_rows(page) == {
        "export.zip/export/IMG1.dcm": ("stored", ""),
        "export.zip/export/IMG2.dcm": ("stored", ""),
        "export.zip/export/again.dcm": ("duplicate", ""),
        "export.zip/export/garbage.dcm": ("refused", EN["unreadable"]),
        "export.zip/export/truncated.dcm": ("refused", EN["truncated"]),
        "export.zip/export/no_uid.dcm": ("refused", EN["missing_uids"]),
        "export.zip/export/autorun.inf": ("skipped", EN["not_dicom"]),
        "export.zip/export/viewer.exe": ("skipped", EN["not_dicom"]),
    }
    assert totals(page) == {"stored": 2, "already present": 1, "refused": 3, "skipped": 2}
    # Rows and files: the two new images once each, the earlier copy untouched, nothing of the broken ones.
    rows = Instance.objects.filter(organisation=organisation)
    assert sorted(rows.values_list("sop_instance_uid", "source")) == sorted(
        [
            (good[0].SOPInstanceUID, "upload"),
            (good[1].SOPInstanceUID, "upload"),
            (already.SOPInstanceUID, "scp"),
        ]
    )
    files = stored_files(storage_root)
    assert len(files) == 3
    assert set(before) <= set(files)
    for instance in rows:
        assert (storage_root / "instances" / instance.storage_key).read_bytes()[128:132] == b"DICM"
    study = Study.objects.get(organisation=organisation, study_instance_uid=good[0].StudyInstanceUID)
    assert study.number_of_instances == 2
    assert f'href="/portal/studies/{study.pk}/"' in page


@pytest.mark.django_db
def test_broken_and_incomplete_pixel_data_refused_as_the_storage_scp_does(
    organisation: Organisation, alice: Client, storage_root: Path
) -> None:
    # The same rule as the SCP's 0xC000 (studies.encoding.check_encoding): here with the portal's reasons.
    good, short, bad_vr, rle = images(count=4)
    short.PixelData = short.PixelData[:-64]  # well framed, two rows fewer than Rows x Columns
    data = encode(bad_vr)
    at = data.find(b"\x08\x00\x3e\x10LO")  # (0008,103E) Series Description, VR "ZZ"
    broken_vr = data[: at + 4] + b"ZZ" + data[at + 6 :]
    rle.compress(RLELossless)
    no_delimiter = encode(rle)[:-8]  # the fragments' sequence delimiter is missing

    response = upload(
        alice,
        [
            ("good.dcm", encode(good)),
            ("short.dcm", encode(short)),
            ("bad_vr.dcm", broken_vr),
            ("rle.dcm", no_delimiter),
        ],
    )

    assert report_rows(response.content.decode()) == {
        "good.dcm": ("stored", ""),
        "short.dcm": ("refused", EN["truncated"]),
        "bad_vr.dcm": ("refused", EN["unreadable"]),
        "rle.dcm": ("refused", EN["truncated"]),
    }
    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [good.SOPInstanceUID]
    assert len(stored_files(storage_root)) == 1


@pytest.mark.django_db
def test_loose_files_and_a_zip_in_one_upload(organisation: Organisation, alice: Client) -> None:
    loose = images(count=2)
    in_zip = images(PIET, count=2)
    response = upload(
        alice,
        [
            ("CT1.dcm", encode(loose[0])),
            ("CT2", encode(loose[1])),  # no suffix: recognised by content
            (
                "piet.zip",
                zipped([(f"s/{i}.dcm", encode(ds)) for i, ds in enumerate(in_zip)], zipfile.ZIP_DEFLATED),
            ),
            ("notes.txt", b"see the DVD"),
        ],
    )
    rows = report_rows(response.content.decode())
    assert [o for o, _r in rows.values()] == ["stored", "stored", "stored", "stored", "skipped"]
    assert Instance.objects.filter(organisation=organisation, source="upload").count() == 4
    assert Study.objects.filter(organisation=organisation).count() == 2


# --- DICOMDIR folders --------------------------------------------------------------------------------


def _dvd(tmp_path: Path) -> tuple[Path, list[Dataset]]:
    datasets = [*images(count=3), cr_image(PIET)]
    datasets[-1].Rows = datasets[-1].Columns = 32
    datasets[-1].PixelData = bytes(32 * 32 * 2)
    folder = tmp_path / "media"
    write_fileset(folder, datasets)
    return folder, datasets


@pytest.mark.django_db
@pytest.mark.parametrize(
    "as_shown",
    [lambda p: p, lambda p: p.lower() + ";1" if "/" in p and "." not in p.rsplit("/", 1)[1] else p.lower()],
    ids=["as written", "ISO 9660 look: lower case, version suffix"],
)
def test_dicomdir_folder_imports_every_referenced_file(
    organisation: Organisation, alice: Client, tmp_path: Path, as_shown: Any
) -> None:
    folder, datasets = _dvd(tmp_path)
    extra = images(count=1)[0]  # DICOM beside the DICOMDIR that it does not list
    files = [(as_shown(p), data) for p, data in folder_files(folder, "DVD")]
    files += [("DVD/EXTRA/X1.dcm", encode(extra)), ("DVD/AUTORUN.INF", b"[autorun]\r\n")]

    response = upload(alice, files)

    page = response.content.decode()
    rows = report_rows(page)
    uids = set(Instance.objects.filter(organisation=organisation).values_list("sop_instance_uid", flat=True))
    assert uids == {ds.SOPInstanceUID for ds in datasets} | {extra.SOPInstanceUID}
    assert rows[as_shown("DVD/DICOMDIR")] == (
        "skipped",
        "DICOMDIR: the disc's index, used to find its images.",
    )
    assert rows["DVD/EXTRA/X1.dcm"] == ("stored", "(not listed in the DICOMDIR)")
    assert rows["DVD/AUTORUN.INF"] == ("skipped", "Not a DICOM file. (not listed in the DICOMDIR)")
    referenced = [p for p in rows if "/PT" in p.upper()]
    assert len(referenced) == 4
    assert all(rows[p] == ("stored", "") for p in referenced)
    assert totals(page) == {"stored": 5, "already present": 0, "refused": 0, "skipped": 2}
    for study in Study.objects.filter(organisation=organisation):
        assert f'href="/portal/studies/{study.pk}/"' in page


@pytest.mark.django_db
def test_dicomdir_folder_in_a_zip(organisation: Organisation, alice: Client, tmp_path: Path) -> None:
    folder, datasets = _dvd(tmp_path)
    archive = zipped(folder_files(folder, "Patient DVD/export"), zipfile.ZIP_DEFLATED)

    response = upload(alice, [("dvd.zip", archive), ("empty.zip", zipped([]))], accept="application/x-ndjson")
    events = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert events[0] == {"event": "start", "total": 6}  # 4 images, the DICOMDIR, the empty ZIP
    assert events[-2] == {"event": "progress", "done": 6, "total": 6}
    page = events[-1]["html"]

    uids = set(Instance.objects.filter(organisation=organisation).values_list("sop_instance_uid", flat=True))
    assert uids == {ds.SOPInstanceUID for ds in datasets}
    rows = report_rows(page)
    assert rows["dvd.zip/Patient DVD/export/DICOMDIR"][0] == "skipped"
    assert [o for p, (o, _r) in rows.items() if p.startswith("dvd.zip/") and "DICOMDIR" not in p] == [
        "stored"
    ] * 4
    assert rows["empty.zip"] == ("skipped", "Empty file.")
    assert "(not listed in the DICOMDIR)" not in page


@pytest.mark.django_db
def test_dicomdir_file_missing_from_the_upload(
    organisation: Organisation, alice: Client, tmp_path: Path
) -> None:
    folder, datasets = _dvd(tmp_path)
    files = folder_files(folder, "DVD")
    missing = next(p for p, _d in files if p.endswith("IM000001"))
    # The DICOMDIR named as ISO 9660 media without Rock Ridge show it; the missing file is named as listed.
    files = [(p + ";1" if p.endswith("DICOMDIR") else p, d) for p, d in files if p != missing]

    page = upload(alice, files).content.decode()

    assert report_rows(page)[missing] == ("refused", "Listed in the DICOMDIR, but not in the upload.")
    assert Instance.objects.filter(organisation=organisation).count() == len(datasets) - 1


# --- limits and bad archives -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("en", "This upload is larger than the limit of 1 MB, so nothing was stored."),
        ("nl", "Deze upload is groter dan de limiet van 1 MB; er is niets opgeslagen."),
    ],
)
def test_oversize_upload_refused_and_nothing_stored(
    organisation: Organisation,
    sender: Sender,
    radshare_config: Any,
    storage_root: Path,
    language: str,
    message: str,
) -> None:
    radshare_config(upload_max_mb=1)
    files = [
        (f"{i}.dcm", encode(ds)) for i, ds in enumerate(ct_series(ANNA, count=3, size=512))
    ]  # 3 x 512 KB
    client = client_for(sender, language)

    response = upload(client, files)
    assert response.status_code == 413
    assert message in html.unescape(response.content.decode())

    response = upload(client, files, accept="application/x-ndjson")  # the page's script
    assert response.status_code == 413
    assert response.json()["event"] == "error"
    assert response.json()["message"].startswith(message)

    assert not Instance.objects.exists()
    assert stored_files(storage_root) == []
    assert not list((storage_root / "incoming").iterdir())  # the spool leaves nothing behind
    events = AuditEvent.objects.filter(action="portal.upload")
    assert [(e.outcome, e.detail["reason"]) for e in events] == [("failure", "too_large")] * 2


def test_oversize_by_content_length_keeps_no_byte() -> None:
    """A body announcing more than the limit: its fields are still read (the CSRF token), no file byte is kept."""
    body, _content_type = multipart([("a.dcm", b"x" * 1000)], {"csrfmiddlewaretoken": "token"})
    spool = UploadSpool(1024 * 1024)
    try:
        post, files = SpoolUploadHandler(spool).handle_raw_input(
            io.BytesIO(body), {}, 40 * 1024 * 1024, BOUNDARY.encode()
        )
        assert post["csrfmiddlewaretoken"] == "token"
        assert not files
        assert spool.too_large
        assert spool.files == []
        assert spool.total == 1000
        assert os.fstat(spool._file.fileno()).st_size == 0
    finally:
        spool.close()


@pytest.mark.django_db
def test_too_many_files_refused_and_nothing_stored(
    alice: Client, monkeypatch: pytest.MonkeyPatch, storage_root: Path
) -> None:
    monkeypatch.setattr(upload_module, "MAX_FILES", 2)
    monkeypatch.setattr(views, "MAX_FILES", 2)
    response = upload(alice, [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(images(count=3))])
    assert response.status_code == 413
    assert "This upload holds more than 2 files, so nothing was stored." in html.unescape(
        response.content.decode()
    )
    assert not Instance.objects.exists()
    assert stored_files(storage_root) == []


@pytest.mark.django_db
def test_zip_that_unpacks_beyond_the_limit_is_refused_whole(
    organisation: Organisation, alice: Client, radshare_config: Any
) -> None:
    radshare_config(upload_max_mb=1)
    good = images(count=1)[0]
    bomb = zipped(
        [("a.dcm", encode(images(count=1)[0])), ("zeros.dcm", bytes(2 * 1024 * 1024))], zipfile.ZIP_DEFLATED
    )
    assert len(bomb) < 64 * 1024

    page = upload(alice, [("bomb.zip", bomb), ("good.dcm", encode(good))]).content.decode()

    assert report_rows(page) == {
        "bomb.zip": (
            "refused",
            "Unpacked, this ZIP exceeds the upload limit of 1 MB. Nothing from it was stored.",
        ),
        "good.dcm": ("stored", ""),
    }
    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [good.SOPInstanceUID]


@pytest.mark.django_db
def test_broken_zip_harms_nothing_stored(
    organisation: Organisation, alice: Client, storage_root: Path
) -> None:
    earlier = images(count=2)
    for ds in earlier:
        store_instance(organisation, encode(ds), source=Instance.Source.SCP)
    before = {p: p.read_bytes() for p in stored_files(storage_root)}
    archive = zipped([(f"{i}.dcm", encode(ds)) for i, ds in enumerate([*earlier, *images(count=2)])])
    good = images(count=1)[0]

    page = upload(
        alice, [("cut.zip", archive[: len(archive) // 2]), ("good.dcm", encode(good))]
    ).content.decode()

    assert report_rows(page) == {
        "cut.zip": (
            "refused",
            "Not a readable ZIP file (damaged or incomplete). Nothing from it was stored.",
        ),
        "good.dcm": ("stored", ""),
    }
    assert {p: p.read_bytes() for p in before} == before
    assert Instance.objects.count() == 3
    assert Study.objects.get(study_instance_uid=earlier[0].StudyInstanceUID).number_of_instances == 2


@pytest.mark.django_db
def test_zip_member_names_are_never_paths_on_disk(
    organisation: Organisation, alice: Client, storage_root: Path, tmp_path: Path
) -> None:
    a, b, c, d = images(count=4)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../../evil.dcm", encode(a))
        zf.writestr("/abs/olute.dcm", encode(b))
        zf.writestr("win\\dir\\c.dcm", encode(c))
        zf.writestr("inner.zip", zipped([("d.dcm", encode(d))]))
        zf.writestr("__MACOSX/._evil.dcm", b"\x00\x05\x16\x07")
        zf.writestr("secret.dcm", b"not really encrypted")

    page = upload(alice, [("tricks.zip", mark_encrypted(buffer.getvalue(), b"secret.dcm"))]).content.decode()

    assert report_rows(page) == {
        "tricks.zip/evil.dcm": ("stored", ""),
        "tricks.zip/abs/olute.dcm": ("stored", ""),
        "tricks.zip/win/dir/c.dcm": ("stored", ""),
        "tricks.zip/inner.zip": ("skipped", "A ZIP inside a ZIP is not opened. Upload it separately."),
        "tricks.zip/secret.dcm": (
            "refused",
            "Protected with a password in the ZIP. Upload it without a password.",
        ),
    }
    assert Instance.objects.count() == 3
    assert not list(tmp_path.rglob("evil*"))
    assert all(re.fullmatch(r"[0-9a-f]{32}\.dcm", p.name) for p in stored_files(storage_root))


def mark_encrypted(archive: bytes, name: bytes) -> bytes:
    """Set the "encrypted" flag (PKWARE APPNOTE 4.4.4, bit 0) of one member; zipfile cannot write encryption."""
    data = bytearray(archive)
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(signature)
        while at != -1:
            if data[at + name_at : at + name_at + len(name)] == name:
                data[at + flags_at] |= 0x1
            at = data.find(signature, at + 4)
    return bytes(data)


# --- what DICOM looks like on old media ----------------------------------------------------------------


@pytest.mark.django_db
def test_data_sets_without_file_meta_are_stored_as_part10(
    organisation: Organisation, alice: Client, storage_root: Path
) -> None:
    implicit = images(count=1)[0]
    raw = io.BytesIO()
    implicit.file_meta = FileMetaDataset()
    implicit.save_as(raw, implicit_vr=True, little_endian=True)  # no preamble, no file meta: a bare data set
    with_meta = io.BytesIO()
    images(count=1)[0].save_as(with_meta, enforce_file_format=True)
    no_preamble = with_meta.getvalue()[128 + 4 :]  # file meta, but no preamble (seen on old media)
    samples = {
        name: Path(get_testdata_file(name)).read_bytes()
        for name in ("ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm", "no_meta.dcm")
    }
    files = [("raw_implicit", raw.getvalue()), ("no_preamble.dcm", no_preamble), *samples.items()]

    page = upload(alice, files).content.decode()

    rows = report_rows(page)
    assert rows == {
        "raw_implicit": ("stored", ""),
        "no_preamble.dcm": ("stored", ""),
        "ExplVR_LitEndNoMeta.dcm": ("stored", ""),
        # The same SOP Instance UID as the little endian sample: one instance, stored once.
        "ExplVR_BigEndNoMeta.dcm": ("duplicate", ""),
        # pydicom's sample begins with a stray byte before the data set; pydicom cannot read it either.
        "no_meta.dcm": ("refused", EN["unreadable"]),
    }
    for instance in Instance.objects.all():
        data = (storage_root / "instances" / instance.storage_key).read_bytes()
        ds = dcmread(io.BytesIO(data))  # a valid Part 10 file, no force needed
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == instance.sop_instance_uid
        assert ds.file_meta.TransferSyntaxUID == instance.transfer_syntax_uid
    wrapped = Instance.objects.get(sop_instance_uid=implicit.SOPInstanceUID)
    assert wrapped.transfer_syntax_uid == "1.2.840.10008.1.2"
    assert (storage_root / "instances" / wrapped.storage_key).read_bytes().endswith(raw.getvalue())


@pytest.mark.django_db
def test_conflicting_patient_refused_with_its_reason(organisation: Organisation, alice: Client) -> None:
    first = images(count=1)[0]
    store_instance(organisation, encode(first), source=Instance.Source.SCP)
    other = images(PIET, count=1, study_uid=first.StudyInstanceUID)[0]

    rows = report_rows(upload(alice, [("piet.dcm", encode(other))]).content.decode())

    assert rows["piet.dcm"][0] == "refused"
    assert rows["piet.dcm"][1].startswith("This study is already filed under another patient.")
    assert Instance.objects.count() == 1


@pytest.mark.django_db
def test_full_storage_stops_trying_and_says_so(
    organisation: Organisation, alice: Client, storage_root: Path
) -> None:
    (storage_root / "instances").parent.mkdir(parents=True, exist_ok=True)
    (storage_root / "instances").write_bytes(b"")  # not a folder: every write fails as on a broken disk
    files = [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(images(count=3))]

    rows = report_rows(upload(alice, files).content.decode())

    reason = "Could not be saved: storage is full or unavailable. Tell the administrator, then upload again."
    assert rows == {f"{i}.dcm": ("refused", reason) for i in range(3)}
    assert not Instance.objects.exists()


# --- who may upload, where it goes, what is recorded ---------------------------------------------


@pytest.mark.django_db
def test_other_organisation_stores_the_same_files_separately(
    organisation: Organisation, other_organisation: Organisation, sender: Sender
) -> None:
    bob = create_sender(other_organisation, "bob", "another correct horse battery")
    files = [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(images(count=2))]

    upload(client_for(sender), files)
    page = upload(client_for(bob), files).content.decode()

    assert totals(page)["stored"] == 2
    for org in (organisation, other_organisation):
        assert Instance.objects.filter(organisation=org).count() == 2
        study = Study.objects.get(organisation=org)
        assert study.patient.organisation == org
    bobs_study = Study.objects.get(organisation=other_organisation)
    assert f'href="/portal/studies/{bobs_study.pk}/"' in page
    assert f'href="/portal/studies/{Study.objects.get(organisation=organisation).pk}/"' not in page


@pytest.mark.django_db
def test_anonymous_is_sent_to_login_and_nothing_is_stored(organisation: Organisation) -> None:
    client = client_for(None)
    assert client.get(URL).url.startswith("/portal/login/?next=")
    response = upload(client, [("a.dcm", encode(images(count=1)[0]))])
    assert response.status_code == 302
    assert response.url.startswith("/portal/login/?next=")
    assert not Instance.objects.exists()


@pytest.mark.django_db
def test_csrf_token_required(sender: Sender) -> None:
    client = client_for(sender, enforce_csrf_checks=True)
    files = [("a.dcm", encode(images(count=1)[0]))]
    body, content_type = multipart(files)
    assert client.post(URL, body, content_type=content_type).status_code == 403
    assert not Instance.objects.exists()

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(URL).content.decode())
    assert token is not None
    body, content_type = multipart(files, {"csrfmiddlewaretoken": token.group(1)})
    assert client.post(URL, body, content_type=content_type).status_code == 200
    assert Instance.objects.count() == 1


@pytest.mark.django_db
def test_one_audit_entry_per_upload(organisation: Organisation, sender: Sender, alice: Client) -> None:
    datasets = images(count=2)
    store_instance(organisation, encode(datasets[0]), source=Instance.Source.SCP)
    files = [("Jansen_Anna_1.dcm", encode(datasets[0])), ("Jansen_Anna_2.dcm", encode(datasets[1]))]
    files.append(("broken.dcm", bytes(range(256)) * 4))

    upload(alice, files)

    event = AuditEvent.objects.get(action="portal.upload")
    assert event.outcome == "success"
    assert event.actor_id == sender.pk
    assert event.organisation_id == organisation.pk
    assert event.study_uids == [datasets[0].StudyInstanceUID]
    assert event.patient_ref == Study.objects.get().patient_id
    assert event.detail["stored"] == 1
    assert event.detail["duplicate"] == 1
    assert event.detail["refused"] == 1
    assert event.detail["refusal_reasons"] == ["unreadable"]
    assert "Jansen" not in json.dumps(event.detail)  # file names may name the patient: never in the trail


@pytest.mark.django_db
def test_nothing_chosen(alice: Client) -> None:
    response = upload(alice, [])
    assert response.status_code == 400
    assert "Choose one or more files, or a folder, to upload." in html.unescape(response.content.decode())


# --- the page, the progress stream, languages ----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "texts"),
    [
        (
            "en",
            [
                "Upload studies",
                "Upload report",
                ">Stored<",
                ">Already present<",
                "Not a DICOM file.",
                EN["unreadable"],
            ],
        ),
        (
            "nl",
            [
                "Onderzoeken uploaden",
                "Uploadverslag",
                ">Opgeslagen<",
                ">Al aanwezig<",
                "Geen DICOM-bestand.",
                "Geen leesbaar DICOM-bestand (beschadigd of onvolledig).",
            ],
        ),
    ],
)
def test_page_and_report_in_both_languages(sender: Sender, language: str, texts: list[str]) -> None:
    client = client_for(sender, language)
    page = client.get(URL).content.decode()
    assert texts[0] in page
    assert 'href="/portal/upload/" aria-current="page"' in page
    assert "webkitdirectory" in page
    assert 'enctype="multipart/form-data"' in page
    assert '<script src="/static/radshare/upload.js" defer></script>' in page
    assert "<script>" not in page  # CSP: no inline script

    first, second = images(count=2)
    upload(client, [("a.dcm", encode(first))])
    files = [("a.dcm", encode(first)), ("d.dcm", encode(second)), ("b.txt", b"x"), ("c.dcm", b"x" * 200)]
    report = html.unescape(upload(client, files).content.decode())
    for text in texts[1:]:
        assert text in report


@pytest.mark.django_db
def test_progress_stream_for_the_page_script(organisation: Organisation, alice: Client) -> None:
    files = [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(images(count=3))] + [("x.txt", b"x")]

    response = upload(alice, files, accept="application/x-ndjson")

    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Cache-Control"] == "no-store"
    events = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert events[0] == {"event": "start", "total": 4}
    assert [e["done"] for e in events[1:-1]] == [1, 2, 3, 4]
    assert events[-1]["event"] == "done"
    assert events[-1]["counts"] == {"stored": 3, "duplicate": 0, "refused": 0, "skipped": 1}
    study = Study.objects.get(organisation=organisation)
    assert f'href="/portal/studies/{study.pk}/"' in events[-1]["html"]
    assert AuditEvent.objects.filter(action="portal.upload").count() == 1


@pytest.mark.django_db
def test_browser_gone_mid_way_keeps_what_was_stored_on_record(
    organisation: Organisation, alice: Client
) -> None:
    datasets = images(count=3)
    response = upload(
        alice, [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(datasets)], accept="application/x-ndjson"
    )
    lines = iter(response.streaming_content)
    assert json.loads(next(lines))["event"] == "start"
    assert json.loads(next(lines)) == {"event": "progress", "done": 1, "total": 3}
    # The connection is gone: the server closes the iterable it was sending (the test client's wrapper, which
    # also keeps the test's database connection open around the response's own close).
    response._iterator.close()

    assert Instance.objects.filter(organisation=organisation).count() == 1
    event = AuditEvent.objects.get(action="portal.upload")
    assert event.detail["stored"] == 1
    assert event.detail["interrupted"] is True
    assert event.study_uids == [datasets[0].StudyInstanceUID]


@pytest.mark.django_db(transaction=True)
def test_progress_stream_under_asgi(organisation: Organisation, sender: Sender) -> None:
    """Under ASGI the lines must leave as they are made (an async iterator), the work in a sync thread."""
    files = [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(images(count=2))]
    body, content_type = multipart(files)
    client = AsyncClient(headers={"accept-language": "nl"})
    client.force_login(sender)

    async def run() -> list[dict[str, Any]]:
        response = await client.post(
            URL, body, content_type=content_type, headers={"accept": "application/x-ndjson"}
        )
        assert response.is_async
        chunks = [chunk async for chunk in response.streaming_content]
        return [json.loads(line) for line in b"".join(chunks).splitlines()]

    events = async_to_sync(run)()
    assert [e["event"] for e in events] == ["start", "progress", "progress", "done"]
    assert "Uploadverslag" in events[-1]["html"]
    assert Instance.objects.filter(organisation=organisation).count() == 2


# --- the service on its own ------------------------------------------------------------------------


@pytest.mark.django_db
def test_service_yields_one_result_per_file_with_reason_codes(organisation: Organisation) -> None:
    spool = UploadSpool(10 * 1024 * 1024)
    try:
        for path, data in [("a.dcm", encode(images(count=1)[0])), ("b.dcm", b""), ("c.bin", b"\x01\x02")]:
            spool.receive(path, iter([data]))
        run = UploadImport(organisation, spool)
        assert run.prepare() == 3
        results = list(run.run())
    finally:
        spool.close()
    assert [(r.path, r.outcome, r.reason) for r in results] == [
        ("a.dcm", Outcome.STORED, None),
        ("b.dcm", Outcome.SKIPPED, Reason.EMPTY),
        ("c.bin", Outcome.SKIPPED, Reason.NOT_DICOM),
    ]
