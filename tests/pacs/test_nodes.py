"""The PACS node pages for organisation admins: add, edit, remove, test the connection; scoped and audited."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from radshare.audit.models import AuditEvent
from radshare.organisations.models import PacsNode
from radshare.organisations.services import add_pacs_node, create_sender
from tests.conftest import free_port

PASSWORD = "correct horse battery staple"


@pytest.fixture
def admin_client(organisation: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(create_sender(organisation, "carol", PASSWORD, admin=True))
    return client


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _form(**overrides: Any) -> dict[str, Any]:
    data = {
        "ae_title": "PACS1",
        "host": "127.0.0.1",
        "port": "4242",
        "description": "Main PACS",
        "queried": "on",
        "retrieve": "get",
        "dicomweb_url": "",
        "dicomweb_auth": "none",
        "dicomweb_username": "",
        "is_active": "on",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_an_admin_adds_edits_and_removes_a_node(admin_client: Client, organisation: Any) -> None:
    response = admin_client.post("/portal/pacs-nodes/", _form())
    assert response.status_code == 302
    node = PacsNode.objects.get(ae_title="PACS1")
    assert (node.organisation, node.port, node.retrieve, node.searchable) == (organisation, 4242, "get", True)
    listing = _text(admin_client.get("/portal/pacs-nodes/"))
    assert "PACS1" in listing
    assert "C-FIND" in listing
    assert "Test connection" in listing
    edit = admin_client.post(
        f"/portal/pacs-nodes/{node.pk}/",
        _form(
            dicomweb_url="https://pacs.example.org/dicom-web",
            dicomweb_auth="basic",
            dicomweb_username="radshare",
            dicomweb_secret_new="hunter2-long",
        ),
    )
    assert edit.status_code == 302
    node.refresh_from_db()
    assert node.get_dicomweb_secret() == "hunter2-long"
    assert "hunter2-long" not in node.dicomweb_secret
    assert "hunter2-long" not in admin_client.get(f"/portal/pacs-nodes/{node.pk}/").content.decode()
    admin_client.post(f"/portal/pacs-nodes/{node.pk}/", _form(dicomweb_url="https://pacs.example.org/dicom-web",
                      dicomweb_auth="basic", dicomweb_username="radshare"))  # fmt: skip
    node.refresh_from_db()
    assert node.get_dicomweb_secret() == "hunter2-long"  # an empty field keeps the stored secret
    assert admin_client.get(f"/portal/pacs-nodes/{node.pk}/delete/").status_code == 200
    admin_client.post(f"/portal/pacs-nodes/{node.pk}/delete/")
    assert not PacsNode.objects.filter(pk=node.pk).exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"portal.pacsnode.create", "portal.pacsnode.edit", "portal.pacsnode.delete"} <= actions


@pytest.mark.django_db
def test_bad_values_are_refused_on_their_fields(admin_client: Client) -> None:
    response = admin_client.post(
        "/portal/pacs-nodes/", _form(ae_title="BAD\\AE", host="not-an-ip", port="70000")
    )
    assert response.status_code == 422
    assert not PacsNode.objects.exists()


@pytest.mark.django_db
def test_senders_who_are_not_admins_get_403(organisation: Any) -> None:
    client = Client()
    client.force_login(create_sender(organisation, "dave", PASSWORD))
    assert client.get("/portal/pacs-nodes/").status_code == 403


@pytest.mark.django_db
def test_another_organisations_node_is_a_404(admin_client: Client, other_organisation: Any) -> None:
    theirs = add_pacs_node(other_organisation, "THEIRS", host="10.0.0.9", port=104)
    for method, path in [
        ("get", ""),
        ("post", ""),
        ("get", "delete/"),
        ("post", "delete/"),
        ("post", "test/"),
    ]:
        assert getattr(admin_client, method)(f"/portal/pacs-nodes/{theirs.pk}/{path}").status_code == 404, (
            path
        )
    assert PacsNode.objects.filter(pk=theirs.pk).exists()
    assert "THEIRS" not in admin_client.get("/portal/pacs-nodes/").content.decode()


@pytest.mark.django_db
def test_test_connection_says_clearly_when_nothing_answers(admin_client: Client, organisation: Any) -> None:
    node = add_pacs_node(organisation, "DOWN", host="127.0.0.1", port=free_port())
    response = admin_client.post(f"/portal/pacs-nodes/{node.pk}/test/", follow=True)
    assert "Connection to DOWN failed" in _text(response)
    assert AuditEvent.objects.filter(action="portal.pacsnode.test", detail__result="failed").exists()
