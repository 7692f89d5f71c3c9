"""Share-scoped, read-only DICOMweb (docs/requirements.md B6.4; docs/security.md A6, A10, A13, A16, R5;
docs/architecture.md "Downloads"):
dicomweb-client against a live server with the recipient's session cookie, QIDO-RS matching, WADO-RS bytes equal
to the stored files, metadata without bulk data, frames, Accept negotiation, scoping to the share, the off switch,
401 without a session, the daily limit and the audit trail."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

import pytest
import requests
from asgiref.sync import async_to_sync
from dicomweb_client.api import DICOMwebClient
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from radshare.audit.models import AuditEvent
from radshare.core.storage import FileSystemStorage, get_storage, instance_key
from radshare.downloads import services
from radshare.downloads.models import DownloadDay
from radshare.recipients import session
from radshare.shares.models import Share
from radshare.studies.models import Instance, Series, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import cr_image, ct_series, encode
from radshare.viewer import dicomweb
from radshare.viewer.dicomweb import negotiation
from tests.recipients.conftest import Recipient, logged_in_client, ready_share
from tests.shares.helpers import ANNA, PIET, make_study

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning")

BASE = "/r/dicomweb"
DICOM = 'multipart/related; type="application/dicom"'
ANY_SYNTAX = f"{DICOM}; transfer-syntax=*"
MULTI_FRAME_SC = "1.2.840.10008.5.1.4.1.1.7.3"


@pytest.fixture
def on(radshare_config: Any) -> None:
    radshare_config(recipient_dicomweb=True)


@pytest.fixture
def other_shares(organisation: Any, other_organisation: Any) -> list[Study]:
    """Studies in two other shares: another patient of the same organisation, and another organisation."""
    piet = make_study(organisation, PIET)
    ready_share(organisation, [piet], delivery="url", email="")
    elsewhere = make_study(other_organisation, ANNA)
    ready_share(other_organisation, [elsewhere], delivery="url", email="")
    return [piet, elsewhere]


def body(response: Any) -> bytes:
    """The whole body of a (streamed, async) response, consumed as the ASGI handler does."""
    if not response.streaming:
        return bytes(response.content)

    async def collect() -> bytes:
        return b"".join([part async for part in response])

    return async_to_sync(collect)()


def multipart(content_type: str, data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related body (headers, content), each checked against its Content-Length."""
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    assert data.startswith(b"--" + boundary + b"\r\n")
    assert data.endswith(b"\r\n--" + boundary + b"--\r\n")
    parts = []
    for chunk in data[: -len(boundary) - 8].split(b"\r\n--" + boundary + b"\r\n"):
        chunk = chunk.removeprefix(b"--" + boundary + b"\r\n")
        head, _, content = chunk.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        assert int(headers["Content-Length"]) == len(content)
        parts.append((headers, content))
    return parts


def stored_bytes(instances: list[Instance]) -> list[bytes]:
    storage = get_storage()
    originals = []
    for instance in instances:
        with storage.open(instance_key(instance.storage_key)) as f:
            originals.append(f.read())
    return originals


def instances_of(study: Study) -> list[Instance]:
    return list(Instance.objects.filter(series__study=study).order_by("instance_number", "pk"))


def series_of(study: Study) -> Series:
    return Series.objects.get(study=study)


def study_url(study: Study) -> str:
    return f"{BASE}/studies/{study.study_instance_uid}"


def series_url(study: Study) -> str:
    return f"{study_url(study)}/series/{series_of(study).series_instance_uid}"


def instance_url(instance: Instance) -> str:
    series = instance.series
    return (
        f"{study_url(series.study)}/series/{series.series_instance_uid}/instances/{instance.sop_instance_uid}"
    )


def get(client: Client, url: str, accept: str = ANY_SYNTAX, **params: Any) -> tuple[Any, bytes]:
    response = client.get(url, params, headers={"accept": accept} if accept else {})
    return response, body(response)


def found(response: Any, data: bytes, tag: str = "0020000D") -> list[str]:
    assert response.status_code == 200, data
    assert response["Content-Type"].startswith("application/dicom+json")
    return [r[tag]["Value"][0] for r in json.loads(data)]


def counted() -> int:
    return sum(DownloadDay.objects.values_list("count", flat=True))


@pytest.fixture
def web_client(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[Share], DICOMwebClient]:
    """dicomweb-client with a requests session that carries the recipient's session cookie (as a viewer in the
    logged-in browser would), against the live server."""
    # The client keeps its connection alive, so the server's request thread (and its database connection) would
    # outlive the test: those threads close their connections after each request instead, or PostgreSQL could
    # not drop the test database.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)

    def make(share: Share) -> DICOMwebClient:
        http = requests.Session()
        cookie = logged_in_client(share).cookies[settings.SESSION_COOKIE_NAME].value
        http.cookies.set(settings.SESSION_COOKIE_NAME, cookie)
        client = DICOMwebClient(url=f"{live_server.url}{BASE}", session=http)
        client.set_http_retry_params(retry=False)  # it would retry a 429 with back-off
        return client

    return make


