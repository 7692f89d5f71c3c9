"""What a PACS failure tells a person (issue 14): a text by its code, in their language, never the English reason
meant for the log; and the PACS node form offers to keep a stored password only when there is one."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from radshare.audit.models import AuditEvent
from radshare.organisations.models import PacsNode
from radshare.organisations.services import add_pacs_node, create_sender
from radshare.pacs.base import PacsStudy
from radshare.shares.models import Share
from radshare.shares.retrieve import retrieve_missing
from radshare.shares.services import PacsSelection, create_share
from tests.conftest import free_port

PASSWORD = "correct horse battery staple"
KEEP = "Leave empty to keep the one stored."


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _client(user: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.fixture
def admin(organisation: Any) -> Any:
    return create_sender(organisation, "carol", PASSWORD, admin=True)


@pytest.fixture
def down(organisation: Any) -> PacsNode:
    """A PACS node nothing listens for: every association is refused at once."""
    return add_pacs_node(organisation, "DOWN", host="127.0.0.1", port=free_port(), retrieve="get")


def test_every_failure_has_a_text_for_people() -> None:
    from radshare.pacs.base import FAILURE_TEXTS, Failure, PacsError, failure_text

    assert set(FAILURE_TEXTS) == set(Failure)
    with translation.override("en"):
        assert failure_text("no_service") == str(FAILURE_TEXTS[Failure.NO_SERVICE])
        error = PacsError("the PACS does not offer the requested DICOM service", code=Failure.NO_SERVICE,
                          temporary=False)  # fmt: skip
        assert error.message.startswith("The PACS does not offer the DICOM service")
    assert failure_text("made_up") is None


@pytest.mark.django_db
def test_test_connection_tells_the_admin_in_words_of_their_own_and_audits_the_code(
    admin: Any, down: PacsNode
) -> None:
    page = _text(_client(admin).post(f"/portal/pacs-nodes/{down.pk}/test/", follow=True))
    assert "Connection to DOWN failed: The PACS could not be reached." in page
    assert "connection refused or timed out" not in page  # the English reason is for the log and the trail
    entry = AuditEvent.objects.get(action="portal.pacsnode.test")
    assert entry.detail["code"] == "unreachable"
    assert "connection refused" in entry.detail["reason"]


@pytest.mark.django_db
def test_a_failed_retrieve_stores_its_code_and_the_share_page_says_it_in_words(
    organisation: Any, sender: Any, down: PacsNode
) -> None:
    study = PacsStudy("1.2.826.0.1.3680043.10.1548.99", "P1", "", "Jansen^Anna", dt.date(1968, 3, 14),
                      dt.date(2026, 1, 2), "CT", "", ("CT",), 1, 2)  # fmt: skip
    share = create_share(organisation, [], recipient_type="patient", phone="0612345678", delivery="url",
                         created_by=sender, pacs=[PacsSelection(down, study)]).share  # fmt: skip
    assert retrieve_missing(share.pk) == "failed"
    share.refresh_from_db()
    assert share.status_reason == "pacs:unreachable"
    page = _text(_client(sender).get(f"/portal/shares/{share.pk}/"))
    assert "Preparing this share failed." in page
    assert "The PACS could not be reached. Check that it is running" in page
    assert "connection refused" not in page
    entry = AuditEvent.objects.get(action="pacs.retrieve")
    assert (entry.outcome, entry.detail["code"]) == ("failure", "unreachable")


@pytest.mark.django_db
def test_a_share_whose_node_went_away_says_so(organisation: Any, sender: Any) -> None:
    share = create_share(
        organisation,
        [],
        recipient_type="patient",
        phone="0612345678",
        delivery="url",
        pacs=[PacsSelection(add_pacs_node(organisation, "GONE", host="127.0.0.2", port=104),
                            PacsStudy("1.2.3", "P1", "", "", dt.date(1968, 3, 14), None, "", "", (), None, None))],
    ).share  # fmt: skip
    Share.objects.filter(pk=share.pk).update(status="failed", status_reason="pacs_node_missing")
    page = _text(_client(sender).get(f"/portal/shares/{share.pk}/"))
    assert "has been removed or switched off" in page
    assert "pacs_node_missing" not in page


@pytest.mark.django_db
def test_the_pacs_search_names_a_node_that_did_not_answer_in_words(sender: Any, down: PacsNode) -> None:
    page = _text(_client(sender).get("/portal/pacs/", {"patient_id": "P1"}))
    assert "The PACS could not be searched: DOWN: The PACS could not be reached." in page
    assert "connection refused" not in page


@pytest.mark.django_db
def test_keeping_the_stored_password_is_offered_only_when_one_is_stored(
    admin: Any, organisation: Any
) -> None:
    client = _client(admin)
    assert KEEP not in _text(client.get("/portal/pacs-nodes/"))  # adding a node: nothing stored yet
    plain = add_pacs_node(organisation, "PLAIN", host="127.0.0.3", port=104)
    assert KEEP not in _text(client.get(f"/portal/pacs-nodes/{plain.pk}/"))
    web = add_pacs_node(
        organisation,
        "WEB",
        dicomweb_url="https://pacs.example.org/dicom-web",
        dicomweb_auth="basic",
        dicomweb_username="radshare",
        dicomweb_secret="hunter2-long",
    )
    assert KEEP in _text(client.get(f"/portal/pacs-nodes/{web.pk}/"))
