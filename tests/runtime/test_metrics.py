"""``/metrics`` for Prometheus (docs/operations.md "Metrics"): only for RADSHARE_METRICS_ALLOW, and its counters move
with what radshare does."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from radshare.delivery import outbox
from radshare.imaging.models import InstanceRender
from radshare.organisations.services import add_pacs_node
from radshare.shares.services import mark_opened
from radshare.studies import journal
from radshare.studies.indexer import Indexer
from radshare.studies.synthetic import ct_series, encode
from tests.downloads.test_downloads import get
from tests.recipients.conftest import logged_in_client, ready_share
from tests.shares.helpers import ANNA, make_study

SCRAPER = "10.1.2.3"


def scrape(client: Client | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = (client or Client()).get("/metrics", REMOTE_ADDR=SCRAPER)
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db
@pytest.mark.parametrize("allow", [(), ("10.9.9.9/32",), ("192.168.0.0/16",)])
def test_anyone_not_allowed_gets_no_metrics(radshare_config: Any, allow: tuple[str, ...]) -> None:
    radshare_config(metrics_allow=allow)
    assert Client().get("/metrics", REMOTE_ADDR=SCRAPER).status_code == 404


@pytest.mark.django_db
def test_the_counters_move_with_the_flow(radshare_config: Any, organisation: Any, sms_file: Path) -> None:
    radshare_config(metrics_allow=("10.1.0.0/16",))
    before = scrape()
    study = make_study(organisation, ANNA)
    share, code = ready_share(organisation, [study], delivery="url", email="")
    mark_opened(share)
    sms = outbox.queue_sms_code(share, "123456", timezone.now() + timedelta(minutes=5))
    outbox.deliver(sms.pk)
    zip_bytes = len(get(logged_in_client(share), "/r/download/dicom.zip")[1])
    visitor = Client()
    visitor.get("/", {"code": code})
    for _ in range(5):
        visitor.post("/r/birth-date", {"accept_terms": "on", "birth_date": "01-01-1970"})
    after = scrape()

    org = {"organisation": "hospital-a"}
    assert value(after, "radshare_shares_created_total", delivery="url", recipient="patient", **org) == 1
    assert value(after, "radshare_shares_opened_total", **org) == 1
    assert value(after, "radshare_sms_sent_total", **org) == 1
    assert value(after, "radshare_ingest_studies_total", **org) == 1
    assert value(after, "radshare_ingest_instances_total", **org) == 2
    assert value(after, "radshare_ingest_bytes_total", **org) == study.size > 0
    assert value(after, "radshare_downloads_total", format="dicom", **org) == 1
    assert value(after, "radshare_download_bytes_total", format="dicom", **org) == zip_bytes
    assert value(after, "radshare_recipient_lockouts_total", **org) == 1
    assert value(after, "radshare_share_preparation_seconds_count", **org) == 1
    assert value(after, "radshare_share_preparation_seconds_bucket", le="+Inf", **org) == 1
    assert (
        sum(v for (name, _labels), v in after.items() if name == "radshare_shares") == 1
    )  # one share, any status
    assert value(after, "radshare_render_queue", state="pending") == 0  # all rendered
    assert value(after, "radshare_render_queue", state="presets") == 0  # the second pass too
    InstanceRender.objects.filter(instance__series__study=study).update(presets_due=True)
    assert (
        value(scrape(), "radshare_render_queue", state="presets") == 2
    )  # the CT's two images wait for theirs
    started = "recipients:start"
    assert (
        value(after, "radshare_http_requests_total", route=started, method="GET", status="302")
        - value(before, "radshare_http_requests_total", route=started, method="GET", status="302")
        == 1
    )
    posted = ("radshare_http_requests_total", "recipients:birth_date", "POST")
    moved = sum(
        v - before.get(k, 0)
        for k, v in after.items()
        if k[0] == posted[0]
        and dict(k[1]).get("route") == posted[1]
        and dict(k[1]).get("method") == posted[2]
    )
    assert moved == 5


@pytest.mark.django_db
def test_the_journal_backlog_on_this_machine(radshare_config: Any, organisation: Any, tmp_path: Path) -> None:
    radshare_config(metrics_allow=("10.1.0.0/16",), data_dir=str(tmp_path))
    assert not any(name.startswith("radshare_journal") for name, _labels in scrape())  # no journal here
    folder, lock = journal.claim_slot(tmp_path / "journal")  # as an SCP in journal mode holds it
    node = add_pacs_node(organisation, "JOURNALSCU")
    writer = journal.Writer(folder)
    meta = {"a": "1-1", "o": organisation.pk, "n": node.pk, "ae": "JOURNALSCU", "ip": "127.0.0.1"}
    for ds in ct_series(ANNA, count=3, size=16):
        writer.append(journal.INSTANCE, meta, encode(ds))
    samples = scrape()
    # Acknowledged, not filed, and never filed at all: waiting, and stuck (an indexer that filed nothing).
    assert (
        value(samples, "radshare_journal_waiting_bytes", folder=folder.name)
        == journal.split(writer.written)[1]
    )
    assert value(samples, "radshare_journal_stuck", folder=folder.name) == 1
    assert value(samples, "radshare_journal_held") == 0
    Indexer(folder, first_live_segment=1).pass_once()
    samples = scrape()
    assert value(samples, "radshare_journal_waiting_bytes", folder=folder.name) == 0
    assert value(samples, "radshare_journal_stuck", folder=folder.name) == 0
    writer.close()
    os.close(lock)