def status_of(call: Any) -> int:
    with pytest.raises(requests.HTTPError) as caught:
        call()
    response = caught.value.response
    assert response is not None
    return int(response.status_code)


# --- with dicomweb-client against a live server ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_reads_exactly_the_share(
    web_client: Callable[[Share], DICOMwebClient], recipient: Recipient, other_shares: list[Study], on: None
) -> None:
    ct, cr = recipient.studies
    client = web_client(recipient.share)

    studies = client.search_for_studies()
    assert sorted(s["0020000D"]["Value"][0] for s in studies) == sorted(
        s.study_instance_uid for s in (ct, cr)
    )
    assert {s["00100020"]["Value"][0] for s in studies} == {"S1"}
    assert [
        s["0020000D"]["Value"][0]
        for s in client.search_for_studies(search_filters={"ModalitiesInStudy": "CR"})
    ] == [cr.study_instance_uid]
    series = client.search_for_series(study_instance_uid=ct.study_instance_uid)
    assert [s["0020000E"]["Value"][0] for s in series] == [series_of(ct).series_instance_uid]
    assert series[0]["00080060"]["Value"] == ["CT"]
    assert len(client.search_for_series()) == 2
    instances = client.search_for_instances(
        study_instance_uid=ct.study_instance_uid, series_instance_uid=series_of(ct).series_instance_uid
    )
    assert [i["00080018"]["Value"][0] for i in instances] == [i.sop_instance_uid for i in instances_of(ct)]
    assert len(client.search_for_instances()) == 3

    datasets = client.retrieve_study(ct.study_instance_uid)
    originals = [dcmread(BytesIO(data)) for data in stored_bytes(instances_of(ct))]
    assert [d.SOPInstanceUID for d in datasets] == [o.SOPInstanceUID for o in originals]
    assert [d.PixelData for d in datasets] == [o.PixelData for o in originals]

    # The raw multipart body: each part is the stored file, byte for byte.
    http = client._session
    url = f"{client.base_url}{study_url(ct).removeprefix(BASE)}"
    response = http.get(url, headers={"Accept": ANY_SYNTAX})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert int(response.headers["Content-Length"]) == len(response.content)
    parts = multipart(response.headers["Content-Type"], response.content)
    assert [content for _, content in parts] == stored_bytes(instances_of(ct))
    assert {h["Content-Type"] for h, _ in parts} == {"application/dicom; transfer-syntax=1.2.840.10008.1.2.1"}

    first = instances_of(ct)[0]
    metadata = client.retrieve_instance_metadata(
        ct.study_instance_uid, series_of(ct).series_instance_uid, first.sop_instance_uid
    )
    assert metadata["00100020"]["Value"] == ["S1"]
    assert metadata["00080018"]["Value"] == [first.sop_instance_uid]
    assert "7FE00010" not in metadata
    assert len(client.retrieve_series_metadata(ct.study_instance_uid, series_of(ct).series_instance_uid)) == 2
    assert len(client.retrieve_study_metadata(cr.study_instance_uid)) == 1

    instance = client.retrieve_instance(
        cr.study_instance_uid, series_of(cr).series_instance_uid, instances_of(cr)[0].sop_instance_uid
    )
    assert instance.SOPInstanceUID == instances_of(cr)[0].sop_instance_uid
    frames = client.retrieve_instance_frames(
        ct.study_instance_uid, series_of(ct).series_instance_uid, first.sop_instance_uid, frame_numbers=[1]
    )
    assert frames == [originals[0].PixelData]

    # Two whole-study retrieves of the CT and the CR's first retrieve of the day; metadata and QIDO are free.
    assert counted() == 3
    retrieves = AuditEvent.objects.filter(action=dicomweb.RETRIEVE)
    assert retrieves.count() == 3
    assert {tuple(e.study_uids) for e in retrieves} == {(ct.study_instance_uid,), (cr.study_instance_uid,)}
    assert AuditEvent.objects.filter(action=dicomweb.QUERY).count() == 6


