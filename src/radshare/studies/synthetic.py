"""Synthetic DICOM data made with pydicom: demo studies and test data only (no patient's images anywhere)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    XRayAngiographicImageStorage,
    generate_uid,
)

from radshare.dicom import encode, new_part10_dataset

__all__ = ["FakePatient", "cr_image", "ct_series", "encode", "xa_run"]


@dataclass(frozen=True)
class FakePatient:
    patient_id: str
    patient_name: str
    birth_date: dt.date
    sex: str = "O"
    bsn: str = ""
    issuer: str = ""


def _base(patient: FakePatient, sop_class: str, study_uid: str, series_uid: str) -> Dataset:
    ds = new_part10_dataset(sop_class)
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    if patient.issuer:
        ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    if patient.bsn:
        item = Dataset()
        item.PatientID = patient.bsn
        item.IssuerOfPatientID = "NLMINBIZA"
        item.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence = [item]
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    return ds


def ct_series(
    patient: FakePatient,
    *,
    count: int = 24,
    size: int = 256,
    study_uid: str | None = None,
    description: str = "CT thorax",
    study_date: dt.date | None = None,
    accession: str = "",
) -> list[Dataset]:
    """A CT series of ``count`` slices of a round phantom (soft tissue in air, a bright 'bone' ring)."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    study_date = study_date or dt.date.today()
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    datasets = []
    for i in range(count):
        ds = _base(patient, CTImageStorage, study_uid, series_uid)
        ds.Modality = "CT"
        ds.StudyDate = ds.SeriesDate = study_date.strftime("%Y%m%d")
        ds.StudyTime = "101500"
        ds.StudyDescription = description
        ds.SeriesDescription = "Axial 5 mm"
        ds.AccessionNumber = accession
        ds.ReferringPhysicianName = "Huisarts^Demo"
        ds.BodyPartExamined = "CHEST"
        ds.SeriesNumber = 2
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i * 5)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceThickness = 5.0
        ds.PixelSpacing = [0.8, 0.8]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        hu = np.full((size, size), -1000, dtype=np.int16)
        body = size * (0.40 - 0.05 * abs(i - count / 2) / max(count, 1))
        hu[radius < body] = 40
        hu[(radius > body * 0.55) & (radius < body * 0.62)] = 700
        hu[radius < body * 0.15] = -700  # a 'lung' hole
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        datasets.append(ds)
    return datasets


def cr_image(
    patient: FakePatient,
    *,
    study_uid: str | None = None,
    description: str = "X thorax",
    study_date: dt.date | None = None,
    accession: str = "",
) -> Dataset:
    """One computed radiograph (a gradient with a bright 'spine')."""
    size = 512
    ds = _base(patient, ComputedRadiographyImageStorage, study_uid or generate_uid(), generate_uid())
    ds.Modality = "CR"
    study_date = study_date or dt.date.today()
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = "091000"
    ds.StudyDescription = description
    ds.SeriesDescription = "PA"
    ds.AccessionNumber = accession
    ds.BodyPartExamined = "CHEST"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ramp = np.tile(np.linspace(400, 3000, size, dtype=np.float32), (size, 1))
    ramp[:, size // 2 - 20 : size // 2 + 20] = 3800
    ds.PixelData = ramp.astype(np.uint16).tobytes()
    return ds


def xa_run(
    patient: FakePatient,
    *,
    frames: int = 60,
    size: int = 128,
    frame_time: float = 66.7,
    study_uid: str | None = None,
    description: str = "Coronary angiography",
    study_date: dt.date | None = None,
) -> Dataset:
    """One XA run: ``frames`` frames of ``frame_time`` ms (a multi-frame image with Frame Time), a dark 'vessel'
    bar that moves one step to the right each frame over a grey field."""
    ds = _base(patient, XRayAngiographicImageStorage, study_uid or generate_uid(), generate_uid())
    ds.Modality = "XA"
    study_date = study_date or dt.date.today()
    ds.StudyDate = ds.SeriesDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = "141500"
    ds.StudyDescription = description
    ds.SeriesDescription = "Run 1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = frame_time
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.CineRate = round(1000 / frame_time)
    pixels = np.full((frames, size, size), 180, dtype=np.uint8)
    width = max(2, size // 16)
    for i in range(frames):
        x = i * (size - width) // max(frames - 1, 1)
        pixels[i, :, x : x + width] = 30
    ds.PixelData = pixels.tobytes()
    return ds
