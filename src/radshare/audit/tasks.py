"""The audit trail's daily jobs (docs/security.md A17): sign each chain's head, and prune what is past the
retention period. Checkpoints come first in the list; pruning needs one with only old entries behind it."""

from __future__ import annotations

from datetime import timedelta

from django.db import DatabaseError
from django.tasks import task

from radshare.audit import chain, services
from radshare.core.tasks import Periodic, retry


@task()
def write_checkpoints(attempt: int = 0) -> int:
    """Periodic: a signed checkpoint of every chain that grew since its last one."""
    try:
        return len(chain.write_checkpoints().made)
    except DatabaseError:
        retry(write_checkpoints, attempt=attempt)
        return 0


@task()
def prune_audit(attempt: int = 0) -> int:
    """Periodic: delete the entries past ``RADSHARE_AUDIT_RETENTION_YEARS`` (up to a checkpoint)."""
    try:
        return sum(pruned.deleted for pruned in services.prune())
    except DatabaseError:
        retry(prune_audit, attempt=attempt)
        return 0


PERIODIC = (
    Periodic("audit.checkpoint", timedelta(days=1), write_checkpoints),
    Periodic("audit.prune", timedelta(days=1), prune_audit),
)