@pytest.mark.django_db(transaction=True)
def test_another_shares_or_organisations_uids_are_not_found(
    web_client: Callable[[Share], DICOMwebClient], recipient: Recipient, other_shares: list[Study], on: None
) -> None:
    client = web_client(recipient.share)
    ct = recipient.studies[0]
    for study in other_shares:
        series = series_of(study).series_instance_uid
        sop = instances_of(study)[0].sop_instance_uid
        uid = study.study_instance_uid
        assert status_of(lambda uid=uid: client.search_for_series(study_instance_uid=uid)) == 404
        assert status_of(lambda uid=uid, s=series: client.search_for_instances(uid, s)) == 404
        assert status_of(lambda uid=uid: client.retrieve_study(uid)) == 404
        assert status_of(lambda uid=uid, s=series: client.retrieve_series(uid, s)) == 404
        assert status_of(lambda uid=uid, s=series, i=sop: client.retrieve_instance(uid, s, i)) == 404
        assert status_of(lambda uid=uid: client.retrieve_study_metadata(uid)) == 404
        assert status_of(lambda uid=uid, s=series, i=sop: client.retrieve_instance_metadata(uid, s, i)) == 404
        # The share's own study with the other share's series or instance in the path: not found either.
        mine, own_series = ct.study_instance_uid, series_of(ct).series_instance_uid
        assert status_of(lambda s=series, m=mine: client.retrieve_series(m, s)) == 404
        assert status_of(lambda i=sop, m=mine, o=own_series: client.retrieve_instance(m, o, i)) == 404
        assert client.search_for_studies(search_filters={"StudyInstanceUID": uid}) == []
        assert client.search_for_instances(search_filters={"SOPInstanceUID": sop}) == []
    unknown = generate_uid()
    assert status_of(lambda: client.retrieve_study(unknown)) == 404
    assert status_of(lambda: client.retrieve_study("1.2.x")) == 404
    assert counted() == 0
    denied = AuditEvent.objects.filter(outcome="denied", actor_label=f"share {recipient.share.pk}")
    assert denied.count() == 2 * 9 + 2
    assert all(e.detail["reason"] == "not in the share" for e in denied)
    assert denied.filter(detail__requested=["(malformed)"]).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_daily_limit_counts_whole_study_retrieves_and_answers_429(
    web_client: Callable[[Share], DICOMwebClient], recipient: Recipient, on: None, radshare_config: Any
) -> None:
    radshare_config(recipient_dicomweb=True, downloads_per_day=2)
    client = web_client(recipient.share)
    uid = recipient.studies[0].study_instance_uid
    assert len(client.retrieve_study(uid)) == 2
    assert len(client.retrieve_study(uid)) == 2
    with pytest.raises(requests.HTTPError) as caught:
        client.retrieve_study(uid)
    response = caught.value.response
    assert response is not None
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 24 * 3600
    assert response.json() == {"error": "daily download limit reached"}
    assert DownloadDay.objects.get(share=recipient.share).count == 2
    assert len(client.search_for_studies()) == 2  # QIDO does not count
    assert len(client.retrieve_study_metadata(uid)) == 2  # nor metadata


