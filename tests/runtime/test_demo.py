"""Demo data: loaded once however often it runs, and only in demo mode."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError

from radshare.organisations.models import Organisation, Sender
from radshare.runtime.demo import DEMO_PATIENT, load_demo
from radshare.studies.models import Instance, Patient, Study
from tests.cli_runner import radshare_env, run_radshare


@pytest.fixture
def demo_mode(radshare_config: Any, tmp_path: Path) -> Path:
    radshare_config(demo=True, data_dir=str(tmp_path))
    return tmp_path


@pytest.mark.django_db
def test_load_demo_twice_gives_one_of_each(demo_mode: Path) -> None:
    created = load_demo()
    assert created == [
        "organisation demo",
        "sender demo",
        "study CT thorax (24 images)",
        "study X thorax (1 image)",
        "study coronary angiography (a run of 30 frames)",
    ]
    assert load_demo() == []
    assert Organisation.objects.count() == 1
    assert Sender.objects.count() == 1
    assert Patient.objects.count() == 1
    assert Study.objects.count() == 3
    assert Instance.objects.count() == 26
    run = Instance.objects.get(series__study__accession_number="DEMO-XA-1")
    assert run.number_of_frames == 30
    assert Patient.objects.get().patient_id == DEMO_PATIENT.patient_id


@pytest.mark.django_db
def test_demo_login_is_written_privately_and_works(demo_mode: Path) -> None:
    load_demo()
    credentials = demo_mode / "demo-login.txt"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    username, password = credentials.read_text(encoding="utf-8").strip().split(" / ")
    user = authenticate(username=username, password=password)
    assert user is not None
    assert user.is_org_admin


@pytest.mark.django_db
def test_demo_command_loads_and_reports(demo_mode: Path) -> None:
    out = io.StringIO()
    call_command("demo", stdout=out)
    assert "created organisation demo" in out.getvalue()
    assert "demo login: demo / " in out.getvalue()
    again = io.StringIO()
    call_command("demo", stdout=again)
    assert "demo data already present" in again.getvalue()
    assert Study.objects.count() == 3


@pytest.mark.django_db
def test_demo_command_refuses_outside_demo_mode(radshare_config: Any) -> None:
    radshare_config(demo=False)
    with pytest.raises(CommandError) as caught:
        call_command("demo", stdout=io.StringIO())
    assert caught.value.returncode == 2
    assert "RADSHARE_DEMO=1" in str(caught.value)
    assert not Organisation.objects.exists()


def test_radshare_demo_refuses_outside_demo_mode(tmp_path: Path) -> None:
    done = run_radshare("demo", env=radshare_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == "CommandError: the demo is only loaded in demo mode (RADSHARE_DEMO=1)"
    assert not (tmp_path / "demo-login.txt").exists()
