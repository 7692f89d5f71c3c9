"""Radiology reports: DICOM SR documents as readable text, encapsulated PDFs, and PDFs a sender attaches.

``values``, ``sr`` and ``pdf`` are pure (pydicom ``Dataset`` in, plain data out), so the portal, the recipient
pages and the offline viewer of a download can all use them; ``study`` reads and stores a study's reports.
Report content is untrusted input: it is never marked safe, the templates autoescape it.

DICOM: PS3.3 A.35 (SR IODs), C.17.2 (SR Document General Module), C.17.3 (SR Document Content Module), C.18
(Content Item Macros); PS3.3 A.45.1 (Encapsulated PDF IOD), C.24.2 (Encapsulated Document Module).
"""

from radshare.imaging.reports.pdf import encapsulate_pdf, looks_like_pdf, pdf_bytes
from radshare.imaging.reports.sr import Observer, SrDocument, SrItem, render_sr
from radshare.imaging.reports.study import (
    AttachedReport,
    ReportSummary,
    attach_pdf_report,
    read_instance,
    read_pdf,
    read_report,
    read_sr,
    study_report_instances,
    study_reports,
    summarise,
    upload_limit_bytes,
)
from radshare.imaging.reports.values import (
    PDF_MIME_TYPE,
    PDF_SOP_CLASS,
    REPORT_SOP_CLASSES,
    SR_SOP_CLASSES,
    ReportError,
    is_pdf,
    is_report,
    is_sr,
)

__all__ = [
    "PDF_MIME_TYPE",
    "PDF_SOP_CLASS",
    "REPORT_SOP_CLASSES",
    "SR_SOP_CLASSES",
    "AttachedReport",
    "Observer",
    "ReportError",
    "ReportSummary",
    "SrDocument",
    "SrItem",
    "attach_pdf_report",
    "encapsulate_pdf",
    "is_pdf",
    "is_report",
    "is_sr",
    "looks_like_pdf",
    "pdf_bytes",
    "read_instance",
    "read_pdf",
    "read_report",
    "read_sr",
    "render_sr",
    "study_report_instances",
    "study_reports",
    "summarise",
    "upload_limit_bytes",
]