@pytest.mark.django_db(transaction=True)
def test_concurrent_retrieves_count_exactly(
    live_server: Any, recipient: Recipient, radshare_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    radshare_config(recipient_dicomweb=True, downloads_per_day=5)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)  # see web_client
    cookie = recipient.client.cookies[settings.SESSION_COOKIE_NAME].value
    host, port = live_server.thread.host, live_server.thread.port
    ct, cr = recipient.studies

    def fetch_together(urls: list[str]) -> list[int]:
        statuses: list[int] = []
        barrier = threading.Barrier(len(urls))

        def fetch(url: str) -> None:
            connection_ = http.client.HTTPConnection(host, port, timeout=60)
            barrier.wait()
            try:
                headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}", "Accept": ANY_SYNTAX}
                connection_.request("GET", url, headers=headers)
                response = connection_.getresponse()
                response.read()
                statuses.append(response.status)
            finally:
                connection_.close()

        threads = [threading.Thread(target=fetch, args=(url,)) for url in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        return sorted(statuses)

    count_download = services.count_download

    def slow_count(share: Share) -> bool:
        time.sleep(0.1)  # widen the window between "counted today?" and the count
        return count_download(share)

    monkeypatch.setattr(services, "count_download", slow_count)
    DownloadDay.objects.create(share=recipient.share, day=services.today())  # no insert to queue behind
    # Ten first retrieves of the CT's instances at once: the study counts once, and is recorded once.
    assert fetch_together([instance_url(i) for i in instances_of(ct)] * 5) == [200] * 10
    assert counted() == 1
    assert AuditEvent.objects.filter(action=dicomweb.RETRIEVE, outcome="success").count() == 1
    # Twelve whole-study retrieves at once with four downloads left: exactly four get the study (R5).
    assert fetch_together([study_url(cr)] * 12) == [200] * 4 + [429] * 8
    assert DownloadDay.objects.get(share=recipient.share).count == 5


# --- the switch, the session, the methods -------------------------------------------------------------------


@pytest.mark.django_db
def test_off_by_default_everything_is_not_found(recipient: Recipient) -> None:
    assert settings.RADSHARE.recipient_dicomweb is False
    for url in (f"{BASE}/studies", study_url(recipient.studies[0]), f"{BASE}/", BASE, f"{BASE}/nonsense/x"):
        for client in (recipient.client, Client()):
            response, _ = get(client, url)
            assert response.status_code == 404, url
    assert recipient.client.post(f"{BASE}/studies").status_code == 404
    assert not AuditEvent.objects.filter(action__startswith="recipient.dicomweb").exists()


@pytest.mark.django_db
def test_without_a_recipient_session_401_not_a_redirect(recipient: Recipient, on: None) -> None:
    client = Client()
    at_sms_step = Client()
    engine = __import__(settings.SESSION_ENGINE, fromlist=["SessionStore"])
    store = engine.SessionStore()
    now = timezone.now().timestamp()
    store[session.KEY] = {
        "share": recipient.share.pk,
        "stage": session.Stage.SMS_CODE,
        "started": now,
        "seen": now,
    }
    store.save()
    at_sms_step.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    ct = recipient.studies[0]
    urls = [
        f"{BASE}/studies",
        study_url(ct),
        f"{study_url(ct)}/metadata",
        instance_url(instances_of(ct)[0]),
        f"{BASE}/x",
    ]
    for anonymous in (client, at_sms_step):
        for url in urls:
            response, data = get(anonymous, url)
            assert response.status_code == 401, url
            assert "Location" not in response
            assert json.loads(data) == {"error": "not logged in"}
            assert response["Cache-Control"] == "no-store"
    assert counted() == 0


@pytest.mark.django_db
def test_a_revoked_or_expired_share_ends_access(recipient: Recipient, on: None) -> None:
    # Ended during the session: 410 and a line of JSON, never a redirect to a page (no loop for a client).
    url = f"{BASE}/studies"
    assert get(recipient.client, url, accept="")[0].status_code == 200
    Share.objects.filter(pk=recipient.share.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    for _ in range(2):  # and again on the next request
        response, data = get(recipient.client, url, accept="")
        assert (response.status_code, json.loads(data)) == (410, {"error": "this link no longer works"})
        assert "Location" not in response
    client = logged_in_client(recipient.share)
    Share.objects.filter(pk=recipient.share.pk).update(
        expires_at=timezone.now() + dt.timedelta(days=1), status=Share.Status.REVOKED
    )
    assert get(client, study_url(recipient.studies[0]))[0].status_code == 410


@pytest.mark.django_db
def test_read_only_and_same_origin(recipient: Recipient, on: None) -> None:
    response = recipient.client.post(f"{BASE}/studies", b"", content_type="application/dicom")
    assert response.status_code == 405
    assert recipient.client.delete(study_url(recipient.studies[0])).status_code == 405
    for url in (
        f"{BASE}/studies",
        study_url(recipient.studies[0]),
        f"{study_url(recipient.studies[0])}/metadata",
    ):
        response = recipient.client.get(url, headers={"origin": "https://viewer.example"})
        body(response)
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


# --- QIDO-RS --------------------------------------------------------------------------------------------------


@pytest.fixture
def dated(organisation: Any, on: None) -> tuple[Client, Study, Study]:
    """A share of a CT of 10 January 2024 (ACC1) and a CR of 5 March 2024 (ACC2)."""
    uids = []
    for ds in [
        *ct_series(ANNA, count=2, size=16, study_date=dt.date(2024, 1, 10), accession="ACC1"),
        cr_image(ANNA, study_date=dt.date(2024, 3, 5), accession="ACC2"),
    ]:
        uids.append(store_instance(organisation, encode(ds), source="upload").study_instance_uid)
    ct = Study.objects.get(study_instance_uid=uids[0])
    cr = Study.objects.get(study_instance_uid=uids[-1])
    share, _ = ready_share(organisation, [ct, cr], delivery="url", email="")
    return logged_in_client(share), ct, cr


@pytest.mark.django_db
def test_qido_matches_the_usual_keys(dated: tuple[Client, Study, Study], other_shares: list[Study]) -> None:
    client, ct, cr = dated
    a, b = ct.study_instance_uid, cr.study_instance_uid

    def studies(**params: Any) -> list[str]:
        return found(*get(client, f"{BASE}/studies", accept="application/dicom+json", **params))

    assert studies() == [b, a]  # newest first, as the study list
    assert studies(StudyDate="20240110") == [a]
    assert studies(StudyDate="20240101-20240131") == [a]
    assert studies(StudyDate="-20240201") == [a]
    assert studies(StudyDate="20240201-") == [b]
    assert studies(ModalitiesInStudy="CR") == [b]
    assert studies(ModalitiesInStudy="CT\\MR") == [a]
    assert studies(AccessionNumber="ACC1") == [a]
    assert studies(AccessionNumber="ACC*") == [b, a]
    assert studies(AccessionNumber="acc1") == []
    assert studies(PatientID="S1") == [b, a]
    assert studies(PatientID="S2") == []
    assert studies(PatientID="S?") == [b, a]
    assert studies(PatientName="jansen*") == [b, a]
    assert studies(StudyInstanceUID=f"{a},{b}") == [b, a]
    assert studies(StudyInstanceUID=f"{a}\\{b}") == [b, a]
    assert studies(**{"0020000D": a}) == [a]
    assert studies(StudyInstanceUID=other_shares[0].study_instance_uid) == []
    assert studies(StudyDescription="CT*") == [a]
    assert studies(PatientID="*") == [b, a]

    response, data = get(client, f"{BASE}/studies", accept="application/dicom+json", limit=1)
    assert found(response, data) == [b]
    assert "additional results" in response["Warning"]
    response, data = get(client, f"{BASE}/studies", accept="application/dicom+json", limit=1, offset=1)
    assert found(response, data) == [a]
    assert "Warning" not in response
    response, data = get(
        client, f"{BASE}/studies", accept="application/dicom+json", StudyID="7", fuzzymatching="true"
    )
    assert found(response, data) == [b, a]  # a key the index cannot match on is ignored, and said so
    assert "StudyID" in response["Warning"]
    assert "fuzzymatching" in response["Warning"]
    record = json.loads(data)[1]
    assert record["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Jansen^Anna"}]}
    assert record["00080061"]["Value"] == ["CT"]
    assert record["00201208"]["Value"] == [2]
    assert record["00081190"]["Value"] == [f"http://testserver{study_url(ct)}"]

    for bad in ({"StudyDate": "2024"}, {"StudyDate": "20240101-2024"}, {"limit": "-1"}, {"Nonsense": "1"}):
        response, data = get(client, f"{BASE}/studies", accept="application/dicom+json", **bad)
        assert response.status_code == 400, bad
        assert "error" in json.loads(data)
    response, _ = get(client, f"{BASE}/studies", accept="image/jpeg")
    assert response.status_code == 406


