"""The one check of a received file's encoding (``studies.encoding``): strict on what is broken, tolerant of
what pydicom reads well (PS3.5 sections 7 and 8, Annex A.4)."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from pathlib import Path

import pytest
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

from radshare.studies.encoding import EncodingError, check_encoding
from radshare.studies.errors import IngestError
from radshare.studies.header import read_header
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
