"""Keys that rotate (docs/security.md A28): what the old keys made keeps working while they are listed in
RADSHARE_OLD_SECRET_KEYS, `radshare keys rotate` moves it to the current key, and `radshare keys status` says
when the old keys can go. Everything is made through the real services and used as a person or a PACS uses it:
the recipient's link and login, the API with a bearer key, the portal with a staff session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import signing
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from radshare.audit import chain
from radshare.audit.models import AuditEvent
from radshare.core import crypto, keys
from radshare.core.crypto import Rotation
from radshare.core.keys import Purpose, derive
from radshare.organisations import services as org_services
from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender
from radshare.organisations.services import (
    add_pacs_node,
    authenticate_api_key,
    create_api_key,
    device_cookie_name,
    known_device,
    remember_device,
)
from radshare.shares import codes
from radshare.shares import rotation as share_rotation
from radshare.shares.models import Share
from radshare.shares.services import Actor, revoke
from radshare.studies.browse import StudySearch, search_studies
from radshare.studies.models import Patient
from radshare.studies.services import bsn_hash
from radshare.studies.synthetic import FakePatient
from tests.conftest import config_with
from tests.recipients.conftest import ready_share, sms_codes, to_sms_step
from tests.shares.helpers import ANNA, make_study

KEES = FakePatient("S4", "Visser^Kees", ANNA.birth_date, bsn="123456782")
PACS_PASSWORD = "the PACS's DICOMweb password"


def use_keys(settings: Any, current: str, *old: str) -> None:
    """What a restart with these RADSHARE_SECRET_KEY and RADSHARE_OLD_SECRET_KEYS does (settings.py included)."""
    settings.RADSHARE = config_with(secret_key=current, old_secret_keys=old)
    settings.SECRET_KEY = derive(current, Purpose.SESSIONS).hex()
    settings.SECRET_KEY_FALLBACKS = [derive(key, Purpose.SESSIONS).hex() for key in old]


def keys_command(action: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("keys", action, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


@dataclass
class Installation:
    keys: tuple[str, str, str]  # the secret keys the installation has, one after the other
    organisation: Organisation
    shares: dict[str, tuple[Share, str]]  # name: (share, its code)
    api_key: str  # used at every step
    idle_api_key: str  # never used after it was made
    node: PacsNode
    staff: dict[str, Client]  # name: a portal session made under the first key


@pytest.fixture
def installation(organisation: Organisation, sender: Sender, sms_file: Path, settings: Any) -> Installation:
    """Everything that holds a keyed value, made under the first key."""
    first = (secrets.token_urlsafe(48), secrets.token_urlsafe(48), secrets.token_urlsafe(48))
    use_keys(settings, first[0])
    organisation.require_two_factor = False  # the staff session here is about its signature only
    organisation.save()
    shares = {
        "anna_ct": ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email=""),
        "anna_cr": ready_share(
            organisation, [make_study(organisation, ANNA, kind="cr")], delivery="url", email=""
        ),
        "kees": ready_share(organisation, [make_study(organisation, KEES)], delivery="url", email=""),
        "revoked": ready_share(
            organisation, [make_study(organisation, KEES, kind="cr")], delivery="url", email=""
        ),
    }
    revoke(shares["revoked"][0], Actor(user=sender))
    node = add_pacs_node(
        organisation,
        "PACS",
        dicomweb_url="https://pacs.example.org/dicom-web",
        dicomweb_auth="basic",
        dicomweb_username="radshare",
        dicomweb_secret=PACS_PASSWORD,
    )
    assert chain.write_checkpoints().made  # the audit trail's checkpoints, signed with the first key
    staff = {}
    for name in ("used", "idle"):
        staff[name] = Client(HTTP_ACCEPT_LANGUAGE="en")
        staff[name].force_login(sender)
    return Installation(
        keys=first,
        organisation=organisation,
        shares=shares,
        api_key=create_api_key(organisation, "PACS")[1],
        idle_api_key=create_api_key(organisation, "old script")[1],
        node=node,
        staff=staff,
    )


def opens(code: str) -> bool:
    """Whether the link with ``code`` opens the share (the date of birth step), as a recipient's browser sees it."""
    response = Client(HTTP_ACCEPT_LANGUAGE="en").get("/", {"code": codes.format_code(code)})
    return response.status_code == 302 and response["Location"] == "/r/birth-date"


def api_works(key: str, share: Share) -> bool:
    response = Client().get(f"/api/v1/shares/{share.pk}", HTTP_AUTHORIZATION=f"Bearer {key}")
    return response.status_code == 200


def portal_works(client: Client) -> bool:
    return client.get("/portal/").status_code == 200


def found_by_bsn(organisation: Organisation, typed: str) -> set[str]:
    studies = search_studies(organisation, StudySearch(bsn=typed))
    return {study.patient.patient_id for study in studies}


