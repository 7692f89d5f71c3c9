"""The letter as an HTTP answer, for the portal and the API alike: made on request, never stored
(docs/architecture.md)."""

from __future__ import annotations

from django.http import HttpResponse

from radshare.delivery.letter import letter_pdf
from radshare.shares.models import Share
from radshare.shares.services import Actor, audit, current_code


def letter_response(share: Share, actor: Actor) -> HttpResponse:
    code = current_code(share)
    pdf = letter_pdf(share, code)
    audit("share.letter", share, actor)
    response = HttpResponse(pdf, content_type="application/pdf")
    # A server-chosen name from the share id only (A14); no-store: it holds the code.
    response["Content-Disposition"] = f'attachment; filename="radshare-letter-{share.pk}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
