"""The sender portal's study browser: search, the table, organisation isolation, access and bad input."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.template.defaultfilters import filesizeformat
from django.test import Client
from django.utils import translation

from radshare.audit.models import AuditEvent
from radshare.organisations.models import Organisation, Sender
from radshare.organisations.services import create_sender
from radshare.studies import views
from radshare.studies.models import Study
from radshare.studies.synthetic import FakePatient
from tests.conftest import pass_second_factor
from tests.studies.factories import make_study

ANNA = FakePatient("P100", "Jansen^Anna", dt.date(1968, 3, 14), sex="F")
PIET = FakePatient("P200", "Jansen^Piet", dt.date(1970, 5, 1), sex="M")
DE_VRIES = FakePatient("P300", "de Vries^Anna", dt.date(1980, 12, 31), sex="F")
# Another organisation's patient with the same patient id as Anna: ids are only unique per organisation.
BERT = FakePatient("P100", "Bakker^Bert", dt.date(1955, 7, 7), sex="M")


@dataclass
class Studies:
    ct: Study  # Anna, CT + SR, 10-01-2024
    cr: Study  # Piet, CR, 05-03-2024
    mr: Study  # de Vries, MR, 01-06-2023
    other: Study  # Bert, in the other organisation


@pytest.fixture
def studies(organisation: Organisation, other_organisation: Organisation) -> Studies:
    return Studies(
        ct=make_study(
            organisation,
            ANNA,
            modalities=("CT", "SR"),
            study_date=dt.date(2024, 1, 10),
            accession="ACC-1",
            description="CT thorax",
            images=2,
        ),
        cr=make_study(
            organisation,
            PIET,
            modalities=("CR",),
            study_date=dt.date(2024, 3, 5),
            accession="ACC-2",
            description="X thorax",
        ),
        mr=make_study(
            organisation,
            DE_VRIES,
            modalities=("MR",),
            study_date=dt.date(2023, 6, 1),
            accession="ACC-3",
            description="MRI knee",
        ),
        other=make_study(
            other_organisation,
            BERT,
            modalities=("CT",),
            study_date=dt.date(2024, 1, 10),
            accession="ACC-1",
            description="Other organisation CT",
        ),
    )


def english(user: Sender | None = None) -> Client:
    client = Client(headers={"accept-language": "en"})
    if user is not None:
        client.force_login(user)
    return client


def shown(response: Any) -> set[str]:
    """Descriptions of the studies listed on a study list page."""
    assert response.status_code == 200
    return {s.study_description for s in response.context["page"].object_list}


def rows(html: str) -> list[dict[str, str]]:
    """The study table's cells by their column label, one dict per row."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        {
            label: re.sub(r"<[^>]+>", "", cell).strip()
            for label, cell in re.findall(r'<td data-label="([^"]+)"[^>]*>(.*?)</td>', row, flags=re.S)
        }
        for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    ]


def comparable(response: Any) -> str:
    """A page without what differs per request: the CSRF token and the page's own path."""
    html = response.content.decode().replace(response.wsgi_request.path, "PATH")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


SEARCHES: list[tuple[dict[str, str], set[str]]] = [
    ({}, {"CT thorax", "X thorax", "MRI knee"}),
    ({"patient_id": "P100"}, {"CT thorax"}),
    ({"patient_id": " p100 "}, {"CT thorax"}),
    ({"patient_id": "P10"}, set()),
    ({"patient_name": "jansen"}, {"CT thorax", "X thorax"}),
    ({"patient_name": "jansen anna"}, {"CT thorax"}),
    ({"patient_name": "Jansen, Anna"}, {"CT thorax"}),
    ({"patient_name": "Jansen^Anna"}, {"CT thorax"}),
    ({"patient_name": "anna"}, {"CT thorax", "MRI knee"}),
    ({"patient_name": "bakker"}, set()),
    ({"patient_birth_date": "14-03-1968"}, {"CT thorax"}),
    ({"patient_birth_date": "1968-03-14"}, {"CT thorax"}),
    ({"patient_birth_date": "14/03/1968"}, {"CT thorax"}),
    ({"patient_birth_date": "15-03-1968"}, set()),
    ({"study_date_from": "01-01-2024"}, {"CT thorax", "X thorax"}),
    ({"study_date_to": "31-12-2023"}, {"MRI knee"}),
    ({"study_date_from": "01-01-2024", "study_date_to": "31-01-2024"}, {"CT thorax"}),
    ({"study_date_from": "2024-01-10", "study_date_to": "2024-01-10"}, {"CT thorax"}),
    ({"study_date_from": "11-01-2024", "study_date_to": "04-03-2024"}, set()),
    ({"accession_number": "ACC-2"}, {"X thorax"}),
    ({"accession_number": "acc-3"}, {"MRI knee"}),
    ({"accession_number": "ACC"}, set()),
    ({"modality": "CT"}, {"CT thorax"}),
    ({"modality": "sr"}, {"CT thorax"}),
    ({"modality": "CR"}, {"X thorax"}),
    ({"modality": "MR"}, {"MRI knee"}),
    ({"modality": "C"}, set()),
    ({"modality": "T\\SR"}, set()),
    ({"patient_name": "anna", "modality": "MR"}, {"MRI knee"}),
    ({"patient_name": "anna", "study_date_from": "01-01-2024", "modality": "SR"}, {"CT thorax"}),
]