def assert_everything_works(installation: Installation) -> None:
    org = installation.organisation
    for name, (share, code) in installation.shares.items():
        assert opens(code) is (name != "revoked"), name
        if name != "revoked":
            share.refresh_from_db()
            assert codes.decrypt_code(share.code_encrypted) == code, name  # "send again" can still send it
    assert api_works(installation.api_key, installation.shares["anna_ct"][0])
    installation.node.refresh_from_db()
    assert installation.node.get_dicomweb_secret() == PACS_PASSWORD
    assert found_by_bsn(org, "999999990") == {ANNA.patient_id}
    assert found_by_bsn(org, "1234.56.782") == {KEES.patient_id}
    assert found_by_bsn(org, "123456783") == set()
    assert portal_works(installation.staff["used"])


def assert_all_under_the_current_key(installation: Installation) -> None:
    for name, (share, code) in installation.shares.items():
        share.refresh_from_db()
        if name == "revoked":
            assert (share.code_hash, share.code_encrypted) == (None, "")  # an ended share gets no code back
            continue
        assert share.code_hash == codes.code_hash(code)
        assert crypto.is_current(codes.PURPOSE, share.code_encrypted)
    installation.node.refresh_from_db()
    assert crypto.is_current(PacsNode.SECRET_PURPOSE, installation.node.dicomweb_secret)
    patients = dict(Patient.objects.values_list("patient_id", "bsn_hash"))
    assert patients == {ANNA.patient_id: bsn_hash(ANNA.bsn), KEES.patient_id: bsn_hash(KEES.bsn)}
    assert chain.checkpoints_on_old_keys() == 0
    assert all(report.ok for report in chain.verify_all())


@pytest.mark.django_db
def test_two_rotations_keep_everything_working_until_the_old_keys_go(
    installation: Installation, settings: Any, sms_file: Path
) -> None:
    key1, key2, key3 = installation.keys
    assert_everything_works(installation)
    staff_idle = installation.staff["idle"]

    # key1 -> key2: everything still works before the rotation, and is moved by it.
    use_keys(settings, key2, key1)
    assert_everything_works(installation)
    code, out = keys_command("rotate")
    assert code == 0, out
    moved = "Moved to the current key: 3 share codes, 1 PACS DICOMweb password, 2 patients' BSN, "
    assert re.search(re.escape(moved) + r"\d+ audit checkpoints?\.", out), out
    assert ANNA.bsn not in out
    assert not any(c in out for _, c in installation.shares.values())
    assert "1 API key (moved when next used)" in out  # the idle one; the other moved when it was used
    assert_all_under_the_current_key(installation)
    assert_everything_works(installation)
    again, out = keys_command("rotate")  # idempotent
    assert again == 0
    assert "Nothing to move." in out

    # An SMS code sent under key2 is typed after the next rotation.
    anna_cr = Client(HTTP_ACCEPT_LANGUAGE="en")
    to_sms_step(anna_cr, installation.shares["anna_cr"][1])

    # key2 -> key3, both older keys listed.
    use_keys(settings, key3, key2, key1)
    assert_everything_works(installation)
    code, out = keys_command("rotate")
    assert code == 0, out
    assert moved in out
    assert_all_under_the_current_key(installation)
    response = anna_cr.post("/r/sms-code", {"code": sms_codes(sms_file)[-1]})
    assert response["Location"] == "/r/studies"
    status, out = keys_command("status")
    assert status == 1  # the idle API key is still under key1
    idle = ApiKey.objects.get(name="old script")
    assert f"{idle.prefix} (old script, hospital-a, last used never)" in out
    assert "share codes: 0 under an old key" in out

    # key1 dropped: whatever it alone made stops working.
    use_keys(settings, key3, key2)
    assert_everything_works(installation)
    # A session signed with key1 and not used since: logged out.
    assert staff_idle.get("/portal/")["Location"].startswith(reverse("organisations:login"))
    assert authenticate_api_key(installation.idle_api_key) is None
    status, out = keys_command("status")
    assert status == 0, out
    assert "RADSHARE_OLD_SECRET_KEYS can be emptied" in out
    assert "its key is no longer listed, it no longer works" in out

    # key2 dropped as well.
    use_keys(settings, key3)
    assert_everything_works(installation)
    anna_ct = Client(HTTP_ACCEPT_LANGUAGE="en")
    to_sms_step(anna_ct, installation.shares["anna_ct"][1])
    response = anna_ct.post("/r/sms-code", {"code": sms_codes(sms_file)[-1]})
    assert response["Location"] == "/r/studies"
    assert anna_ct.get("/r/studies").status_code == 200
    status, out = keys_command("status")
    assert status == 0, out
    assert "Everything is under the current key." in out

    events = AuditEvent.objects.filter(action="keys.rotate").order_by("pk")
    assert [(e.outcome, e.actor_type) for e in events] == [("success", "operator")] * 3
    assert events[0].detail["share_codes"] == {"moved": 3, "left": 0}
    assert events[0].detail["api_keys"] == {"waiting": 1, "lost": 0}
    assert events[2].detail["key"] == keys.key_id(derive(key3, Purpose.HASHING))
    shown = "".join(str(e.detail) for e in events)
    assert not any(c in shown for _, c in installation.shares.values())
    assert ANNA.bsn not in shown


