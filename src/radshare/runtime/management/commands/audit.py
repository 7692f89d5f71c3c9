"""``radshare audit verify [--org SLUG]``, ``radshare audit checkpoint``, ``radshare audit prune``: the hash
chain of the audit trail for operators (docs/security.md A17).

The chain itself is ``audit.chain``, which knows organisations by id only; this command, above both, puts their
slugs on it. ``verify`` exits 1 and names the first entry of each chain that was changed, removed or inserted
behind radshare's back; exit 0 prints one line per chain: how many entries were checked, and from where.
``checkpoint`` and ``prune`` do at once what the worker does daily. Output holds ids, times and action codes only.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.utils import timezone

from radshare.audit import chain, services
from radshare.audit.chain import ChainReport
from radshare.organisations.management.commands._common import OperatorCommand, organisation
from radshare.organisations.models import Organisation


def _names(keys: list[str]) -> dict[str, str]:
    """Each chain's name: the organisation's slug, or "installation"."""
    ids = [pk for pk in map(chain.organisation_id, keys) if pk is not None]
    slugs = dict(Organisation.objects.filter(pk__in=ids).values_list("pk", "slug"))
    names = {}
    for key in keys:
        pk = chain.organisation_id(key)
        names[key] = chain.INSTALLATION if pk is None else slugs.get(pk, f"organisation {pk} (removed)")
    return names


def _summary(report: ChainReport) -> str:
    if report.last_seq == 0:
        return "no entries"
    first = report.last_seq - report.checked + 1
    start = (
        "from the start"
        if report.start is None
        else f"from the checkpoint of {timezone.localtime(report.start.created_at):%Y-%m-%d %H:%M:%S}"
    )
    entries = "entry" if report.checked == 1 else "entries"
    return (
        f"{report.checked} {entries} checked (#{first} to #{report.last_seq}, {start}), "
        f"{report.signatures} checkpoint signature{'' if report.signatures == 1 else 's'} checked"
    )


class Command(OperatorCommand):
    help = (
        "The audit trail's hash chain: `audit verify [--org SLUG]` recomputes it (exit 1 names what was changed, "
        "removed or inserted); `audit checkpoint` signs each chain's head now; `audit prune` removes the entries "
        "past RADSHARE_AUDIT_RETENTION_YEARS now."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser(
            "verify", help="recompute every chain (or one); exit 1 when one does not verify"
        )
        verify.add_argument("--org", metavar="SLUG", help="only this organisation's chain")
        sub.add_parser("checkpoint", help="sign the head of every chain that grew since its last checkpoint")
        sub.add_parser("prune", help="remove the entries past the retention period, up to a checkpoint")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "verify":
            self._verify(options["org"])
        elif options["action"] == "checkpoint":
            self._checkpoint()
        else:
            self._prune()

    def _verify(self, slug: str | None) -> None:
        keys = [chain.chain_key(organisation(slug).pk)] if slug else chain.chains()
        names = _names(keys)
        problems = []
        for report in chain.verify_all(keys):
            if report.ok:
                self.stdout.write(f"{names[report.chain]}: {_summary(report)}")
            else:
                problems.append(f"{names[report.chain]}: {report.problem}")
        if not keys:
            self.stdout.write("The audit trail is empty.")
        if problems:
            raise CommandError("\n".join(problems), returncode=1)

    def _checkpoint(self) -> None:
        signing = chain.write_checkpoints()
        names = _names([c.chain for c in signing.made] + list(signing.refused))
        for made in signing.made:
            self.stdout.write(
                f"{names[made.chain]}: checkpoint at #{made.seq}, signed with key {made.key_id}"
            )
        if not signing.made and not signing.refused:
            self.stdout.write("No chain grew since its last checkpoint.")
        if signing.refused:
            raise CommandError(
                "\n".join(f"{names[key]}: not signed: {problem}" for key, problem in signing.refused.items()),
                returncode=1,
            )

    def _prune(self) -> None:
        cutoff = chain.retention_cutoff()
        years = settings.RADSHARE.audit_retention_years
        pruned = services.prune()
        names = _names([p.chain for p in pruned])
        for done in pruned:
            entries = "entry" if done.deleted == 1 else "entries"
            self.stdout.write(
                f"{names[done.chain]}: {done.deleted} {entries} removed, up to #{done.through_seq} (its checkpoint)"
            )
        if not pruned:
            self.stdout.write(
                f"Nothing to remove: no chain has a checkpoint with only entries from before "
                f"{timezone.localtime(cutoff):%Y-%m-%d} ({years} years) behind it."
            )