@pytest.mark.django_db
def test_search_by_each_criterion(studies: Studies, sender: Sender) -> None:
    client = english(sender)
    wrong = []
    for query, expected in SEARCHES:
        found = shown(client.get("/portal/", query))
        if found != expected:
            wrong.append(f"{query}: found {sorted(found)}, expected {sorted(expected)}")
    assert wrong == []


@pytest.mark.django_db
def test_newest_study_first(studies: Studies, sender: Sender) -> None:
    response = english(sender).get("/portal/")
    assert [s.pk for s in response.context["page"].object_list] == [
        studies.cr.pk,
        studies.ct.pk,
        studies.mr.pk,
    ]


@pytest.mark.django_db
def test_table_shows_the_s2_2_columns(studies: Studies, sender: Sender) -> None:
    html = english(sender).get("/portal/", {"patient_id": "P100"}).content.decode()
    for header in ("Modality", "Patient", "Date of birth", "Study", "Study date", "Images", "Size"):
        assert re.search(rf'<th scope="col"[^>]*>{header}</th>', html), header
    assert rows(html) == [
        {
            "Modality": "CT, SR",
            "Patient": "Jansen, Anna",
            "Patient ID": "P100",
            "Date of birth": "14-03-1968",
            "Study": "CT thorax",
            "Study date": "10-01-2024",
            "Images": "2 images and 2 reports",  # two CT images, two SR documents (S4.12)
            "Size": _size(studies.ct.size),
        }
    ]
    assert f'href="/portal/studies/{studies.ct.pk}/"' in html


def _size(size: int) -> str:
    with translation.override("en"):
        return str(filesizeformat(size))


