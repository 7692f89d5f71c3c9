"""The demo sender has an e-mail address, so that the notices a sender asks for reach the demo outbox (issue 14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from radshare.organisations.models import Sender
from radshare.runtime.demo import load_demo


@pytest.fixture
def demo_mode(radshare_config: Any, tmp_path: Path) -> Path:
    radshare_config(demo=True, data_dir=str(tmp_path))
    return tmp_path


@pytest.mark.django_db
def test_the_demo_sender_has_an_address_and_an_older_demo_gets_one(demo_mode: Path) -> None:
    load_demo()
    assert Sender.objects.get(username="demo").email == "demo@demoziekenhuis.example"
    Sender.objects.filter(username="demo").update(email="")  # a demo loaded before it had one
    assert load_demo() == ["e-mail address of sender demo"]
    assert Sender.objects.get(username="demo").email == "demo@demoziekenhuis.example"
    assert load_demo() == []
    Sender.objects.filter(username="demo").update(email="someone@demoziekenhuis.example")
    load_demo()
    assert (
        Sender.objects.get(username="demo").email == "someone@demoziekenhuis.example"
    )  # a choice of theirs stays
