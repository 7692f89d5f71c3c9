"""Demo data for `make run`: an organisation, a sender and two studies of one patient. Idempotent."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from django.conf import settings
from django.db import transaction

from radshare.imaging.services import request_render
from radshare.organisations.models import Organisation, Sender
from radshare.organisations.services import create_organisation, create_sender, generate_password
from radshare.studies.models import Study
from radshare.studies.scp import DEMO_ORGANISATION_SLUG
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode, xa_run

DEMO_USERNAME = "demo"
# Where the demo sender's notices go (the demo outbox shows them): without one, "e-mail me when it is opened" and the
# lock notices would have nobody to go to.
DEMO_EMAIL = "demo@demoziekenhuis.example"
# A fictitious patient; 999999990 passes the BSN eleven-test and lies in the range reserved for testing.
DEMO_PATIENT = FakePatient(
    patient_id="DEMO0001",
    patient_name="Jansen^Anna",
    birth_date=dt.date(1968, 3, 14),
    sex="F",
    bsn="999999990",
)
DEMO_ACCESSIONS = ("DEMO-CT-1", "DEMO-CR-1", "DEMO-XA-1")


def credentials_path() -> Path:
    return Path(settings.RADSHARE.data_dir) / "demo-login.txt"


def load_demo() -> list[str]:
    """Create what is missing of the demo; return what was created (one line each)."""
    created: list[str] = []
    with transaction.atomic():
        org = Organisation.objects.filter(slug=DEMO_ORGANISATION_SLUG).first()
        if org is None:
            org = create_organisation(
                DEMO_ORGANISATION_SLUG,
                "Demoziekenhuis",
                contact_phone="+31 20 000 0000",
                contact_email="radiologie@demo.invalid",
                contact_url="https://demo.invalid/",
            )
            created.append(f"organisation {org.slug}")
        if not Sender.objects.filter(username=DEMO_USERNAME).exists():
            password = generate_password()
            create_sender(org, DEMO_USERNAME, password, admin=True, email=DEMO_EMAIL)
            _write_credentials(f"{DEMO_USERNAME} / {password}")
            created.append(f"sender {DEMO_USERNAME}")
        elif Sender.objects.filter(username=DEMO_USERNAME, email="").update(email=DEMO_EMAIL):
            created.append(f"e-mail address of sender {DEMO_USERNAME}")  # a demo made before it had one
    if not Study.objects.filter(organisation=org, accession_number=DEMO_ACCESSIONS[0]).exists():
        today = dt.date.today()
        for ds in ct_series(
            DEMO_PATIENT,
            count=24,
            description="CT thorax",
            accession=DEMO_ACCESSIONS[0],
            study_date=today - dt.timedelta(days=2),
        ):
            store_instance(org, encode(ds), source="demo")
        created.append("study CT thorax (24 images)")
    if not Study.objects.filter(organisation=org, accession_number=DEMO_ACCESSIONS[1]).exists():
        ds = cr_image(
            DEMO_PATIENT,
            description="X thorax",
            accession=DEMO_ACCESSIONS[1],
            study_date=dt.date.today() - dt.timedelta(days=30),
        )
        store_instance(org, encode(ds), source="demo")
        created.append("study X thorax (1 image)")
    if not Study.objects.filter(organisation=org, accession_number=DEMO_ACCESSIONS[2]).exists():
        # A run of frames with a frame time: the viewer plays it as video (docs/architecture.md "Renders").
        run = xa_run(DEMO_PATIENT, frames=30, study_date=dt.date.today() - dt.timedelta(days=60))
        run.AccessionNumber = DEMO_ACCESSIONS[2]
        store_instance(org, encode(run), source="demo")
        created.append("study coronary angiography (a run of 30 frames)")
    if created:
        request_render()
    return created


def _write_credentials(text: str) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
