"""The migration that brought the hash chain (docs/security.md A17) links the entries written before it, in the
order they were written, and new entries continue those chains."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from radshare.audit import chain
from radshare.audit.actions import Action
from radshare.audit.models import GENESIS, AuditChainHead, AuditEvent
from radshare.audit.services import ActorType, record

BEFORE = [("audit", "0002_choice_labels")]


@pytest.fixture
def before_the_chain() -> Iterator[MigrationExecutor]:
    """The audit tables as they were before the chain; every migration applied again afterwards."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        yield executor
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_entries_written_before_are_linked_in_the_order_they_were_written(
    before_the_chain: MigrationExecutor,
) -> None:
    old = before_the_chain.loader.project_state(BEFORE).apps.get_model("audit", "AuditEvent")
    start = timezone.now() - dt.timedelta(days=30)
    written = [(7, 0), (None, 1), (7, 2), (7, 2), (None, 5), (8, 4)]  # organisation, minutes after start
    for n, (organisation, minutes) in enumerate(written):
        old.objects.create(
            timestamp=start + dt.timedelta(minutes=minutes),
            action="share.expire",
            outcome="success",
            actor_type="system",
            organisation_id=organisation,
            study_uids=["1.2.3"],
            detail={"n": n, "nested": {"b": 1, "a": [1.5, None, True]}},
        )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    ordered = list(AuditEvent.objects.filter(chain="org:7").order_by("seq"))
    assert [(e.seq, e.detail["n"]) for e in ordered] == [(1, 0), (2, 2), (3, 3)]  # the same time: by id
    assert ordered[0].prev_hash == GENESIS
    assert [e.detail["n"] for e in AuditEvent.objects.filter(chain=chain.INSTALLATION).order_by("seq")] == [
        1,
        4,
    ]
    assert dict(AuditChainHead.objects.values_list("chain", "seq")) == {
        "org:7": 3,
        "org:8": 1,
        "installation": 2,
    }
    assert [r.problem for r in chain.verify_all()] == ["", "", ""]
    record(Action.SHARE_EXPIRE, actor_type=ActorType.SYSTEM, organisation=7)  # the chain goes on
    report = chain.verify("org:7")
    assert (report.ok, report.checked, report.last_seq) == (True, 4, 4)
