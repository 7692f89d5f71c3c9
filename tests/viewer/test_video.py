"""The viewer's videos (docs/architecture.md "Renders"): a run of frames is listed with its MP4, served with HTTP
Range (206) as video/mp4, scoped to the session's share and refused as the JPEGs are when the share ends."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from radshare.core.storage import get_storage, video_key
from radshare.imaging.models import InstanceRender
from radshare.shares.services import SYSTEM, revoke
from radshare.studies.models import Instance, Study
from radshare.studies.synthetic import xa_run
from tests.imaging.test_video import read_mp4, store_run
from tests.recipients.conftest import Recipient, logged_in_client, ready_share
from tests.shares.helpers import ANNA
from tests.viewer.test_viewer import add_instance, open_viewer

pytestmark = pytest.mark.django_db

TIMES = "\N{MULTIPLICATION SIGN}"
VIDEO_URL = re.compile(r"^/r/videos/(\d+)\.mp4$")


def xa_study(organisation: Any, frames: int = 20) -> tuple[Study, Instance, Client]:
    study, instance = store_run(organisation, frames=frames, size=64, frame_time=66.7)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    return study, instance, logged_in_client(share)


def stored(instance: Instance) -> bytes:
    return get_storage().open(video_key(instance.pk)).read()


def test_a_run_is_listed_with_its_video_beside_its_frames(organisation: Any) -> None:
    study, _instance, client = xa_study(organisation, frames=20)
    html, data = open_viewer(client, study)
    [series] = data["series"]
    assert len(series["images"]) == 20  # the frames stay, for stepping and as the fallback
    [clip] = series["videos"]
    assert VIDEO_URL.match(clip["src"])
    assert (clip["first"], clip["frames"]) == (0, 20)
    assert clip["fps"] == pytest.approx(1000 / 66.7)
    assert 'id="viewer-video" playsinline' in html
    assert 'id="viewer-playback" role="group" aria-label="Play the moving images"' in html
    assert re.search(r'<span id="viewer-help-video">', html)  # not hidden: the first series plays


def test_stills_have_no_video(recipient: Recipient) -> None:
    html, data = open_viewer(recipient.client, recipient.studies[0])
    assert all(series["videos"] == [] for series in data["series"])
    assert '<span id="viewer-help-video" hidden>' in html


def test_a_run_after_a_ct_in_the_same_series_starts_at_its_own_frame(recipient: Recipient) -> None:
    ct = recipient.studies[0]
    ds = xa_run(ANNA, frames=5, size=32, frame_time=40, study_uid=ct.study_instance_uid)
    ds.SeriesInstanceUID = Instance.objects.filter(series__study=ct).first().series.series_instance_uid  # type: ignore[union-attr]
    ds.InstanceNumber = 99
    add_instance(ct, ds)
    _, data = open_viewer(recipient.client, ct)
    [series] = [s for s in data["series"] if s["videos"]]
    assert [(v["first"], v["frames"]) for v in series["videos"]] == [(len(series["images"]) - 5, 5)]


def test_the_video_is_served_whole_and_by_range(organisation: Any) -> None:
    _study, instance, client = xa_study(organisation)
    data = stored(instance)
    url = reverse("viewer:video", args=[instance.render.pk])

    whole = client.get(url)
    assert whole.status_code == 200
    assert whole["Content-Type"] == "video/mp4"
    assert whole["Accept-Ranges"] == "bytes"
    assert whole["Content-Length"] == str(len(data))
    assert whole["Cache-Control"] == "no-store"
    assert b"".join(whole.streaming_content) == data  # type: ignore[attr-defined]

    first = client.get(url, headers={"range": "bytes=0-"})
    assert first.status_code == 206
    assert first["Content-Range"] == f"bytes 0-{len(data) - 1}/{len(data)}"
    assert first.content == data
    assert read_mp4(first.content).frames == 20

    middle = client.get(url, headers={"range": "bytes=100-199"})
    assert (middle.status_code, middle["Content-Length"]) == (206, "100")
    assert middle["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert middle.content == data[100:200]

    tail = client.get(url, headers={"range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, data[-10:])

    past = client.get(url, headers={"range": f"bytes={len(data)}-"})
    assert (past.status_code, past["Content-Range"]) == (416, f"bytes */{len(data)}")

    head = client.head(url, headers={"range": "bytes=0-9"})
    assert (head.status_code, head["Content-Length"], head.content) == (206, "10", b"")


def test_a_long_video_comes_in_pieces(organisation: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from radshare.viewer import views

    monkeypatch.setattr(views, "VIDEO_PIECE", 1000)
    _study, instance, client = xa_study(organisation)
    data = stored(instance)
    url = reverse("viewer:video", args=[instance.render.pk])
    got = b""
    while len(got) < len(data):
        part = client.get(url, headers={"range": f"bytes={len(got)}-"})
        assert part.status_code == 206
        assert len(part.content) <= 1000
        got += part.content
    assert got == data


def test_another_shares_video_and_a_still_are_404(organisation: Any, recipient: Recipient) -> None:
    _study, instance, _client = xa_study(organisation)
    url = reverse("viewer:video", args=[instance.render.pk])
    assert recipient.client.get(url).status_code == 404  # the recipient's share does not hold it
    assert recipient.client.get(url, headers={"range": "bytes=0-"}).status_code == 404
    still = InstanceRender.objects.filter(instance__series__study=recipient.studies[0]).first()
    assert still is not None
    assert recipient.client.get(reverse("viewer:video", args=[still.pk])).status_code == 404
    assert recipient.client.get(reverse("viewer:video", args=[999_999])).status_code == 404


def test_an_ended_share_refuses_the_video_as_it_refuses_the_images(organisation: Any) -> None:
    study, instance, client = xa_study(organisation)
    video = reverse("viewer:video", args=[instance.render.pk])
    image = reverse("viewer:image", args=[instance.render.pk, 0, "preview"])
    assert client.get(video, headers={"range": "bytes=0-"}).status_code == 206
    share = study.share_studies.get().share
    revoke(share, SYSTEM)
    refused_image = client.get(image)
    refused_video = client.get(video, headers={"range": "bytes=0-"})
    assert refused_image.status_code == refused_video.status_code == 302
    assert refused_image["Location"] == refused_video["Location"] == reverse("recipients:ended")
    assert Client().get(video).status_code == Client().get(image).status_code  # no session


def test_speeds_are_written_as_the_language_writes_numbers(organisation: Any) -> None:
    study, _instance, client = xa_study(organisation, frames=4)
    html = client.get(
        reverse("viewer:study", args=[study.pk]), headers={"accept-language": "en"}
    ).content.decode()
    assert re.findall(r'data-rate="([^"]+)" aria-pressed="(\w+)">([^<]+)<', html) == [
        ("0.25", "false", f"0.25{TIMES}"),
        ("0.5", "false", f"0.5{TIMES}"),
        ("1", "true", f"1{TIMES}"),
        ("2", "false", f"2{TIMES}"),
    ]
    client.cookies["django_language"] = "nl"
    html = client.get(
        reverse("viewer:study", args=[study.pk]), headers={"accept-language": "nl"}
    ).content.decode()
    assert re.findall(r'data-rate="([^"]+)"[^>]*>([^<]+)<', html)[:2] == [
        ("0.25", f"0,25{TIMES}"),
        ("0.5", f"0,5{TIMES}"),
    ]
