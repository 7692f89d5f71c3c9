"""A viewer image is sent from memory in one piece when small (a preview, thumbnail or preset), streamed when large;
the same bytes either way."""

from __future__ import annotations

import pytest
from django.urls import reverse

from radshare.core.storage import get_storage, render_key
from radshare.imaging.models import InstanceRender
from radshare.viewer import views
from tests.recipients.conftest import Recipient

pytestmark = pytest.mark.django_db


def test_small_images_in_one_piece_large_ones_streamed(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = InstanceRender.objects.filter(instance__series__study=recipient.studies[0]).first()
    assert render is not None
    url = reverse("viewer:image", args=[render.pk, 0, "preview"])
    with get_storage().open(render_key(render.instance_id, 0, render.kept_as("preview"))) as stored:
        expected = stored.read()
    small = recipient.client.get(url)
    assert not small.streaming
    assert small.content == expected
    monkeypatch.setattr(views, "IMAGE_IN_ONE_PIECE", len(expected) - 1)
    large = recipient.client.get(url)
    assert large.streaming
    assert large.getvalue() == expected
    assert large["Content-Length"] == str(len(expected))
    assert large["Cache-Control"] == small["Cache-Control"] == "no-store"