@pytest.mark.django_db
def test_pages_keep_the_search_criteria(
    studies: Studies, sender: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    client = english(sender)
    first = client.get("/portal/", {"study_date_from": "01-01-2023"})
    assert first.context["page"].paginator.num_pages == 2
    assert 'href="?study_date_from=01-01-2023&amp;page=2"' in first.content.decode()
    second = client.get("/portal/", {"study_date_from": "01-01-2023", "page": "2"})
    assert shown(second) == {"MRI knee"}
    for junk in ("abc", "-1", "999"):
        assert client.get("/portal/", {"page": junk}).status_code == 200


@pytest.mark.django_db
def test_study_page_shows_the_study_and_its_series(studies: Studies, sender: Sender) -> None:
    response = english(sender).get(f"/portal/studies/{studies.ct.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "CT thorax" in html
    assert "Jansen, Anna" in html
    assert "ACC-1" in html
    assert [s.modality for s in response.context["series_list"]] == ["CT", "SR"]


# --- organisation isolation (docs/security.md A10) -----------------------------------------------------


@pytest.fixture
def other_sender(other_organisation: Organisation) -> Sender:
    return create_sender(other_organisation, "bob", "another long pass phrase")


@pytest.mark.django_db
def test_other_organisation_gets_404_on_a_study_page(
    studies: Studies, sender: Sender, other_sender: Sender
) -> None:
    client = english(other_sender)
    refused = client.get(f"/portal/studies/{studies.ct.pk}/")
    missing = client.get(f"/portal/studies/{Study.objects.order_by('pk').last().pk + 100}/")  # type: ignore[union-attr]
    assert refused.status_code == missing.status_code == 404
    # No oracle: someone else's study looks exactly like no study (apart from the CSRF token and the path).
    assert comparable(refused) == comparable(missing)
    assert "Jansen" not in refused.content.decode()
    assert english(sender).get(f"/portal/studies/{studies.other.pk}/").status_code == 404
    # Both refusals are recorded alike (an intrusion signal), neither as a successful view.
    assert not AuditEvent.objects.filter(action="portal.study.view", outcome="success").exists()
    denied = AuditEvent.objects.filter(action="portal.study.view", outcome="denied")
    assert denied.count() == 3
    assert all(e.patient_ref is None and e.study_uids == [] for e in denied)
    assert client.get(f"/portal/studies/{studies.other.pk}/").status_code == 200


@pytest.mark.django_db
def test_other_organisation_never_lists_these_studies(studies: Studies, other_sender: Sender) -> None:
    client = english(other_sender)
    for query in (
        {},
        {"patient_id": "P100"},
        {"patient_name": "jansen"},
        {"accession_number": "ACC-1"},
        {"modality": "CT"},
        {"study_date_from": "01-01-2024", "study_date_to": "31-01-2024"},
    ):
        response = client.get("/portal/", query)
        assert shown(response) <= {"Other organisation CT"}, query
        assert "Jansen" not in response.content.decode()
    assert shown(client.get("/portal/", {"patient_id": "P100"})) == {"Other organisation CT"}


# --- who may enter --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_is_sent_to_the_login_page(studies: Studies) -> None:
    client = english()
    for path in ("/portal/", f"/portal/studies/{studies.ct.pk}/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"/portal/login/?next={path}"


@pytest.mark.django_db
def test_operator_without_organisation_gets_403(studies: Studies) -> None:
    operator = Sender.objects.create_superuser("operator", password="operator pass phrase 1")
    plain = Sender.objects.create_user("loose", password="loose pass phrase 1")
    for user in (operator, plain):
        client = english(user)
        if user.is_superuser:  # an operator passes the second login step first, always (docs/security.md A9)
            pass_second_factor(client, user)
        assert client.get("/portal/").status_code == 403
        assert client.get(f"/portal/studies/{studies.ct.pk}/").status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="portal.stud").exists()


@pytest.mark.django_db
def test_sender_of_an_inactive_organisation_gets_403(studies: Studies, sender: Sender) -> None:
    Organisation.objects.filter(pk=sender.organisation_id).update(is_active=False)
    assert english(sender).get("/portal/").status_code == 403


@pytest.mark.django_db
def test_state_changing_methods_are_refused(studies: Studies, sender: Sender) -> None:
    client = english(sender)
    assert client.post("/portal/").status_code == 405
    assert client.post(f"/portal/studies/{studies.ct.pk}/").status_code == 405


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            {"study_date_from": "01-02-2024", "study_date_to": "01-01-2024"},
            "study_date_to",
            "The end date lies before the start date.",
        ),
        ({"study_date_from": "31-02-2024"}, "study_date_from", "This date does not exist."),
        ({"study_date_from": "02-13-2024"}, "study_date_from", "There is no month 13. Type the day first"),
        ({"study_date_to": "1-2-24"}, "study_date_to", "Type the year in full, with four digits"),
        ({"patient_birth_date": "yesterday"}, "patient_birth_date", "Type the date in digits"),
        ({"patient_id": "X" * 65}, "patient_id", "Ensure this value has at most 64 characters"),
    ],
)
def test_invalid_search_shows_the_error_and_lists_nothing(
    studies: Studies, sender: Sender, query: dict[str, str], field: str, message: str
) -> None:
    response = english(sender).get("/portal/", query)
    assert response.status_code == 200
    assert response.context["page"] is None
    assert list(response.context["form"].errors) == [field]
    assert message in response.content.decode()
    assert not AuditEvent.objects.filter(action="portal.studies.list").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "fields"),
    [
        ("/portal/", ["patient_birth_date", "study_date_from", "study_date_to"]),
        ("/portal/shares/", ["created_from", "created_to"]),
    ],
)
def test_every_date_filter_is_typed_as_day_month_year_whatever_the_browser(
    sender: Sender, url: str, fields: list[str]
) -> None:
    """A native date input shows mm/dd/yyyy in an English browser; the portal's filters read day-month-year in every
    browser, as the recipient's date of birth does (one field for all, radshare.core.dates)."""
    html = english(sender).get(url).content.decode()
    assert 'type="date"' not in html
    for name in fields:
        match = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
        assert match is not None, name
        assert 'type="text"' in match[0], name
        assert 'inputmode="numeric"' in match[0], name
