"""The letter (docs/requirements.md S2.5): an A4 PDF with the link, its QR code, the code and the steps.

Made on request and never stored (docs/architecture.md "Codes"). Unlike the e-mail it holds no BSN digits: a
letter can be printed and handed over, so of the patient it gives only the initials. At its top it names its
addressee as the sender typed it (if they did), the share's number as a reference and those initials, so that a
desk printing several letters does not mix them up (docs/security.md A20). Helvetica and Courier are the PDF
standard fonts (no font files to ship); they cover Windows-1252, so other characters in an organisation's name are
simplified or replaced rather than drawn as empty boxes.
"""

from __future__ import annotations

import io
import unicodedata
from typing import Any
from xml.sax.saxutils import escape

import segno
from django.http import HttpResponse
from django.utils import translation
from django.utils.translation import gettext
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm, mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import (
    Flowable,
    HRFlowable,
    KeepTogether,
    ListFlowable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from radshare.audit.actions import Action
from radshare.delivery.content import ShareTexts, share_texts
from radshare.shares.models import Share
from radshare.shares.services import Actor, audit, current_code
from radshare.studies.templatetags.dicom import person_initials

MARGIN = 20 * mm
QR_SIZE = 4 * cm  # the symbol with its quiet zone
QR_BORDER = 4  # modules of quiet zone (ISO/IEC 18004)
CODE_FONT_SIZE = 22
CODE_CHAR_SPACE = 2.5
LINK_FONT_SIZES = (10, 9, 8)
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#52606d")
ACCENT = colors.HexColor("#0b5cad")


def pdf_text(text: str) -> str:
    """``text`` in Windows-1252 (what the standard fonts can draw): accents dropped where needed, else '?'."""
    out: list[str] = []
    for char in text:
        if _encodable(char):
            out.append(char)
            continue
        plain = "".join(c for c in unicodedata.normalize("NFKD", char) if _encodable(c) and c.isprintable())
        out.append(plain or "?")
    return "".join(out)


def _encodable(char: str) -> bool:
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _markup(text: str) -> str:
    """Plain text as Paragraph markup (which is XML-like)."""
    return escape(pdf_text(text))


class _QrCode(Flowable):  # type: ignore[misc]
    """The QR code as vector squares, one path, so it prints sharp and has no seams between modules."""

    def __init__(self, data: str, size: float) -> None:
        super().__init__()
        qr = segno.make_qr(data, error="m")
        self.rows = [[bool(m) for m in row] for row in qr.matrix_iter(scale=1, border=QR_BORDER)]
        self.width = self.height = size

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        canvas = self.canv
        module = self.width / len(self.rows)
        canvas.setFillColor(colors.white)
        canvas.rect(0, 0, self.width, self.height, stroke=0, fill=1)
        path = canvas.beginPath()
        for y, row in enumerate(self.rows):
            top = self.height - (y + 1) * module
            x = 0
            while x < len(row):
                if not row[x]:
                    x += 1
                    continue
                start = x
                while x < len(row) and row[x]:
                    x += 1
                path.rect(start * module, top, (x - start) * module, module)
        canvas.setFillColor(colors.black)
        canvas.drawPath(path, stroke=0, fill=1)


class _Code(Flowable):  # type: ignore[misc]
    """The code, large and spaced out, to be typed by hand."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        self.font = "Courier-Bold"
        self.width = stringWidth(code, self.font, CODE_FONT_SIZE) + CODE_CHAR_SPACE * (len(code) - 1)
        self.height = CODE_FONT_SIZE * 1.2

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        self.canv.setFillColor(INK)
        self.canv.setFont(self.font, CODE_FONT_SIZE)
        self.canv.drawString(0, CODE_FONT_SIZE * 0.25, self.code, charSpace=CODE_CHAR_SPACE)


def _styles() -> dict[str, Any]:
    base = ParagraphStyle(
        "body", fontName="Helvetica", fontSize=10, leading=13.5, textColor=INK, alignment=TA_LEFT
    )
    return {
        "body": base,
        "organisation": ParagraphStyle(
            "organisation", base, fontName="Helvetica-Bold", fontSize=14, leading=18
        ),
        "contact": ParagraphStyle("contact", base, fontSize=9, leading=12, textColor=MUTED),
        "title": ParagraphStyle(
            "title", base, fontName="Helvetica-Bold", fontSize=17, leading=22, spaceAfter=8
        ),
        "heading": ParagraphStyle(
            "heading",
            base,
            fontName="Helvetica-Bold",
            fontSize=11.5,
            leading=15,
            spaceBefore=10,
            spaceAfter=4,
        ),
        "label": ParagraphStyle(
            "label", base, fontName="Helvetica-Bold", fontSize=9.5, leading=12, spaceAfter=2
        ),
        "small": ParagraphStyle("small", base, fontSize=8.5, leading=11, textColor=MUTED),
    }


def _link(url: str, width: float, styles: dict[str, Any]) -> Paragraph:
    """The link in monospace, as large as fits on one line; a very long one wraps (splitLongWords)."""
    size = next((s for s in LINK_FONT_SIZES if stringWidth(url, "Courier", s) <= width), LINK_FONT_SIZES[-1])
    style = ParagraphStyle("link", styles["body"], fontName="Courier", fontSize=size, leading=size * 1.3)
    return Paragraph(_markup(url), style)


def _access_block(texts: ShareTexts, width: float, styles: dict[str, Any]) -> Table:
    """QR code on the left; link and code on the right."""
    gap = 8 * mm
    right = width - QR_SIZE - gap
    cell = [
        Paragraph(_markup(gettext("Your link")), styles["label"]),
        _link(texts.url, right, styles),
        Spacer(1, 8),
        Paragraph(_markup(texts.code_fallback), styles["body"]),
        Spacer(1, 4),
        _Code(texts.code),
    ]
    table = Table([[_QrCode(texts.url, QR_SIZE), cell]], colWidths=[QR_SIZE + gap, right])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("TOPPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return table


def _bullets(items: tuple[str, ...], styles: dict[str, Any], *, numbered: bool) -> ListFlowable:
    return ListFlowable(
        [Paragraph(_markup(item), styles["body"]) for item in items],
        bulletType="1" if numbered else "bullet",
        start="1" if numbered else "\u2022",
        bulletFormat="%s." if numbered else None,
        bulletFontName="Helvetica-Bold" if numbered else "Helvetica",
        bulletFontSize=10,
        leftIndent=16,
        spaceBefore=0,
        spaceAfter=0,
    )


def _addressee(share: Share, styles: dict[str, Any]) -> list[Any]:
    """Whom the letter is for (as the sender typed it), its reference and the patient's initials; in the active
    language."""
    lines: list[Any] = []
    if name := share.recipient_name:
        lines.append(Paragraph(f"<b>{_markup(name)}</b>", styles["body"]))
    reference = gettext("Reference: share %(number)s") % {"number": share.pk}
    initials = person_initials(share.patient.patient_name) if share.patient is not None else ""
    if initials:
        reference += "  \u00b7  " + gettext("Patient's initials: %(initials)s") % {"initials": initials}
    lines += [Paragraph(_markup(reference), styles["contact"]), Spacer(1, 12)]
    return lines


def _story(texts: ShareTexts, width: float, addressee: list[Any]) -> list[Any]:
    styles = _styles()
    # Label and value stay on one line; the line may break between contacts.
    contact_line = " &nbsp;\u00b7&nbsp; ".join(
        f"{_markup(c.label)}:&nbsp;{_markup(c.value)}" for c in texts.contacts
    )
    story: list[Any] = [Paragraph(_markup(texts.organisation), styles["organisation"])]
    if contact_line:
        story.append(Paragraph(contact_line, styles["contact"]))
    story += [
        Spacer(1, 4),
        HRFlowable(width="100%", thickness=1.2, color=ACCENT, spaceBefore=2, spaceAfter=14),
        *addressee,
        Paragraph(_markup(texts.title), styles["title"]),
        Paragraph(_markup(texts.greeting), styles["body"]),
        Spacer(1, 6),
        Paragraph(_markup(texts.intro), styles["body"]),
        Spacer(1, 14),
        _access_block(texts, width, styles),
        Spacer(1, 6),
        KeepTogether(
            [
                Paragraph(_markup(gettext("What you need")), styles["heading"]),
                _bullets(texts.needs, styles, numbered=False),
            ]
        ),
        KeepTogether(
            [
                Paragraph(_markup(gettext("How to open the images")), styles["heading"]),
                _bullets(texts.steps, styles, numbered=True),
            ]
        ),
        Spacer(1, 10),
        Paragraph(f"<b>{_markup(texts.expiry)}</b>", styles["body"]),
        Spacer(1, 4),
        Paragraph(_markup(texts.keep), styles["body"]),
        Spacer(1, 4),
        Paragraph(_markup(texts.security), styles["body"]),
        KeepTogether(
            [
                Paragraph(_markup(gettext("Questions")), styles["heading"]),
                Paragraph(_markup(texts.questions), styles["body"]),
                *[Paragraph(_markup(f"{c.label}: {c.value}"), styles["body"]) for c in texts.contacts],
            ]
        ),
        Spacer(1, 14),
        Paragraph(_markup(texts.confidential), styles["small"]),
    ]
    return story


def letter_pdf(share: Share, code: str) -> bytes:
    """A4 PDF in share.language for share.recipient_type; generated on request, never stored."""
    texts = share_texts(share, code, "letter")
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=pdf_text(texts.title),
        author=pdf_text(texts.organisation),
        creator="radshare",
        lang=texts.language,
        invariant=True,  # same share and code, same bytes: no timestamps or random ids in the file
    )
    with translation.override(share.language):
        doc.build(_story(texts, doc.width, _addressee(share, _styles())))
    return buffer.getvalue()


def letter_response(share: Share, actor: Actor) -> HttpResponse:
    code = current_code(share)
    pdf = letter_pdf(share, code)
    audit(Action.SHARE_LETTER, share, actor)
    response = HttpResponse(pdf, content_type="application/pdf")
    # A server-chosen name from the share id only (A14); no-store: it holds the code.
    response["Content-Disposition"] = f'attachment; filename="radshare-letter-{share.pk}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
