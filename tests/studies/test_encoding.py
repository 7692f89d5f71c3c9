"""The one check of a received file's encoding (``studies.encoding``): strict on what is broken, tolerant of
what pydicom reads well (PS3.5 sections 7 and 8, Annex A.4)."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from radshare import dicom
from radshare.studies.encoding import EncodingError, check_encoding
from radshare.studies.errors import IngestError
from radshare.studies.header import HEADER_TAGS, Elements, Header, read_header
from radshare.studies.synthetic import FakePatient, ct_series, encode

PATIENT = FakePatient("ENC-1", "Codering^Test", dt.date(1970, 1, 1))
# The only ones of pydicom's Part 10 samples refused: two cut off on purpose, and a hand-edited DICOMDIR whose
# last record runs 24 bytes past the end of the file (pydicom reads what there is).
CUT_OFF_SAMPLES = {"MR_truncated.dcm", "rtplan_truncated.dcm", "DICOMDIR-nooffset"}


def part10_samples() -> list[Path]:
    """pydicom's own sample files (those installed with it: nothing is downloaded)."""
    samples = Path(get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
    return sorted(p for p in samples.rglob("*") if p.is_file() and p.read_bytes()[128:132] == b"DICM")


def test_pydicom_samples_are_accepted_except_those_cut_off() -> None:
    refused = {}
    for path in part10_samples():
        try:
            check_encoding(path.read_bytes())
        except EncodingError as exc:
            refused[path.name] = exc.incomplete
    assert refused == dict.fromkeys(CUT_OFF_SAMPLES, True)


def ct() -> Dataset:
    (ds,) = ct_series(PATIENT, count=1, size=16)
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = [item]
    ds["ReferencedImageSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    return ds


@pytest.mark.parametrize(
    "transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
def test_other_native_transfer_syntaxes(transfer_syntax: str) -> None:
    ds = ct()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    check_encoding(encode(ds))
    ds.PixelData = ds.PixelData[:-2]
    with pytest.raises(EncodingError, match="Pixel Data holds 510 bytes"):
        check_encoding(encode(ds))


def test_tolerated_as_pydicom_reads_them() -> None:
    ds = ct()
    ds.PixelData += bytes(64)  # excess pixel bytes: pydicom ignores them
    check_encoding(encode(ds))
    check_encoding(encode(ct()) + bytes(4))  # a few zero bytes after the last element
    # An implicit VR data set behind file meta that says explicit VR: pydicom reads the data as it is.
    implicit = ct()
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = encode(implicit)
    data_set = 144 + int.from_bytes(data[140:144], "little")  # after the file meta (its group length)
    meta = FileMetaDataset(implicit.file_meta)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, meta)
    check_encoding(out.getvalue() + data[data_set:])


def test_item_delimiter_outside_a_sequence_and_deep_nesting_are_refused() -> None:
    data = encode(ct())
    with pytest.raises(EncodingError, match="outside any sequence"):
        check_encoding(data + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + bytes(16))
    ds = ct()
    inner = ds
    for _ in range(80):
        item = Dataset()
        inner.ReferencedImageSequence = [item]
        inner = item
    with pytest.raises(EncodingError, match="nested deeper"):
        check_encoding(encode(ds))


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore")  # pydicom warns about what it reads of the damaged copies
def test_damaged_copies_are_refused_with_an_ingest_error_and_nothing_else() -> None:
    # Whatever the damage, ingest answers with an IngestError (a DICOM status), never another exception
    # (which the SCP would answer 0xC211 with a traceback).
    seeds = [encode(ct()), *(p.read_bytes() for p in part10_samples() if p.stat().st_size < 200_000)]
    rng = random.Random(20240101)  # noqa: S311 - reproducible damage, not secrets
    for _ in range(1000):
        data = bytearray(rng.choice(seeds))
        if rng.random() < 0.3:
            data = data[: rng.randrange(132, len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(132, min(len(data), 3000))] = rng.randrange(256)
        with contextlib.suppress(IngestError):
            read_header(bytes(data))


def _by_pydicom(data: bytes) -> Header | str:
    """The header as read before ``check_encoding`` kept the elements: pydicom parsing the file, then converting
    each value on access (the reference ``read_header`` must match); the name of the error when that fails."""
    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=True)
        return Header.of(ds, dicom.text(ds.file_meta, "TransferSyntaxUID", 64))
    except Exception as exc:  # noqa: BLE001 - compared by kind
        return type(exc).__name__


def _ours(data: bytes) -> Header | str | None:
    """``read_header``'s reading of ``data`` (without its checks of required values); None when the encoding is
    refused."""
    try:
        checked = check_encoding(data, HEADER_TAGS)
    except EncodingError:
        return None
    try:
        return Header.of(Elements(checked.elements), checked.transfer_syntax[:64])
    except Exception as exc:  # noqa: BLE001 - compared by kind
        return type(exc).__name__


def with_other_ids(transfer_syntax: str, *, undefined: bool, charset: str) -> bytes:
    """A CT whose BSN is only in Other Patient IDs Sequence, with a name in ``charset``."""
    ds = ct()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SpecificCharacterSet = charset
    ds.PatientName = "Bäcker^Jürgen" if charset == "ISO_IR 100" else "Ωμέγα^Δέλτα=Ω^Δ"
    ds.StudyDescription = "CT thorax  \\ abdomen "  # two values, padded
    ds.SeriesNumber = ""  # empty
    item = Dataset()
    item.PatientID = "123456782"
    item.IssuerOfPatientID = "NLMINBIZA"
    item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = [item]
    ds["OtherPatientIDsSequence"].is_undefined_length = undefined
    item.is_undefined_length_sequence_item = undefined
    return encode(ds)


@pytest.mark.filterwarnings("ignore")  # pydicom warns about what it reads of the samples and damaged copies
def test_the_header_is_read_as_pydicom_reads_the_whole_file() -> None:
    # read_header takes the elements check_encoding kept on its walk and lets pydicom convert only those: every
    # value must be what pydicom gives when it parses the file itself, on pydicom's own samples (character sets,
    # big endian, deflated, implicit VR), on Other Patient IDs in each encoding, and on damaged copies.
    files = [p.read_bytes() for p in part10_samples() if p.name not in CUT_OFF_SAMPLES]
    for syntax in (
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ):
        for undefined in (True, False):
            for charset in ("ISO_IR 100", "ISO_IR 192"):
                files.append(with_other_ids(syntax, undefined=undefined, charset=charset))
    bsn = _ours(files[-1])
    assert isinstance(bsn, Header)
    assert (bsn.bsn, bsn.patient_name) == ("123456782", "Ωμέγα^Δέλτα=Ω^Δ")
    assert (bsn.study_description, bsn.series_number) == ("CT thorax\\ abdomen", None)
    compared = 0
    for data in files:
        ours = _ours(data)
        assert ours is not None
        assert ours == _by_pydicom(data)
        compared += 1
    rng = random.Random(20261207)  # noqa: S311 - reproducible damage, not secrets
    seeds = [f for f in files if len(f) < 200_000]
    for _ in range(1500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(132, min(len(data), 1500))] = rng.randrange(256)
        ours = _ours(bytes(data))
        if ours is not None:
            assert ours == _by_pydicom(bytes(data))
            compared += 1
    assert compared > 1000
