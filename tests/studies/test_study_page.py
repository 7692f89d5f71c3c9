"""The study page leads straight to sharing that study (issue 14)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from radshare.studies.synthetic import FakePatient
from tests.studies.factories import make_study

ANNA = FakePatient("P100", "Jansen^Anna", dt.date(1968, 3, 14), sex="F")


@pytest.mark.django_db
def test_the_study_page_has_a_share_button_to_the_dialog_for_that_study(
    organisation: Any, sender: Any
) -> None:
    study = make_study(organisation, ANNA, study_date=dt.date(2024, 1, 10), description="CT thorax")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(sender)
    page = client.get(f"/portal/studies/{study.pk}/").content.decode()
    url = f"/portal/shares/new?study={study.pk}"
    assert f'<a class="button" href="{url}">Share this study</a>' in page
    dialog = client.get(url)
    assert dialog.status_code == 200
    assert 'name="phone"' in dialog.content.decode()