@pytest.mark.django_db
def test_qido_series_and_instances(dated: tuple[Client, Study, Study]) -> None:
    client, ct, cr = dated
    ct_series_uid = series_of(ct).series_instance_uid

    def search(url: str, tag: str, **params: Any) -> list[str]:
        return found(*get(client, url, accept="", **params), tag=tag)

    assert search(f"{BASE}/series", "0020000E") == [series_of(cr).series_instance_uid, ct_series_uid]
    assert search(f"{BASE}/series", "0020000E", Modality="CT") == [ct_series_uid]
    assert search(f"{BASE}/series", "0020000E", SeriesNumber="2") == [ct_series_uid]
    assert search(f"{study_url(ct)}/series", "0020000E") == [ct_series_uid]
    assert search(f"{study_url(cr)}/series", "0020000E", Modality="CT") == []
    ct_sops = [i.sop_instance_uid for i in instances_of(ct)]
    assert search(f"{series_url(ct)}/instances", "00080018") == ct_sops
    assert search(f"{study_url(ct)}/instances", "00080018", InstanceNumber="2") == ct_sops[1:]
    assert search(f"{BASE}/instances", "00080018", SOPInstanceUID=ct_sops[0]) == ct_sops[:1]
    assert len(search(f"{BASE}/instances", "00080018")) == 3
    response, data = get(client, f"{BASE}/instances", accept="", SOPInstanceUID=ct_sops[0])
    record = json.loads(data)[0]
    assert record["0020000D"]["Value"] == [ct.study_instance_uid]
    assert record["0020000E"]["Value"] == [ct_series_uid]
    assert record["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert record["00280010"]["Value"] == [16]
    # A series of another study of the same share in the path: not found.
    response, _ = get(client, f"{study_url(cr)}/series/{ct_series_uid}/instances", accept="")
    assert response.status_code == 404


@pytest.mark.django_db
def test_each_query_is_one_audit_entry_with_keys_not_values(dated: tuple[Client, Study, Study]) -> None:
    client, ct, _ = dated
    get(client, f"{BASE}/studies", accept="", PatientName="Jansen*", limit=5)
    get(client, f"{BASE}/instances", accept="")
    get(client, f"{study_url(ct)}/series", accept="")
    entries = list(AuditEvent.objects.filter(action=dicomweb.QUERY).order_by("pk"))
    assert [e.detail["level"] for e in entries] == ["study", "instance", "series"]
    assert entries[0].detail["keys"] == ["PatientName"]
    assert "Jansen" not in json.dumps([e.detail for e in entries])
    assert entries[2].study_uids == [ct.study_instance_uid]
    assert all(e.actor_label == f"share {e.detail['share']}" and e.outcome == "success" for e in entries)
    assert counted() == 0


# --- WADO-RS ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retrieve_streams_the_stored_files_at_each_level(recipient: Recipient, on: None) -> None:
    ct, cr = recipient.studies
    response = recipient.client.get(study_url(ct), headers={"accept": DICOM})
    assert response.is_async  # an async generator: ASGI streams it (docs/architecture.md "Gotchas")
    data = body(response)
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Type"].startswith(f"{DICOM}; boundary=")
    assert [c for _, c in multipart(response["Content-Type"], data)] == stored_bytes(instances_of(ct))
    response, data = get(recipient.client, series_url(ct))
    assert [c for _, c in multipart(response["Content-Type"], data)] == stored_bytes(instances_of(ct))
    second = instances_of(ct)[1]
    response, data = get(recipient.client, instance_url(second))
    assert [c for _, c in multipart(response["Content-Type"], data)] == stored_bytes([second])
    response, data = get(recipient.client, study_url(cr))
    assert [c for _, c in multipart(response["Content-Type"], data)] == stored_bytes(instances_of(cr))


def test_multipart_reader_packs_small_files_and_says_its_length(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(negotiation, "CHUNK", 10)
    storage = FileSystemStorage(tmp_path)
    files = []
    for n, content in enumerate([b"a" * 25, b"", b"bc", b"d" * 7]):
        storage.put(f"instances/{n}.dcm", content)
        files.append(negotiation.Part(f"instances/{n}.dcm", len(content), "1.2.840.10008.1.2.1"))
    reader = negotiation.MultipartReader(storage, files, "b0undary")
    pieces = list(iter(reader.read, b""))
    data = b"".join(pieces)
    assert len(data) == reader.length
    assert [c for _, c in multipart('multipart/related; boundary="b0undary"', data)] == [
        b"a" * 25,
        b"",
        b"bc",
        b"d" * 7,
    ]
    assert all(len(p) >= 10 for p in pieces[:-1])


@pytest.mark.django_db
def test_accept_negotiation(recipient: Recipient, on: None) -> None:
    ct = recipient.studies[0]
    for accept in (
        ANY_SYNTAX,
        DICOM,
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1',
        "multipart/related; type=application/dicom",
        "*/*",
        "",
        f"image/jpeg, {DICOM}",
    ):
        response, _ = get(recipient.client, study_url(ct), accept=accept)
        assert response.status_code == 200, accept
    for accept in (
        "application/dicom+json",
        "image/jpeg",
        "application/dicom",
        f"{DICOM}; transfer-syntax=1.2.840.10008.1.2.4.50",
        'multipart/related; type="application/octet-stream"',
        f"{DICOM}; q=0",
    ):
        response, data = get(recipient.client, study_url(ct), accept=accept)
        assert response.status_code == 406, accept
        assert "multipart/related" in json.loads(data)["error"]
    assert DownloadDay.objects.get().count == 7  # only the answered retrieves counted
    response, _ = get(recipient.client, f"{study_url(ct)}/metadata", accept=DICOM)
    assert response.status_code == 406
    for accept in ("application/dicom+json", "application/json", "*/*", ""):
        response, _ = get(recipient.client, f"{study_url(ct)}/metadata", accept=accept)
        assert response.status_code == 200, accept


@pytest.mark.django_db
def test_metadata_from_the_headers_without_bulk_data(recipient: Recipient, on: None) -> None:
    ct = recipient.studies[0]
    ds = ct_series(ANNA, count=1, size=16, study_uid=ct.study_instance_uid)[0]
    ds.SeriesInstanceUID = series_of(ct).series_instance_uid
    ds.add_new(0x00291010, "OB", b"\x01" * 5000)  # a large private binary value
    ds.add_new(0x00291011, "OB", b"\x02" * 16)
    store_instance(ct.organisation, encode(ds), source="upload")
    response, data = get(recipient.client, f"{study_url(ct)}/metadata", accept="application/dicom+json")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    records = json.loads(data)
    assert len(records) == 3
    assert all("7FE00010" not in r for r in records)
    mine = next(r for r in records if r["00080018"]["Value"] == [ds.SOPInstanceUID])
    assert "00291010" not in mine
    assert mine["00291011"]["InlineBinary"]
    assert mine["00100010"]["Value"] == [{"Alphabetic": "Jansen^Anna"}]
    assert mine["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert mine["00280030"]["Value"] == [0.8, 0.8]
    get(recipient.client, f"{series_url(ct)}/metadata", accept="")
    get(recipient.client, f"{instance_url(instances_of(ct)[0])}/metadata", accept="")
    entries = AuditEvent.objects.filter(action=dicomweb.METADATA)
    assert sorted(e.detail["level"] for e in entries) == ["series", "study"]  # never one per instance
    assert counted() == 0


@pytest.mark.django_db
def test_frames_as_stored(recipient: Recipient, on: None) -> None:
    ct = recipient.studies[0]
    ds = ct_series(ANNA, count=1, size=8, study_uid=ct.study_instance_uid)[0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MULTI_FRAME_SC
    ds.SeriesInstanceUID = generate_uid()
    ds.NumberOfFrames = 3
    frames = [bytes([n]) * 128 for n in (1, 2, 3)]
    ds.PixelData = b"".join(frames)
    store_instance(ct.organisation, encode(ds), source="upload")
    url = f"{study_url(ct)}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames"
    octet = 'multipart/related; type="application/octet-stream"'
    response, data = get(recipient.client, f"{url}/3,1", accept=f"{octet}; transfer-syntax=*")
    assert response.status_code == 200
    parts = multipart(response["Content-Type"], data)
    assert [c for _, c in parts] == [frames[2], frames[0]]
    assert parts[0][0]["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    for accept in (octet, "", f"{octet}; transfer-syntax=1.2.840.10008.1.2.1"):
        assert get(recipient.client, f"{url}/2", accept=accept)[0].status_code == 200
    assert get(recipient.client, f"{url}/4", accept=octet)[0].status_code == 404
    assert get(recipient.client, f"{url}/0", accept=octet)[0].status_code == 404
    assert get(recipient.client, f"{url}/x", accept=octet)[0].status_code == 404
    assert get(recipient.client, f"{url}/1", accept="image/jpeg")[0].status_code == 406

    # Compressed pixel data goes as stored when any transfer syntax is taken, and is refused otherwise.
    jpeg = ct_series(ANNA, count=1, size=8, study_uid=ct.study_instance_uid)[0]
    jpeg.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    jpeg.SOPClassUID = jpeg.file_meta.MediaStorageSOPClassUID = MULTI_FRAME_SC
    jpeg.SeriesInstanceUID = generate_uid()
    jpeg.NumberOfFrames = 2
    jpeg.BitsAllocated = jpeg.BitsStored = 8
    jpeg.HighBit = 7
    jpeg.PixelRepresentation = 0
    fragments = [b"\xff\xd8first!\xff\xd9", b"\xff\xd8second\xff\xd9"]  # even lengths: no padding
    jpeg.PixelData = encapsulate(fragments, has_bot=True)
    jpeg["PixelData"].VR = "OB"
    store_instance(ct.organisation, encode(jpeg), source="upload")
    url = f"{study_url(ct)}/series/{jpeg.SeriesInstanceUID}/instances/{jpeg.SOPInstanceUID}/frames"
    response, data = get(recipient.client, f"{url}/2", accept=f"{octet}; transfer-syntax=*")
    assert response.status_code == 200
    assert [c for _, c in multipart(response["Content-Type"], data)] == [fragments[1]]
    assert get(recipient.client, f"{url}/1", accept=octet)[0].status_code == 406
    assert counted() == 1  # all of it one study, one day


# --- counting and the audit trail ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_partial_retrieves_count_once_per_study_and_day(
    recipient: Recipient, on: None, radshare_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    radshare_config(recipient_dicomweb=True, downloads_per_day=3)
    ct, cr = recipient.studies
    client = recipient.client
    assert get(client, series_url(ct))[0].status_code == 200  # CT: first of the day, counts (1)
    for instance in instances_of(ct):
        assert get(client, instance_url(instance))[0].status_code == 200  # same study, same day: free
    assert get(client, f"{series_url(ct)}/metadata", accept="")[0].status_code == 200
    assert counted() == 1
    assert get(client, instance_url(instances_of(cr)[0]))[0].status_code == 200  # CR counts (2)
    assert get(client, study_url(ct))[0].status_code == 200  # a whole study always counts (3)
    assert counted() == 3
    assert get(client, series_url(ct))[0].status_code == 200  # counted today: still free at the limit
    assert get(client, instance_url(instances_of(cr)[0]))[0].status_code == 200
    response, _ = get(client, study_url(cr))
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert counted() == 3
    recipient.share.refresh_from_db()
    assert recipient.share.status == Share.Status.DOWNLOADED

    entries = AuditEvent.objects.filter(action=dicomweb.RETRIEVE)
    assert entries.filter(outcome="success").count() == 3
    assert sorted(e.detail["level"] for e in entries.filter(outcome="success")) == [
        "instance",
        "series",
        "study",
    ]
    assert entries.filter(outcome="denied", detail__reason="daily limit").count() == 1
    assert recipient.code.replace("-", "") not in str([e.detail for e in AuditEvent.objects.all()])

    tomorrow = services.today() + dt.timedelta(days=1)
    monkeypatch.setattr(services, "today", lambda: tomorrow)
    assert get(client, instance_url(instances_of(ct)[0]))[0].status_code == 200
    assert DownloadDay.objects.get(day=tomorrow).count == 1


@pytest.mark.django_db
def test_over_the_limit_a_new_study_is_refused_and_recorded_once(
    recipient: Recipient, radshare_config: Any
) -> None:
    radshare_config(recipient_dicomweb=True, downloads_per_day=1)
    ct, cr = recipient.studies
    assert get(recipient.client, instance_url(instances_of(ct)[0]))[0].status_code == 200
    for _ in range(3):
        response, data = get(recipient.client, instance_url(instances_of(cr)[0]))
        assert response.status_code == 429
        assert json.loads(data) == {"error": "daily download limit reached"}
    assert (
        get(recipient.client, study_url(ct))[0].status_code == 429
    )  # a whole study counts, even a counted one
    assert get(recipient.client, series_url(ct))[0].status_code == 200
    denied = AuditEvent.objects.filter(action=dicomweb.RETRIEVE, outcome="denied")
    assert denied.filter(study_uids=[cr.study_instance_uid]).count() == 1
    assert denied.filter(study_uids=[ct.study_instance_uid]).count() == 1
    assert counted() == 1


@pytest.mark.django_db
def test_no_retrieve_when_the_audit_entry_cannot_be_written(
    recipient: Recipient, on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr("radshare.recipients.session.record", broken)
    client = logged_in_client(recipient.share)
    client.raise_request_exception = False
    response = client.get(study_url(recipient.studies[0]), headers={"accept": DICOM})
    assert response.status_code == 500
    assert not response.streaming
    assert counted() == 0  # the count went back with the failed entry
    recipient.share.refresh_from_db()
    assert recipient.share.status != Share.Status.DOWNLOADED


@pytest.mark.django_db
def test_a_missing_stored_file_is_a_clear_error_and_not_counted(recipient: Recipient, on: None) -> None:
    ct = recipient.studies[0]
    get_storage().delete(instance_key(instances_of(ct)[0].storage_key))
    response, data = get(recipient.client, study_url(ct))
    assert response.status_code == 500
    assert json.loads(data) == {"error": "a stored file could not be read"}
    assert counted() == 0
    assert AuditEvent.objects.filter(action=dicomweb.RETRIEVE, outcome="failure").count() == 1
    response, data = get(recipient.client, f"{study_url(ct)}/metadata", accept="")
    assert response.status_code == 500
    assert b"Traceback" not in data


# --- small parts ----------------------------------------------------------------------------------------------------


def test_media_ranges_and_multipart_acceptance() -> None:
    ranges = dicomweb.media_ranges(
        'multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5, */*;q=0'
    )
    assert ranges == [
        dicomweb.MediaRange(
            "multipart/related", {"type": "application/dicom", "transfer-syntax": "*", "q": "0.5"}
        )
    ]
    stored = {"1.2.840.10008.1.2.4.50"}
    accepts = dicomweb.accepts_multipart
    assert accepts(DICOM, "application/dicom", stored, native=False)
    assert not accepts(
        f"{DICOM}; transfer-syntax=1.2.840.10008.1.2.1", "application/dicom", stored, native=False
    )
    assert accepts(
        f"{DICOM}; transfer-syntax=1.2.840.10008.1.2.4.50", "application/dicom", stored, native=False
    )
    octet = 'multipart/related; type="application/octet-stream"'
    assert not accepts(octet, "application/octet-stream", stored, native=False)
    assert accepts(f"{octet}; transfer-syntax=*", "application/octet-stream", stored, native=False)
    assert not accepts("", "application/octet-stream", stored, native=False)
    assert accepts("", "application/octet-stream", {"1.2.840.10008.1.2"}, native=True)


def test_wildcards_match_without_backtracking() -> None:
    match = dicomweb.wildcard_match
    assert match("Jans*", "Jansen^Anna")
    assert match("*^An?a", "Jansen^Anna")
    assert match("*", "")
    assert not match("Jans?", "Jansen")
    assert not match("?", "")
    started = time.perf_counter()
    assert not match("*a" * 40 + "b", "a" * 64)  # a regular expression would backtrack for ages
    assert time.perf_counter() - started < 0.1


@pytest.mark.django_db
def test_a_range_header_buys_no_free_study_retrieve(
    recipient: Recipient, on: None, radshare_config: Any
) -> None:
    """docs/security.md A24: DICOMweb serves no ranges; a whole-study retrieve with ``Range`` is whole and counts."""
    radshare_config(recipient_dicomweb=True, downloads_per_day=3)
    ct = recipient.studies[0]
    whole = body(recipient.client.get(study_url(ct), headers={"accept": DICOM}))
    for expected in (2, 3):
        response = recipient.client.get(study_url(ct), headers={"accept": DICOM, "range": "bytes=1-"})
        assert response.status_code == 200
        assert "Content-Range" not in response
        assert len(body(response)) == len(whole)
        assert DownloadDay.objects.get(share=recipient.share).count == expected
    response = recipient.client.get(study_url(ct), headers={"accept": DICOM, "range": "bytes=1-"})
    assert response.status_code == 429
    assert DownloadDay.objects.get(share=recipient.share).count == 3
