"""A ready share and a browser session logged in as its recipient (the login itself is tested in test_login)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from radshare.imaging import services as imaging
from radshare.recipients import session
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.shares.services import prepare
from radshare.studies.models import Study
from tests.shares.helpers import ANNA, make_share, make_study

BIRTH = "14-03-1968"  # ANNA's date of birth, as a recipient types it


def sms_codes(path: Path) -> list[str]:
    if not path.exists():
        return []
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    return [re.findall(r"\b\d{6}\b", text)[0] for text in texts]


def to_sms_step(client: Client, code: str) -> None:
    assert client.get("/", {"code": codes.format_code(code)})["Location"] == "/r/birth-date"
    response = client.post("/r/birth-date", {"accept_terms": "on", "birth_date": BIRTH})
    assert response["Location"] == "/r/sms-code", response.content.decode()


def log_in(client: Client, code: str, sms_file: Path) -> None:
    to_sms_step(client, code)
    response = client.post("/r/sms-code", {"code": sms_codes(sms_file)[-1]})
    assert response["Location"] == "/r/studies", response.content.decode()


@dataclass
class Recipient:
    client: Client
    share: Share
    code: str
    studies: list[Study]


def logged_in_client(share: Share) -> Client:
    """A client whose session is logged in to ``share`` (as after link + date of birth + SMS code)."""
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    engine = __import__(settings.SESSION_ENGINE, fromlist=["SessionStore"])
    store = engine.SessionStore()
    now = timezone.now().timestamp()
    store[session.KEY] = {"share": share.pk, "stage": session.Stage.IN, "started": now, "seen": now}
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    return client


def ready_share(organisation: Any, studies: list[Study], **kwargs: Any) -> tuple[Share, str]:
    """A prepared share; in English unless ``language`` says otherwise (its pages follow it, and tests read them in
    English)."""
    new = make_share(organisation, studies, **{"language": "en", **kwargs})
    imaging.render_pending_now(parallel=False)
    assert prepare(new.share.pk) == "ready"
    new.share.refresh_from_db()
    return new.share, new.code


@pytest.fixture
def recipient(organisation: Any) -> Recipient:
    """A patient's share of a CT (2 images) and a CR (1 image), rendered and ready, and a logged-in client."""
    studies = [make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")]
    share, code = ready_share(organisation, studies, delivery="url", email="")
    return Recipient(logged_in_client(share), share, code, studies)
