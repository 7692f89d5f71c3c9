"""A request's database connection is handed back once its response is built (core/connections.py), except for a
streamed response, which may still read the database while it is sent, and a connection inside a transaction."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from radshare.imaging.models import InstanceRender
from radshare.viewer import views
from tests.recipients.conftest import Recipient


@pytest.mark.django_db(transaction=True)
def test_the_connection_goes_back_once_the_response_is_built(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = InstanceRender.objects.filter(instance__series__study=recipient.studies[0]).values_list(
        "pk", flat=True
    )[0]
    image = reverse("viewer:image", args=[render, 0, "preview"])
    for url in (
        reverse("recipients:studies"),
        reverse("viewer:study", args=[recipient.studies[0].pk]),
        image,
    ):
        connection.ensure_connection()
        assert recipient.client.get(url).status_code == 200
        assert connection.connection is None, url  # closed: back in the pool
    assert InstanceRender.objects.filter(pk=render).exists()  # and a new one comes when needed

    monkeypatch.setattr(views, "IMAGE_IN_ONE_PIECE", 10)  # a streamed image
    connection.ensure_connection()
    response = recipient.client.get(image)
    assert response.streaming
    assert connection.connection is not None  # kept until the request has finished
    response.close()


@pytest.mark.django_db
def test_a_connection_in_a_transaction_is_left_alone(recipient: Recipient) -> None:
    assert connection.in_atomic_block  # the test's own transaction
    assert recipient.client.get(reverse("recipients:studies")).status_code == 200
    assert connection.connection is not None
