"""Fixtures for tests against real PACS peers: a real Orthanc with test studies loaded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode
from tests.conftest import free_port, require, require_program
from tests.interop.orthanc import DICOMWEB_PLUGIN, Orthanc

# What the test PACS holds (names are the keys of ``Orthanc.studies``).
PATIENT = FakePatient("PACS-1", "Pacs^Test^Jan", dt.date(1970, 5, 6))
OTHER_PATIENT = FakePatient("PACS-2", "Other^Person", dt.date(1980, 1, 2))
UMLAUT_PATIENT = FakePatient("PACS-4", "Müller^Jürgen", dt.date(1965, 7, 8))  # UTF-8 (ISO_IR 192)
CT_DATE = dt.date(2023, 3, 14)
OTHER_DATE = dt.date(2022, 6, 1)
SAMPLES = {  # pydicom's own files, each in its own transfer syntax
    "ct-small": "CT_small.dcm",  # Explicit VR Little Endian, CT, 2004-01-19
    "mr-small": "MR_small.dcm",  # Explicit VR Little Endian, MR, 2004-08-26
    "j2k": "JPEG2000.dcm",  # JPEG 2000 (lossy), NM, 2004-08-26
    "jpeg-lossless": "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1, OT
}


def load_test_studies(orthanc: Orthanc) -> None:
    """A generated CT study (10 CT slices and a CR in a second series), another patient's CR, a patient with a
    non-ASCII name, and pydicom's samples."""
    ct = ct_series(PATIENT, count=10, size=64, study_date=CT_DATE, accession="ACC-PACS-1")
    study_uid = str(ct[0].StudyInstanceUID)
    cr = cr_image(
        PATIENT, study_uid=study_uid, description="CT thorax", study_date=CT_DATE, accession="ACC-PACS-1"
    )
    for ds in [*ct, cr]:
        orthanc.upload(encode(ds), study="ct")
    orthanc.upload(
        encode(cr_image(OTHER_PATIENT, study_date=OTHER_DATE, accession="ACC-PACS-2")), study="other"
    )
    for ds in ct_series(UMLAUT_PATIENT, count=1, size=32, study_date=dt.date(2021, 2, 3)):
        orthanc.upload(encode(ds), study="umlaut")
    for name, filename in SAMPLES.items():
        path = get_testdata_file(filename)
        assert path is not None, f"pydicom's {filename} is missing"
        orthanc.upload(Path(path).read_bytes(), study=name)


@pytest.fixture(scope="module")
def orthanc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc per test module (starting and loading it takes ~0.5 s), with the test studies loaded."""
    program = require_program("Orthanc")
    require(DICOMWEB_PLUGIN.is_file(), f"Orthanc's DICOMweb plugin at {DICOMWEB_PLUGIN}")
    # radshare is a known caller from the start; its SCP's port is set when a test starts one (orthanc_to_scp).
    server = Orthanc(
        program,
        tmp_path_factory.mktemp("orthanc"),
        http_port=free_port(),
        dicom_port=free_port(),
        radshare_port=free_port(),
    )
    server.start()
    try:
        load_test_studies(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc(orthanc_server: Orthanc) -> Iterator[Orthanc]:
    """The module's Orthanc, running and answering (a test may ``stop()``/``start()`` or ``pause()`` it)."""
    if not orthanc_server.running:
        orthanc_server.start()
    yield orthanc_server
    if orthanc_server.running:
        orthanc_server.resume()
    else:
        orthanc_server.start()


@pytest.fixture
def orthanc_to_scp(orthanc: Orthanc, scp: Any) -> Orthanc:
    """Orthanc with radshare's storage SCP (the ``scp`` fixture, this process) as its C-MOVE destination."""
    orthanc.register_radshare(scp.address[1])
    return orthanc
