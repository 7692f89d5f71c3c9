"""Reports: SR documents as text and HTML, encapsulated PDFs kept as PDFs, PDFs attached in the portal."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from django.test import Client
from django.utils import translation
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    KeyObjectSelectionDocumentStorage,
    generate_uid,
)

from radshare.audit.models import AuditEvent
from radshare.core.storage import FileSystemStorage, get_storage, instance_key
from radshare.imaging import reports
from radshare.imaging.reports import pdf_bytes, render_sr
from radshare.organisations.models import Organisation, Sender
from radshare.organisations.services import create_sender
from radshare.studies.models import Instance, Patient, Series, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, encode
from tests.studies.factories import make_study

ANNA = FakePatient("P100", "Jansen^Anna", dt.date(1968, 3, 14), sex="F")
BERT = FakePatient("P900", "Bakker^Bert", dt.date(1955, 7, 7), sex="M")


# --- helpers ----------------------------------------------------------------------------------------


def make_pdf(text: str = "Radiology report", *, filler: int = 0, odd: bool = True) -> bytes:
    """A small valid PDF (one page of text), ``filler`` bytes of comment inside, odd or even in length."""
    for pad in range(4):
        stream = f"BT /F1 12 Tf 20 50 Td ({text}) Tj ET".encode()
        objects = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        out += b"%" + b"x" * (filler + pad) + b"\n"
        offsets = []
        for number, body in enumerate(objects, 1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        for offset in offsets:
            out += b"%010d 00000 n \n" % offset
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
        if len(out) % 2 == int(odd):
            return bytes(out)
    raise AssertionError("unreachable")


def _patient_and_study(ds: Dataset, patient: FakePatient, study_uid: str) -> None:
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate = "20240110"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-1"
    ds.ReferringPhysicianName = "Huisarts^Henk"
    ds.StudyID = "S1"
    ds.StudyDescription = "CT thorax"


def _new(sop_class: str, charset: str = "ISO_IR 192") -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def _code(meaning: str, value: str = "X1", scheme: str = "99TEST") -> Sequence:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return Sequence([code])


def _content(value_type: str, name: str, relationship: str = "CONTAINS", **values: Any) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = _code(name)
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def sr_dataset(patient: FakePatient, study_uid: str, *, finding: str, conclusion: str) -> Dataset:
    """A Basic Text SR radiology report: Findings and Conclusion sections, author and verifier in the header."""
    ds = _new(BasicTextSRStorage)
    _patient_and_study(ds, patient, study_uid)
    ds.Modality = "SR"
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20240111", "093000"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = _code("Diagnostic Imaging Report", "18748-4", "LN")
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    verifier = Dataset()
    verifier.VerifyingObserverName = "Radioloog^Rita"
    verifier.VerifyingOrganization = "Hospital A"
    verifier.VerificationDateTime = "20240111100000"
    verifier.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([verifier])
    author = Dataset()
    author.ObserverType = "PSN"
    author.PersonName = "Arts^Arend"
    ds.AuthorObserverSequence = Sequence([author])
    findings = _content("CONTAINER", "Findings", ContinuityOfContent="SEPARATE")
    findings.ContentSequence = Sequence([_content("TEXT", "Finding", TextValue=finding)])
    size = _content("NUM", "Diameter")
    measured = Dataset()
    measured.NumericValue = "12"
    measured.MeasurementUnitsCodeSequence = _code("millimeter", "mm", "UCUM")
    size.MeasuredValueSequence = Sequence([measured])
    findings.ContentSequence.append(size)
    conclusions = _content("CONTAINER", "Conclusions", ContinuityOfContent="SEPARATE")
    conclusions.ContentSequence = Sequence([_content("TEXT", "Conclusion", TextValue=conclusion)])
    ds.ContentSequence = Sequence([findings, conclusions])
    return ds


def pdf_dataset(patient: FakePatient, study_uid: str, pdf: bytes, *, with_length: bool = True) -> Dataset:
    """An Encapsulated PDF instance as a PACS would send it."""
    ds = _new(EncapsulatedPDFStorage)
    _patient_and_study(ds, patient, study_uid)
    ds.Modality = "DOC"
    ds.SeriesNumber = 98
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20240112", "080000"
    ds.DocumentTitle = "Verslag CT thorax"
    ds.BurnedInAnnotation = "YES"
    ds.ConceptNameCodeSequence = _code("Diagnostic Imaging Report", "18748-4", "LN")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf
    if with_length:
        ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def stored(instance: Instance) -> Dataset:
    with get_storage().open(instance_key(instance.storage_key)) as f:
        return dcmread(f)


def english(user: Sender | None = None, language: str = "en") -> Client:
    client = Client(headers={"accept-language": language})
    if user is not None:
        client.force_login(user)
    return client


def report_instances(study: Study) -> list[Instance]:
    return list(
        Instance.objects.filter(series__study=study, sop_class_uid__in=reports.REPORT_SOP_CLASSES).order_by(
            "pk"
        )
    )


@pytest.fixture
def study(organisation: Organisation) -> Study:
    return make_study(
        organisation,
        ANNA,
        study_date=dt.date(2024, 1, 10),
        accession="ACC-1",
        description="CT thorax",
        images=2,
    )


@pytest.fixture
def other_study(other_organisation: Organisation) -> Study:
    return make_study(other_organisation, BERT, study_date=dt.date(2024, 2, 1), description="Other CT")


@pytest.fixture
def other_sender(other_organisation: Organisation) -> Sender:
    return create_sender(other_organisation, "bob", "another long pass phrase")


@pytest.fixture
def en() -> Iterator[None]:
    with translation.override("en"):
        yield


# --- which objects are reports ----------------------------------------------------------------------


def test_report_sop_classes() -> None:
    for uid in (
        "1.2.840.10008.5.1.4.1.1.88.11",
        "1.2.840.10008.5.1.4.1.1.88.22",
        "1.2.840.10008.5.1.4.1.1.88.33",
    ):
        assert reports.is_report(uid)
        assert reports.is_sr(uid)
    assert reports.is_report(EncapsulatedPDFStorage)
    assert reports.is_pdf(EncapsulatedPDFStorage)
    assert not reports.is_report(CTImageStorage)
    assert not reports.is_report(
        KeyObjectSelectionDocumentStorage
    )  # flags images; nobody reads it as a report


# --- SR as text ---------------------------------------------------------------------------------------


def _content_items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence") or []:
        yield item
        yield from _content_items(item)


@pytest.mark.usefixtures("en")
def test_sr_sample_renders_to_text_containing_its_content_items() -> None:
    ds = dcmread(get_testdata_file("test-SR.dcm"))  # Comprehensive SR from DCMTK, many levels of nesting
    text = render_sr(ds).as_text()
    # Every concept name, text value and coded value in the file is in the text.
    expected: set[str] = set()
    for item in _content_items(ds):
        if "ConceptNameCodeSequence" in item:
            expected.add(item.ConceptNameCodeSequence[0].CodeMeaning)
        if item.get("ValueType") == "TEXT":
            expected.update(line.strip() for line in re.split(r"[\r\n]+", item.TextValue) if line.strip())
        if item.get("ValueType") == "CODE":
            expected.add(item.ConceptCodeSequence[0].CodeMeaning)
    assert {"Text Code", "A mass of", "was detected.", "Sample Code 1", "Diameter"} <= expected
    assert sorted(e for e in expected if e not in text) == []
    assert text.startswith("Diagnosis\n=========\n")  # the root container's concept name is the title
    assert "Status: final, verified" in text
    assert "Date: 13-02-2001 18:47:46" in text
    assert (
        "Riesmeier, Jörg (OFFIS e.V.), 13-02-2001 18:47:46" in text
    )  # verifying observer (PN, organisation)
    assert "Diameter: 3 Length Unit" in text  # NUM with its unit
    assert "Some UID: 1.2.3.4.5" in text  # UIDREF
    assert "Date: 06-12-2000" in text
    assert "Time: 12:00" in text
    assert "DateTime: 06-12-2000 12:00" in text
    assert "[Image: CT Image]" in text  # an image reference is a short note
    assert "  Text Code: A mass of\n    Code: Sample Code 1\n" in text  # nesting shows as indentation


@pytest.mark.usefixtures("en")
def test_basic_text_sr_sample_headings_and_observation_context() -> None:
    ds = dcmread(get_testdata_file("reportsi.dcm"))  # Basic Text SR, IHE simple image report
    document = render_sr(ds)
    assert document.title == "Document Title"
    assert not document.is_complete
    assert not document.is_verified
    assert [i.name for i in document.items if i.is_heading] == ["Section Heading"]
    section = next(i for i in document.items if i.is_heading)
    assert section.children[0].name == "Report Text"
    assert section.children[0].value == ds.ContentSequence[4].ContentSequence[0].TextValue
    text = document.as_text()
    assert "\nSection Heading\n  Report Text: Enter text\n" in text
    assert "Recording Observer's Name: Enter text" in text
    assert "Status: preliminary (partial), not verified" in text
    empty_numbers = render_sr(dcmread(get_testdata_file("reportsi_with_empty_number_tags.dcm")))
    assert "Report Text: Enter text" in empty_numbers.as_text()


@pytest.mark.usefixtures("en")
def test_sr_radiology_report_header_and_sections() -> None:
    ds = sr_dataset(
        ANNA, generate_uid(), finding="Nodule right upper lobe.\r\nNo effusion.", conclusion="Benign."
    )
    document = render_sr(ds)
    assert document.title == "Diagnostic Imaging Report"
    assert document.authors == ["Arts, Arend"]
    assert [str(v) for v in document.verifiers] == ["Radioloog, Rita (Hospital A), 11-01-2024 10:00"]
    assert document.content_datetime == dt.datetime(2024, 1, 11, 9, 30)
    text = document.as_text()
    assert "\nFindings\n  Finding: Nodule right upper lobe.\n    No effusion.\n  Diameter: 12 mm\n" in text
    assert "\nConclusions\n  Conclusion: Benign.\n" in text
    assert "Author: Arts, Arend" in text


def test_sr_with_missing_and_broken_pieces_still_renders() -> None:
    ds = _new(BasicTextSRStorage)  # no title, no flags, no dates, no content
    document = render_sr(ds)
    assert document.items == []
    assert document.authors == []
    assert document.content_datetime is None
    assert document.as_text()
    nameless = Dataset()
    nameless.RelationshipType, nameless.ValueType, nameless.TextValue = "CONTAINS", "TEXT", "Only a value"
    no_measure = _content("NUM", "Volume")  # no Measured Value Sequence
    bad_date = _content("DATE", "Exam date", Date="2024xx01")
    by_reference = Dataset()
    by_reference.RelationshipType = "INFERRED FROM"
    by_reference.ReferencedContentItemIdentifier = [1, 1]
    unknown = _content("TABLE", "Something new", relationship="CONTAINS")
    ds.ContentSequence = Sequence([nameless, no_measure, bad_date, by_reference, unknown])
    document = render_sr(ds)
    assert [(i.name, i.value) for i in document.items] == [
        ("", "Only a value"),
        ("Volume", ""),
        ("Exam date", "2024xx01"),
        ("Something new", ""),
    ]
    assert "Only a value" in document.as_text()


def test_sr_nesting_and_size_are_bounded() -> None:
    ds = _new(BasicTextSRStorage)
    parent = ds
    for level in range(200):
        child = _content("CONTAINER", f"Level {level}")
        parent.ContentSequence = Sequence([child])
        parent = child
    document = render_sr(ds)
    assert document.truncated
    depth = 0
    items = document.items
    while items:
        depth += 1
        items = items[0].children
    assert depth == reports.sr.MAX_DEPTH
    wide = _new(BasicTextSRStorage)
    wide.ContentSequence = Sequence(
        [_content("TEXT", "Line", TextValue=str(n)) for n in range(reports.sr.MAX_ITEMS + 10)]
    )
    assert len(render_sr(wide).items) == reports.sr.MAX_ITEMS
    assert render_sr(wide).truncated


@pytest.mark.usefixtures("en")
def test_sr_html_escapes_untrusted_text() -> None:
    ds = sr_dataset(ANNA, generate_uid(), finding="<script>alert(1)</script>", conclusion="a & b\nline two")
    ds.ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning = '<img src=x onerror="alert(2)">'
    ds.VerifyingObserverSequence[0].VerifyingOrganization = "<b>Org</b>"
    html = render_to_string("imaging/report_sr.html", {"document": render_sr(ds), "level": 2})
    assert "<script>" not in html
    assert "<img" not in html
    assert "<b>Org" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "a &amp; b<br>line two" in html  # line breaks kept, as <br>, after escaping
    assert "<h2>" in html
    assert "<strong>Finding:</strong>" in html


# --- encapsulated PDF ---------------------------------------------------------------------------------


def test_pdf_bytes_strips_only_the_pad_byte() -> None:
    odd, even = make_pdf(odd=True), make_pdf(odd=False)
    assert len(odd) % 2 == 1
    assert len(even) % 2 == 0
    for pdf in (odd, even):
        for with_length in (True, False):
            ds = dcmread(BytesIO(encode(pdf_dataset(ANNA, generate_uid(), pdf, with_length=with_length))))
            assert len(ds.EncapsulatedDocument) % 2 == 0  # padded in the file (PS3.5 7.1.1)
            assert pdf_bytes(ds) == pdf
    not_pdf = pdf_dataset(ANNA, generate_uid(), odd)
    not_pdf.MIMETypeOfEncapsulatedDocument = "text/xml"
    with pytest.raises(reports.ReportError):
        pdf_bytes(not_pdf)
    with pytest.raises(reports.ReportError):
        pdf_bytes(_new(EncapsulatedPDFStorage))


@pytest.mark.django_db
def test_encapsulated_pdf_stays_a_pdf(study: Study, sender: Sender) -> None:
    pdf = make_pdf("Verslag")
    result = store_instance(
        study.organisation, encode(pdf_dataset(ANNA, study.study_instance_uid, pdf)), source="scp"
    )
    client = english(sender)
    page = client.get(f"/portal/studies/{study.pk}/").content.decode()
    url = f"/portal/studies/{study.pk}/reports/{result.instance_pk}/report.pdf"
    assert f'href="{url}">Verslag CT thorax</a>' in page
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == pdf  # byte for byte, without the DICOM pad byte
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'inline; filename="report.pdf"'
    assert response["Content-Length"] == str(len(pdf))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "no-store"
    assert (
        "object-src 'none'" in response["Content-Security-Policy"]
    )  # the site's strict policy, as everywhere
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    # The report page of a PDF leads to the PDF itself.
    assert client.get(f"/portal/studies/{study.pk}/reports/{result.instance_pk}/")["Location"] == url
    view = AuditEvent.objects.get(action="portal.report.view")
    assert view.outcome == "success"
    assert view.patient_ref == study.patient_id
    assert view.study_uids == [study.study_instance_uid]
    assert view.detail == {"instance": result.instance_pk, "kind": "pdf"}
    assert client.post(url).status_code == 405


# --- SR in the portal -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sr_report_page(study: Study, sender: Sender) -> None:
    ds = sr_dataset(
        ANNA, study.study_instance_uid, finding="<script>alert(1)</script> Nodule.", conclusion="Benign."
    )
    result = store_instance(study.organisation, encode(ds), source="scp")
    client = english(sender)
    page = client.get(f"/portal/studies/{study.pk}/").content.decode()
    url = f"/portal/studies/{study.pk}/reports/{result.instance_pk}/"
    assert f'href="{url}">Diagnostic Imaging Report</a>' in page
    assert "11-01-2024, Arts, Arend, final, verified" in page  # date, author and status from the header
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Diagnostic Imaging Report</h1>" in html
    assert "<h2>Findings</h2>" in html
    assert "<h2>Conclusions</h2>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Nodule." in html
    assert "<script>alert" not in html
    assert "<strong>Diameter:</strong> 12 mm" in html
    assert "Radioloog, Rita (Hospital A), 11-01-2024 10:00" in html
    assert response["Cache-Control"] == "no-store"
    view = AuditEvent.objects.get(action="portal.report.view")
    assert (view.outcome, view.patient_ref, view.study_uids) == (
        "success",
        study.patient_id,
        [study.study_instance_uid],
    )
    assert view.detail == {"instance": result.instance_pk, "kind": "sr"}
    # The PDF URL of an SR leads to its page.
    assert client.get(url + "report.pdf")["Location"] == url


@pytest.mark.django_db
def test_dcmtk_sr_sample_in_the_portal(organisation: Organisation, sender: Sender) -> None:
    with open(get_testdata_file("test-SR.dcm"), "rb") as f:  # noqa: PTH123 - a path from pydicom
        result = store_instance(organisation, f.read(), source="upload")
    study = Instance.objects.get(pk=result.instance_pk).series.study
    html = english(sender).get(f"/portal/studies/{study.pk}/reports/{result.instance_pk}/").content.decode()
    for value in ("Diagnosis", "A mass of", "was detected.", "Sample Code 1", "3 Length Unit", "1.2.3.4.5"):
        assert value in html


@pytest.mark.django_db
def test_study_page_shows_the_report_section(study: Study, sender: Sender) -> None:
    html = english(sender).get(f"/portal/studies/{study.pk}/").content.decode()
    assert '<h2 id="reports-heading">Reports</h2>' in html
    assert "No report with this study yet." in html
    assert f'action="/portal/studies/{study.pk}/reports/attach/"' in html
    assert 'enctype="multipart/form-data"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="title"' in html
    assert 'name="file"' in html
    assert 'accept="application/pdf,.pdf"' in html
    assert "<script" not in html.split('id="reports-heading"')[1].split("</section>")[0]


@pytest.mark.django_db
def test_unreadable_report_gets_a_placeholder(study: Study, sender: Sender) -> None:
    ds = sr_dataset(ANNA, study.study_instance_uid, finding="x", conclusion="y")
    sr = store_instance(study.organisation, encode(ds), source="scp")
    pdf = store_instance(
        study.organisation, encode(pdf_dataset(ANNA, study.study_instance_uid, make_pdf())), source="scp"
    )
    for pk in (sr.instance_pk, pdf.instance_pk):
        get_storage().put(instance_key(Instance.objects.get(pk=pk).storage_key), b"damaged")
    client = english(sender)
    page = client.get(f"/portal/studies/{study.pk}/")
    assert page.status_code == 200
    assert page.content.decode().count("This report cannot be shown") == 2
    for url in (
        f"/portal/studies/{study.pk}/reports/{sr.instance_pk}/",
        f"/portal/studies/{study.pk}/reports/{pdf.instance_pk}/report.pdf",
    ):
        response = client.get(url)
        assert response.status_code == 200
        assert "This report cannot be shown" in response.content.decode()
    assert set(AuditEvent.objects.filter(action="portal.report.view").values_list("outcome", flat=True)) == {
        "failure"
    }


# --- attaching a PDF ----------------------------------------------------------------------------------


def attach(
    client: Client, study_pk: int, data: bytes, *, title: str = "Radiology report", name: str = "r.pdf"
) -> Any:
    upload = SimpleUploadedFile(name, data, content_type="application/pdf")
    return client.post(f"/portal/studies/{study_pk}/reports/attach/", {"title": title, "file": upload})


@pytest.mark.django_db
def test_attach_pdf_stores_an_encapsulated_pdf_in_the_study(
    organisation: Organisation, sender: Sender
) -> None:
    # The source images are in Latin-1, with a BSN in Other Patient IDs: the report must carry them over intact.
    study_uid = generate_uid()
    image = _new(CTImageStorage, charset="ISO_IR 100")
    _patient_and_study(image, FakePatient("P100", "Müller^Jörg", dt.date(1968, 3, 14), sex="M"), study_uid)
    image.IssuerOfPatientID = "HOSP-A"
    bsn = Dataset()
    bsn.PatientID, bsn.IssuerOfPatientID, bsn.TypeOfPatientID = "999999990", "NLMINBIZA", "TEXT"
    image.OtherPatientIDsSequence = Sequence([bsn])
    image.Modality = "CT"
    image.SeriesNumber = 3
    store_instance(organisation, encode(image), source="scp")
    study = Study.objects.get(study_instance_uid=study_uid)
    pdf = make_pdf("Verslag", odd=True)

    client = english(sender)
    response = attach(client, study.pk, pdf, title="Verslag CT thorax — definitief")
    assert response.status_code == 302
    assert response["Location"] == f"/portal/studies/{study.pk}/#reports"

    (instance,) = report_instances(study)
    assert instance.source == "upload"
    assert instance.sop_class_uid == EncapsulatedPDFStorage
    ds = stored(instance)
    assert ds.file_meta.MediaStorageSOPClassUID == EncapsulatedPDFStorage
    assert ds.SOPInstanceUID == instance.sop_instance_uid != image.SOPInstanceUID
    assert ds.SeriesInstanceUID != image.SeriesInstanceUID
    assert (ds.StudyInstanceUID, ds.PatientID, ds.IssuerOfPatientID) == (study_uid, "P100", "HOSP-A")
    assert str(ds.PatientName) == "Müller^Jörg"
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert (ds.PatientBirthDate, ds.PatientSex) == ("19680314", "M")
    assert ds.OtherPatientIDsSequence[0].PatientID == "999999990"
    assert (ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID) == (
        "20240110",
        "101500",
        "ACC-1",
        "S1",
    )
    assert (str(ds.ReferringPhysicianName), ds.StudyDescription) == ("Huisarts^Henk", "CT thorax")
    assert (ds.Modality, ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber) == ("DOC", "Report", 4, 1)
    assert ds.DocumentTitle == "Verslag CT thorax — definitief"
    concept = ds.ConceptNameCodeSequence[0]
    assert (concept.CodeValue, concept.CodingSchemeDesignator) == ("18748-4", "LN")
    assert ds.BurnedInAnnotation == "YES"
    assert ds.ConversionType == "WSD"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.EncapsulatedDocumentLength == len(pdf)
    assert pdf_bytes(ds) == pdf
    # Filed under the same patient, in a new series of the same study; counts kept.
    assert Patient.objects.filter(organisation=organisation).count() == 1
    assert instance.series.study_id == study.pk
    assert instance.series.modality == "DOC"
    study.refresh_from_db()
    assert (study.number_of_series, study.number_of_instances, study.modalities) == (2, 2, ["CT", "DOC"])

    event = AuditEvent.objects.get(action="portal.report.attach")
    assert (event.outcome, event.patient_ref, event.study_uids) == ("success", study.patient_id, [study_uid])
    assert event.detail == {"instance": instance.pk, "bytes": len(pdf)}  # no title, no file name

    page = client.get(f"/portal/studies/{study.pk}/").content.decode()
    assert "The report was attached to the study." in page
    assert "Verslag CT thorax — definitief</a>" in page
    served = client.get(f"/portal/studies/{study.pk}/reports/{instance.pk}/report.pdf")
    assert served.content == pdf


@pytest.mark.django_db
def test_attach_refuses_what_is_not_a_pdf(study: Study, sender: Sender) -> None:
    before = Instance.objects.count()
    client = english(sender)
    refusals = [
        (b"GIF89a" + b"\x00" * 100, "This file is not a PDF document (or it is incomplete)."),
        (make_pdf()[:-200], "This file is not a PDF document (or it is incomplete)."),  # truncated: no %%EOF
        (b"<html>%PDF-1.4 %%EOF</html>", "This file is not a PDF document (or it is incomplete)."),
        (b"", "This file is empty."),
    ]
    for data, message in refusals:
        response = attach(client, study.pk, data)
        assert response.status_code == 400
        assert message in response.content.decode()
    response = client.post(f"/portal/studies/{study.pk}/reports/attach/", {"title": "x"})
    assert response.status_code == 400
    assert "Choose a PDF file." in response.content.decode()
    response = attach(client, study.pk, make_pdf(), title="   ")
    assert response.status_code == 400
    assert Instance.objects.count() == before
    events = AuditEvent.objects.filter(action="portal.report.attach").order_by("pk")
    assert [e.outcome for e in events] == ["failure"] * 6
    assert [e.detail["reasons"] for e in events] == [
        ["not_pdf"],
        ["not_pdf"],
        ["not_pdf"],
        ["empty"],
        ["required"],
        ["required"],
    ]
    assert all(e.study_uids == [study.study_instance_uid] for e in events)


@pytest.mark.django_db
def test_attach_refusal_is_in_the_users_language(study: Study, sender: Sender) -> None:
    response = attach(english(sender, "nl"), study.pk, b"not a pdf at all")
    assert response.status_code == 400
    html = response.content.decode()
    assert "Dit bestand is geen PDF-document" in html
    assert "This file is not a PDF" not in html


@pytest.mark.django_db
def test_attach_refuses_an_oversize_file(study: Study, sender: Sender, radshare_config: Any) -> None:
    radshare_config(upload_max_mb=1)
    client = english(sender)
    big = make_pdf(filler=1024 * 1024)
    response = attach(client, study.pk, big)
    assert response.status_code == 400
    assert "This file is larger than the limit of 1 MB." in response.content.decode()
    assert report_instances(study) == []
    assert AuditEvent.objects.get(action="portal.report.attach").detail == {"reasons": ["too_large"]}
    assert attach(client, study.pk, make_pdf(filler=1024 * 1024 - 4096)).status_code == 302  # just under


@pytest.mark.django_db
def test_attach_when_storage_fails(study: Study, sender: Sender, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "put_durable", full)
    response = attach(english(sender), study.pk, make_pdf())
    assert response.status_code == 503
    assert "The report could not be stored. Try again later" in response.content.decode()
    assert report_instances(study) == []
    event = AuditEvent.objects.get(action="portal.report.attach")
    assert event.outcome == "failure"
    assert event.detail["reasons"] == ["storage"]


@pytest.mark.django_db
def test_attach_page_on_its_own(study: Study, sender: Sender) -> None:
    response = english(sender).get(f"/portal/studies/{study.pk}/reports/attach/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Attach a PDF report</h1>" in html
    assert 'value="Radiology report"' in html
    assert english(sender).put(f"/portal/studies/{study.pk}/reports/attach/").status_code == 405


# --- isolation and access ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_another_organisation_gets_404_everywhere(
    study: Study, other_study: Study, sender: Sender, other_sender: Sender
) -> None:
    sr = store_instance(
        study.organisation,
        encode(sr_dataset(ANNA, study.study_instance_uid, finding="x", conclusion="y")),
        source="scp",
    )
    pdf = store_instance(
        study.organisation, encode(pdf_dataset(ANNA, study.study_instance_uid, make_pdf())), source="scp"
    )
    outsider = english(other_sender)
    for url in (
        f"/portal/studies/{study.pk}/reports/{sr.instance_pk}/",
        f"/portal/studies/{study.pk}/reports/{pdf.instance_pk}/report.pdf",
        f"/portal/studies/{study.pk}/reports/attach/",
        # their own study's URL with our instance id: the instance is scoped too
        f"/portal/studies/{other_study.pk}/reports/{sr.instance_pk}/",
        f"/portal/studies/{other_study.pk}/reports/{pdf.instance_pk}/report.pdf",
    ):
        response = outsider.get(url)
        assert response.status_code == 404, url
        assert "Jansen" not in response.content.decode()
    assert attach(outsider, study.pk, make_pdf()).status_code == 404
    assert len(report_instances(study)) == 2
    # Our own sender: an image (not a report) and a report of another study are not reports of this study.
    image = Instance.objects.filter(series__study=study, sop_class_uid=CTImageStorage).first()
    assert image is not None
    client = english(sender)
    assert client.get(f"/portal/studies/{study.pk}/reports/{image.pk}/").status_code == 404
    second = make_study(study.organisation, ANNA, study_date=dt.date(2024, 5, 1))
    assert client.get(f"/portal/studies/{second.pk}/reports/{sr.instance_pk}/").status_code == 404
    denied = AuditEvent.objects.filter(outcome="denied", action__startswith="portal.report.")
    assert denied.count() == 8
    assert all(e.patient_ref is None and e.study_uids == [] for e in denied)
    assert not AuditEvent.objects.filter(outcome="success", action__startswith="portal.report.").exists()


@pytest.mark.django_db
def test_anonymous_is_sent_to_the_login_page(study: Study) -> None:
    client = english()
    for path in (
        f"/portal/studies/{study.pk}/reports/1/",
        f"/portal/studies/{study.pk}/reports/1/report.pdf",
        f"/portal/studies/{study.pk}/reports/attach/",
    ):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"/portal/login/?next={path}"
    assert attach(client, study.pk, make_pdf()).status_code == 302
    assert report_instances(study) == []
    assert Series.objects.filter(study=study).count() == 1
