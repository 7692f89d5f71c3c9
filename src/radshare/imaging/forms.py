from __future__ import annotations

from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext_lazy as _

from radshare.imaging.reports import looks_like_pdf, upload_limit_bytes

PDF_TAIL = 2048  # the end-of-file marker sits in the last bytes (trailing whitespace or junk after it occurs)


class ReportAttachForm(forms.Form):
    """A PDF report for a study: its title (DocumentTitle) and the file, checked to really be a PDF."""

    title = forms.CharField(
        label=_("Title"),
        max_length=200,
        initial=_("Radiology report"),
        help_text=_("Shown with the study, for example “Radiology report” or “Discharge letter”."),
    )
    file = forms.FileField(
        label=_("PDF file"),
        widget=forms.ClearableFileInput(attrs={"accept": "application/pdf,.pdf"}),
        error_messages={"empty": _("This file is empty."), "required": _("Choose a PDF file.")},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = _(
            "A PDF file of at most %(limit_mb)s MB. It is stored with the study as a DICOM document, so it travels "
            "with the images."
        ) % {"limit_mb": upload_limit_bytes() >> 20}

    def clean_title(self) -> str:
        title: str = self.cleaned_data["title"]
        # Free text into a DICOM ST value: no control characters other than what a title never needs.
        title = " ".join(title.split())
        if not title:
            raise forms.ValidationError(_("Enter a title."), code="required")
        return title

    def clean_file(self) -> UploadedFile[bytes]:
        upload: UploadedFile[bytes] = self.cleaned_data["file"]
        limit = upload_limit_bytes()
        if (upload.size or 0) > limit:
            raise forms.ValidationError(
                _("This file is larger than the limit of %(limit)s MB."),
                code="too_large",
                params={"limit": limit // (1024 * 1024)},
            )
        upload.seek(0)
        head = upload.read(8)
        upload.seek(max((upload.size or 0) - PDF_TAIL, 0))
        tail = upload.read(PDF_TAIL)
        upload.seek(0)
        if not looks_like_pdf(head, tail):
            raise forms.ValidationError(
                _("This file is not a PDF document (or it is incomplete). Choose a PDF file."), code="not_pdf"
            )
        return upload

    def pdf(self) -> bytes:
        """The whole file (call after ``is_valid``)."""
        upload: UploadedFile[bytes] = self.cleaned_data["file"]
        upload.seek(0)
        return b"".join(upload.chunks())

    def refusal_codes(self) -> list[str]:
        """Why the form was refused, as error codes (for the audit trail: no user input in it)."""
        return sorted({e.code or "invalid" for errors in self.errors.as_data().values() for e in errors})