@pytest.mark.django_db
def test_values_made_before_keys_had_a_purpose_keep_working_and_are_moved(
    organisation: Organisation, radshare_config: Callable[..., Any]
) -> None:
    """An installation upgraded to keys per purpose: its hashes and tokens were keyed with the secret key itself.
    They work with no old key listed, and `keys rotate` moves them (an API key moves when next used)."""
    secret = radshare_config().secret_key
    share, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    node = add_pacs_node(organisation, "PACS", dicomweb_url="https://pacs.example.org/", dicomweb_secret="pw")
    _, plaintext = create_api_key(organisation, "PACS")

    def legacy_hash(message: bytes) -> str:
        return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()

    def legacy_token(purpose: str, text: str) -> str:
        key = hashlib.sha256(f"radshare-{purpose}:".encode() + secret.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(key)).encrypt(text.encode()).decode()

    Share.objects.filter(pk=share.pk).update(
        code_hash=legacy_hash(b"radshare-share-code:" + code.encode()),
        code_encrypted=legacy_token(codes.PURPOSE, code),
    )
    PacsNode.objects.filter(pk=node.pk).update(dicomweb_secret=legacy_token(PacsNode.SECRET_PURPOSE, "pw"))
    Patient.objects.update(bsn_hash=legacy_hash(f"bsn:{ANNA.bsn}".encode()))
    ApiKey.objects.update(key_hash=legacy_hash(f"apikey:{plaintext}".encode()))

    assert opens(code)
    assert found_by_bsn(organisation, ANNA.bsn) == {ANNA.patient_id}
    node.refresh_from_db()
    assert node.get_dicomweb_secret() == "pw"
    status, out = keys_command("status")
    assert status == 1
    assert "share codes: 1 under an old key" in out
    assert "API keys: 1 under an old key" in out

    code_done, out = keys_command("rotate")
    assert code_done == 0
    assert "Moved to the current key: 1 share code, 1 PACS DICOMweb password, 1 patient's BSN." in out, out
    share.refresh_from_db()
    assert share.code_hash == codes.code_hash(code)
    assert opens(code)
    assert api_works(plaintext, share)  # and moved by this use
    assert crypto.tagged_hash_is_current(ApiKey.objects.get().key_hash)
    status, out = keys_command("status")
    assert status == 0, out
    assert "Everything is under the current key." in out


@pytest.mark.django_db
def test_a_known_device_stays_known_across_a_rotation(sender: Sender, settings: Any) -> None:
    """docs/security.md A26: the known-device cookie (signed with the sessions key, naming the account by a keyed
    hash) still counts while its key is listed; logging in again rewrites it under the current key."""
    key1, key2 = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    use_keys(settings, key1)
    factory = RequestFactory()
    made = HttpResponse()
    remember_device(factory.get("/"), made, sender)
    name = device_cookie_name()
    cookie = made.cookies[name].value

    def request_with(value: str) -> Any:
        request = factory.get("/")
        request.COOKIES[name] = value
        return request

    device = known_device(request_with(cookie), "alice")
    assert device
    use_keys(settings, key2, key1)
    assert known_device(request_with(cookie), "alice") == device
    assert known_device(request_with(cookie), "bob") == ""
    again = HttpResponse()
    remember_device(request_with(cookie), again, sender)
    renewed = again.cookies[name].value
    assert len(signing.loads(renewed, salt=org_services._DEVICE_SALT)["a"]) == 1  # the old key's tag is gone
    use_keys(settings, key2)
    assert known_device(request_with(cookie), "alice") == ""  # the old cookie: its key is gone
    assert known_device(request_with(renewed), "alice") == device


def test_each_purpose_has_a_key_of_its_own(radshare_config: Callable[..., Any]) -> None:
    derived = {keys.current(purpose) for purpose in Purpose}
    assert len(derived) == len(Purpose)
    radshare_config(old_secret_keys=("an earlier secret key of this installation, long enough",))
    assert [len(keys.candidates(purpose)) for purpose in Purpose] == [2] * len(Purpose)


@pytest.mark.django_db
def test_rotate_gives_no_code_back_to_a_share_that_ends_meanwhile(
    organisation: Organisation, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A share's code is moved by a conditional update: a share that ends between the read and the write keeps
    no code (docs/security.md A22)."""
    key1, key2 = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    use_keys(settings, key1)
    share, _ = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    use_keys(settings, key2, key1)
    real = codes.decrypt_code

    def ending_meanwhile(token: str) -> str | None:
        revoke(Share.objects.get(pk=share.pk), Actor())
        return real(token)

    monkeypatch.setattr(codes, "decrypt_code", ending_meanwhile)
    assert share_rotation.rotate_codes() == Rotation(moved=0, left=0)
    share.refresh_from_db()
    assert (share.status, share.code_hash, share.code_encrypted) == (Share.Status.REVOKED, None, "")
