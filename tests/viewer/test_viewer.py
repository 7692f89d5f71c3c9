"""The recipient's viewer: a study of the share as stacks of pre-rendered images, its reports beside them, and
every look-up scoped to the share (docs/security.md A10, A13, A16, A20)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pydicom.uid import generate_uid

from radshare.audit.models import AuditEvent
from radshare.downloads.models import DownloadDay
from radshare.imaging import reports as reports_module
from radshare.imaging import services as imaging
from radshare.imaging.models import InstanceRender
from radshare.imaging.render import render_file
from radshare.imaging.reports import study as report_study
from radshare.shares.services import prepare
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import ct_series, encode
from tests.imaging.test_reports import make_pdf, pdf_dataset, sr_dataset
from tests.recipients.conftest import Recipient, logged_in_client, ready_share
from tests.shares.helpers import ANNA, PIET, make_share, make_study

pytestmark = pytest.mark.django_db

IMAGE_URL = re.compile(r"^/r/images/(\d+)/(\d+)/preview\.jpg$")
MULTI_FRAME_SC = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture Image Storage


def viewer_url(study: Study) -> str:
    return reverse("viewer:study", args=[study.pk])


def viewer_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="viewer-data" type="application/json">(.*?)</script>', html, re.S)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def open_viewer(client: Client, study: Study) -> tuple[str, dict[str, Any]]:
    response = client.get(viewer_url(study))
    assert response.status_code == 200
    html = response.content.decode()
    return html, viewer_data(html)


def add_instance(study: Study, ds: Any) -> Instance:
    result = store_instance(study.organisation, encode(ds), source="upload")
    imaging.render_pending_now(parallel=False)
    return Instance.objects.get(pk=result.instance_pk)


def multi_frame(study: Study, frames: int = 3) -> Instance:
    """A multi-frame secondary capture in ``study`` (each frame is one image of the stack)."""
    ds = ct_series(ANNA, count=1, size=32, study_uid=study.study_instance_uid)[0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MULTI_FRAME_SC
    ds.Modality = "OT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 5
    ds.SeriesDescription = "Cine"
    ds.NumberOfFrames = frames
    ds.PixelData = bytes(ds.PixelData) * frames
    return add_instance(study, ds)


@pytest.fixture
def other_shares(organisation: Any, other_organisation: Any) -> list[Study]:
    """Studies in two other shares: another patient of the same organisation, and another organisation."""
    piet = make_study(organisation, PIET)
    ready_share(organisation, [piet], delivery="url", email="")
    elsewhere = make_study(other_organisation, ANNA)
    ready_share(other_organisation, [elsewhere], delivery="url", email="")
    return [piet, elsewhere]


def render_pks(study: Study) -> list[int]:
    return list(InstanceRender.objects.filter(instance__series__study=study).values_list("pk", flat=True))


def test_page_lists_the_series_and_a_stack_of_jpegs(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    html, data = open_viewer(recipient.client, ct)
    assert html.count("<h1") == 1
    assert "CT thorax" in html
    assert "Axial 5 mm" in html
    assert "2 images" in html
    assert f'href="{reverse("downloads:choose")}?study={ct.pk}"' in html
    assert f'href="{reverse("recipients:studies")}"' in html
    assert 'src="/static/radshare/viewer.js"' in html
    assert 'href="/static/radshare/viewer.css"' in html
    [series] = data["series"]
    assert series["presets"] == ["soft", "lung", "bone"]
    assert len(series["images"]) == 2
    for image in series["images"]:
        assert IMAGE_URL.match(image["src"])
        assert image["w"] == image["h"] == 32
        response = recipient.client.get(image["src"])
        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert response["Cache-Control"] == "no-store"
        assert response["Content-Disposition"] == "inline"
        body = response.getvalue()  # a small JPEG comes in one piece, a large one streamed
        assert body.startswith(b"\xff\xd8")
        for kind in ("lung", "soft", "bone", "thumb", "full"):
            response = recipient.client.get(image["src"].replace("preview.jpg", f"{kind}.jpg"))
            assert response.status_code == 200, kind


def test_page_headers(recipient: Recipient) -> None:
    response = recipient.client.get(viewer_url(recipient.studies[0]))
    assert response["Cache-Control"] == "no-store"
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_no_patient_data_or_uids_in_image_urls(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    html, data = open_viewer(recipient.client, ct)
    secrets = [ANNA.patient_id, "Jansen", "Anna", ANNA.bsn, ct.study_instance_uid]
    secrets += list(Instance.objects.filter(series__study=ct).values_list("sop_instance_uid", flat=True))
    secrets += list(ct.series.values_list("series_instance_uid", flat=True))
    urls = [image["src"] for series in data["series"] for image in series["images"]]
    urls += re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls
    for url in urls:
        for secret in secrets:
            assert secret not in url
    # Nor anywhere else in the data block or the page (UIDs are internal; the page names no patient).
    for uid in secrets[4:]:
        assert uid not in html


def test_cr_has_no_presets(recipient: Recipient) -> None:
    cr = recipient.studies[1]
    html, data = open_viewer(recipient.client, cr)
    [series] = data["series"]
    assert series["presets"] == []
    assert len(series["images"]) == 1
    assert 'id="viewer-presets" role="group" aria-labelledby="viewer-presets-label" hidden' in html
    lung = series["images"][0]["src"].replace("preview.jpg", "lung.jpg")
    assert recipient.client.get(lung).status_code == 404


def test_large_images_offer_their_full_size_for_zooming(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    add_instance(ct, ct_series(ANNA, count=1, size=1100, study_uid=ct.study_instance_uid)[0])
    _, data = open_viewer(recipient.client, ct)
    images = [image for series in data["series"] for image in series["images"]]
    small = [image for image in images if image["w"] == 32]
    [large] = [image for image in images if image["w"] == 1024]  # previews stop at 1024 px
    assert len(small) == 2
    assert all("full" not in image for image in small)  # their preview is their full size
    assert large["full"] is True
    assert recipient.client.get(large["src"].replace("preview.jpg", "full.jpg")).status_code == 200


def test_every_frame_of_a_multi_frame_instance_is_an_image(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    instance = multi_frame(ct, frames=3)
    _, data = open_viewer(recipient.client, ct)
    assert [len(s["images"]) for s in data["series"]] == [2, 3]  # series 2 (CT), then series 5 (the cine)
    cine = data["series"][1]
    assert cine["presets"] == []
    render = instance.render
    assert [IMAGE_URL.match(i["src"]).groups() for i in cine["images"]] == [  # type: ignore[union-attr]
        (str(render.pk), str(frame)) for frame in range(3)
    ]
    for image in cine["images"]:
        assert recipient.client.get(image["src"]).status_code == 200
    # One past the last frame is not there.
    assert recipient.client.get(reverse("viewer:image", args=[render.pk, 3, "preview"])).status_code == 404


def test_another_shares_study_is_refused_and_audited(recipient: Recipient, other_shares: list[Study]) -> None:
    for study in [*other_shares, Study(pk=999_999)]:
        before = AuditEvent.objects.count()
        assert recipient.client.get(viewer_url(study)).status_code == 404
        event = AuditEvent.objects.order_by("pk").last()
        assert AuditEvent.objects.count() == before + 1
        assert event is not None
        assert (event.action, event.outcome, event.actor_type) == (
            "recipient.study.view",
            "denied",
            "recipient",
        )
        assert event.detail["share"] == recipient.share.pk
        assert event.detail["requested_id"] == study.pk
        assert event.study_uids == []


def test_another_shares_render_is_a_404(recipient: Recipient, other_shares: list[Study]) -> None:
    for study in other_shares:
        for pk in render_pks(study):
            for kind in ("preview", "thumb", "full"):
                url = reverse("viewer:image", args=[pk, 0, kind])
                assert recipient.client.get(url).status_code == 404
    # The same renders are there for their own recipients.
    piet_share = other_shares[0].share_studies.get().share
    url = reverse("viewer:image", args=[render_pks(other_shares[0])[0], 0, "preview"])
    assert logged_in_client(piet_share).get(url).status_code == 200


def test_frame_out_of_range_and_bad_kind(recipient: Recipient) -> None:
    pk = render_pks(recipient.studies[0])[0]
    assert recipient.client.get(reverse("viewer:image", args=[pk, 0, "preview"])).status_code == 200
    assert recipient.client.get(reverse("viewer:image", args=[pk, 1, "preview"])).status_code == 404
    assert recipient.client.get(reverse("viewer:image", args=[pk, 10_000, "preview"])).status_code == 404
    for kind in ("original", "dicom", "PREVIEW", "..", "preview.jpg%00"):
        assert recipient.client.get(f"/r/images/{pk}/0/{kind}.jpg").status_code == 404
    assert recipient.client.get(f"/r/images/{pk}/-1/preview.jpg").status_code == 404
    assert recipient.client.post(f"/r/images/{pk}/0/preview.jpg").status_code == 405


def test_not_logged_in_goes_to_the_start_page(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    pdf = add_instance(ct, pdf_dataset(ANNA, ct.study_instance_uid, make_pdf()))
    anonymous = Client()
    for url in (
        viewer_url(ct),
        reverse("viewer:image", args=[render_pks(ct)[0], 0, "preview"]),
        reverse("viewer:report_pdf", args=[pdf.pk]),
    ):
        response = anonymous.get(url)
        assert response.status_code == 302
        assert response["Location"] == reverse("recipients:start")


def test_sr_report_is_shown_beside_the_images(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    sr = sr_dataset(ANNA, ct.study_instance_uid, finding="Small nodule <b>left</b>", conclusion="No fracture")
    add_instance(ct, sr)
    html, data = open_viewer(recipient.client, ct)
    assert [len(s["images"]) for s in data["series"]] == [2]  # the report is not an image
    reports_at = html.index('id="viewer-h-reports"')
    assert html.index('id="viewer-viewport"') < reports_at
    assert "Small nodule &lt;b&gt;left&lt;/b&gt;" in html[reports_at:]  # report text is untrusted: escaped
    assert "No fracture" in html[reports_at:]
    assert "Findings" in html[reports_at:]
    assert "cannot be shown in the browser" not in html


def test_a_report_is_read_from_storage_once_while_the_pages_are_opened_again(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ct = recipient.studies[0]
    sr = sr_dataset(ANNA, ct.study_instance_uid, finding="Kept nodule", conclusion="No fracture")
    add_instance(ct, sr)
    reads = []
    real_read = report_study.read_instance
    fails = {"now": True}

    def read(instance: Any, **kwargs: Any) -> Any:
        reads.append(instance.pk)
        if fails["now"]:
            raise reports_module.ReportError("the storage is away a moment")
        return real_read(instance, **kwargs)

    monkeypatch.setattr(report_study, "read_instance", read)
    html, _ = open_viewer(recipient.client, ct)
    assert "Kept nodule" not in html  # unreadable now: not kept, so tried again
    fails["now"] = False
    for _ in range(3):
        html, _ = open_viewer(recipient.client, ct)
        assert "Kept nodule" in html
        assert reports_module.study_reports(Study.objects.get(pk=ct.pk))[
            0
        ].readable  # the sender's study page's report list too
    assert len(reads) == 2  # the failed read, then one read for three pages and three lists
    # Kept per language: the status line is in the page's language.
    recipient.client.cookies["django_language"] = "nl"
    open_viewer(recipient.client, ct)
    assert len(reads) == 3
    # And for a few minutes only: no report outlives its study's destruction for long in a process.
    monkeypatch.setattr(report_study, "KEEP_SECONDS", -1.0)
    open_viewer(recipient.client, ct)
    assert len(reads) == 4


def test_pdf_report_opens_inline(recipient: Recipient, other_shares: list[Study]) -> None:
    ct = recipient.studies[0]
    pdf = make_pdf("Report for the viewer")
    instance = add_instance(ct, pdf_dataset(ANNA, ct.study_instance_uid, pdf))
    html, _ = open_viewer(recipient.client, ct)
    url = reverse("viewer:report_pdf", args=[instance.pk])
    assert url == f"/r/reports/{instance.pk}.pdf"
    assert f'href="{url}"' in html
    assert "Verslag CT thorax" in html  # its document title
    before = AuditEvent.objects.count()
    response = recipient.client.get(url)
    assert response.status_code == 200
    assert response.content == pdf
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'inline; filename="report.pdf"'
    assert response["Cache-Control"] == "no-store"
    [event] = AuditEvent.objects.order_by("pk")[before:]
    assert (event.action, event.outcome) == ("recipient.report.view", "success")
    assert event.detail == {"share": recipient.share.pk, "instance": instance.pk, "kind": "pdf"}

    # Another share's report, and an instance that is no PDF report, are not there.
    piet = other_shares[0]
    other_pdf = add_instance(piet, pdf_dataset(PIET, piet.study_instance_uid, make_pdf("Not yours")))
    assert recipient.client.get(reverse("viewer:report_pdf", args=[other_pdf.pk])).status_code == 404
    image = Instance.objects.filter(series__study=ct, series__modality="CT").first()
    assert image is not None
    assert recipient.client.get(reverse("viewer:report_pdf", args=[image.pk])).status_code == 404


def test_one_audit_entry_per_study_opened_none_per_image(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    before = AuditEvent.objects.count()
    _, data = open_viewer(recipient.client, ct)
    events = list(AuditEvent.objects.order_by("pk")[before:])
    assert len(events) == 1
    [event] = events
    assert (event.action, event.outcome, event.actor_type) == ("recipient.study.view", "success", "recipient")
    assert event.actor_label == f"share {recipient.share.pk}"
    assert event.organisation_id == recipient.share.organisation_id
    assert event.patient_ref == recipient.share.patient_id
    assert event.study_uids == [ct.study_instance_uid]
    assert event.detail == {"share": recipient.share.pk}

    for image in data["series"][0]["images"]:
        for kind in ("preview", "thumb", "lung"):
            assert recipient.client.get(image["src"].replace("preview", kind)).status_code == 200
    assert AuditEvent.objects.count() == before + 1
    assert not DownloadDay.objects.exists()  # viewer images are no downloads

    open_viewer(recipient.client, ct)
    assert AuditEvent.objects.filter(action="recipient.study.view").count() == 2


def test_queries_do_not_grow_with_images_or_series(recipient: Recipient) -> None:
    """The page is built from indexed rows (docs/architecture.md "Performance budget"): a fixed number of queries."""
    ct = recipient.studies[0]
    with CaptureQueriesContext(connection) as small:
        open_viewer(recipient.client, ct)
    multi_frame(ct, frames=4)
    add_instance(ct, ct_series(ANNA, count=1, size=32, study_uid=ct.study_instance_uid)[0])
    with CaptureQueriesContext(connection) as larger:
        _, data = open_viewer(recipient.client, ct)
    assert sum(len(s["images"]) for s in data["series"]) == 2 + 4 + 1
    assert len(larger) == len(small)


def _first_pass_only(organisation: Any) -> tuple[Client, Study]:
    """A logged-in recipient of a CT share that is ready before its window presets are made: the worker has made
    the first render pass, not yet the second (docs/architecture.md "Renders")."""
    study = make_study(organisation, ANNA)
    for job in imaging.claim_pending():
        imaging.record_outcome(render_file(job), job.attempt)
    new = make_share(organisation, [study], language="en", delivery="url", email="")
    assert prepare(new.share.pk) == "ready"
    return logged_in_client(new.share), study


def test_the_page_asks_for_presets_the_second_pass_is_still_making(organisation: Any) -> None:
    client, study = _first_pass_only(organisation)
    html, data = open_viewer(client, study)
    [series] = data["series"]
    assert (series["presets"], series["waiting"]) == ([], True)
    url = reverse("viewer:presets", args=[study.pk])
    assert f'data-presets="{url}"' in html  # where viewer.js asks
    before = AuditEvent.objects.count()
    waiting = client.get(url)
    assert waiting["Cache-Control"] == "no-store"
    assert waiting.json() == {"series": [{"id": series["id"], "presets": [], "waiting": True}]}
    for job in imaging.claim_pending(presets=True):  # the second pass, as a worker makes it
        imaging.record_outcome(render_file(job), job.attempt)
    made = {"id": series["id"], "presets": ["soft", "lung", "bone"], "waiting": False}
    assert client.get(url).json() == {"series": [made]}
    assert AuditEvent.objects.count() == before  # the answer names presets, no patient data: not audited
    html, data = open_viewer(client, study)
    assert data["series"][0]["presets"] == made["presets"]
    assert "data-presets" not in html  # nothing left to ask for


def test_presets_of_another_shares_study_are_refused_and_audited(
    recipient: Recipient, other_shares: list[Study]
) -> None:
    for study in [*other_shares, Study(pk=999_999)]:
        assert recipient.client.get(reverse("viewer:presets", args=[study.pk])).status_code == 404
        event = AuditEvent.objects.order_by("pk").last()
        assert event is not None
        assert (event.action, event.outcome, event.detail["requested_id"]) == (
            "recipient.study.view",
            "denied",
            study.pk,
        )
