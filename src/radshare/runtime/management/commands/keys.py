"""``radshare keys rotate`` and ``radshare keys status``: move what older keys made to the current key, and say
whether anything still needs an old one (docs/security.md A28).

To replace the secret key: set the new one as ``RADSHARE_SECRET_KEY`` and put the one it replaces first in
``RADSHARE_OLD_SECRET_KEYS``; restart every process (what the old key made keeps working); run ``radshare keys
rotate``; drop the old key once ``radshare keys status`` exits 0. What each step moves, and what it cannot, is
written in the app that owns the data (``<app>/rotation.py``). Output holds counts, key ids (which reveal nothing
of a key) and API key prefixes; never a code, a BSN or a password.
"""

from __future__ import annotations

import datetime as dt
from argparse import ArgumentParser
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core import signing
from django.core.management.base import CommandError
from django.utils import timezone

from radshare.audit import chain
from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.core import keys
from radshare.core.crypto import Rotation
from radshare.core.keys import Purpose
from radshare.delivery.rotation import rotate_secrets
from radshare.organisations.management.commands._common import OperatorCommand
from radshare.organisations.models import ApiKey
from radshare.organisations.rotation import api_keys_on_old_keys, rotate_pacs_secrets
from radshare.shares.rotation import rotate_codes, rotate_recipient_names
from radshare.studies.rotation import rotate_bsn_hashes


@dataclass(frozen=True)
class Step:
    name: str  # in the audit entry's detail
    one: str
    many: str
    run: Callable[..., Rotation]
    why_left: str  # why the step cannot move what it leaves


def rotate_checkpoints(*, apply: bool = True) -> Rotation:
    """Audit checkpoints are signed again by ``audit.chain``; one whose signature does not verify is left."""
    if not apply:
        return Rotation(moved=chain.checkpoints_on_old_keys())
    moved = chain.resign_checkpoints()
    return Rotation(moved=moved, left=chain.checkpoints_on_old_keys())


STEPS = (
    Step(
        "share_codes", "share code", "share codes", rotate_codes, "no listed key reads their encrypted copy"
    ),
    Step(
        "recipient_names",
        "name on a letter",
        "names on letters",
        rotate_recipient_names,
        "no listed key reads them: the letter is printed without the name",
    ),
    Step(
        "outbox_secrets",
        "message waiting to be sent",
        "messages waiting to be sent",
        rotate_secrets,
        "no listed key reads their secret",
    ),
    Step(
        "pacs_secrets",
        "PACS DICOMweb password",
        "PACS DICOMweb passwords",
        rotate_pacs_secrets,
        "no listed key reads them: enter them again on the PACS node's page",
    ),
    Step(
        "bsn",
        "patient's BSN",
        "patients' BSN",
        rotate_bsn_hashes,
        "none of their first stored images gives the BSN; they are found by BSN only while the old key is listed",
    ),
    Step(
        "audit_checkpoints",
        "audit checkpoint",
        "audit checkpoints",
        rotate_checkpoints,
        "their signature does not verify with the key they name (`radshare audit verify` says more)",
    ),
)


def count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _key_ids() -> tuple[str, list[str]]:
    current, *old = (keys.key_id(key) for key in keys.candidates(Purpose.HASHING))
    return current, old


def _api_key(key: ApiKey) -> str:
    used = timezone.localtime(key.last_used_at).strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never"
    return f"{key.prefix} ({key.name}, {key.organisation.slug}, last used {used})"


def _sessions_on_old_keys() -> tuple[int, dt.datetime | None]:
    """Sessions signed with a listed old key (they move when next used), and when the last of them ends."""
    store = SessionStore()
    found, last = 0, None
    live = Session.objects.filter(expire_date__gt=timezone.now()).values_list("session_data", "expire_date")
    for data, ends in live.iterator():
        if _signed_with(data, [settings.SECRET_KEY], store) or not _signed_with(
            data, settings.SECRET_KEY_FALLBACKS, store
        ):
            continue
        found += 1
        last = ends if last is None else max(last, ends)
    return found, last


def _signed_with(data: str, signing_keys: Sequence[str], store: SessionStore) -> bool:
    if not signing_keys:
        return False
    first, *others = signing_keys
    fallbacks: list[str | bytes] = [*others]
    try:
        signing.loads(
            data,
            key=first,
            fallback_keys=fallbacks,
            salt=store.key_salt,
            serializer=store.serializer,
        )
    except signing.BadSignature:
        return False
    return True


class Command(OperatorCommand):
    help = (
        "Key rotation (RADSHARE_OLD_SECRET_KEYS): `keys rotate` moves share codes, waiting messages, PACS "
        "passwords, patients' BSN hashes and audit checkpoints to the current key (API keys move when next "
        "used); `keys status` says what still needs an old key (exit 1) or that the old keys can go (exit 0)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("rotate", help="move what old keys made to the current key (safe to run again)")
        sub.add_parser("status", help="what still needs an old key; exit 0 when the old keys can be dropped")

    def handle(self, *args: Any, **options: Any) -> None:
        current, old = _key_ids()
        self.stdout.write(f"Current key: {current}; old keys: {', '.join(old) or '(none)'}")
        if options["action"] == "rotate":
            self._rotate(current)
        else:
            self._status(bool(old))

    def _rotate(self, current: str) -> None:
        done: dict[str, Any] = {"key": current}
        try:
            results = []
            for step in STEPS:
                result = step.run(apply=True)
                done[step.name] = asdict(result)
                results.append((step, result))
        except Exception:
            record(Action.KEYS_ROTATE, outcome=Outcome.FAILURE, **_operator(done))
            raise
        api = api_keys_on_old_keys()
        done["api_keys"] = {"waiting": len(api.waiting), "lost": len(api.lost)}
        record(Action.KEYS_ROTATE, **_operator(done))
        moved = [count(r.moved, s.one, s.many) for s, r in results if r.moved]
        self.stdout.write(f"Moved to the current key: {', '.join(moved)}." if moved else "Nothing to move.")
        still = [f"{count(r.left, s.one, s.many)} ({s.why_left})" for s, r in results if r.left]
        if api.waiting:
            still.append(f"{count(len(api.waiting), 'API key', 'API keys')} (moved when next used)")
        if still:
            self.stdout.write(f"Still under an old key: {'; '.join(still)}.")
        for key in api.lost:
            self.stdout.write(
                f"API key {_api_key(key)} was made under a key no longer listed: it no longer works"
            )
        self.stdout.write("`radshare keys status` says when RADSHARE_OLD_SECRET_KEYS can be emptied.")

    def _status(self, old_listed: bool) -> None:
        waiting = 0
        for step in STEPS:
            result = step.run(apply=False)
            waiting += result.moved + (result.left if old_listed else 0)
            line = f"{step.many}: {result.moved} under an old key"
            if result.left:
                line += f"; {result.left} that `keys rotate` cannot move: {step.why_left}"
            self.stdout.write(line)
        api = api_keys_on_old_keys()
        waiting += len(api.waiting)
        self.stdout.write(f"API keys: {len(api.waiting)} under an old key (each moves when next used)")
        for key in api.waiting:
            self.stdout.write(f"    {_api_key(key)}")
        for key in api.lost:
            self.stdout.write(f"    {_api_key(key)}: its key is no longer listed, it no longer works")
        sessions, last = _sessions_on_old_keys()
        if sessions and last is not None:
            ends = timezone.localtime(last).strftime("%Y-%m-%d %H:%M")
            self.stdout.write(
                f"Sessions: {sessions} signed with an old key (each moves when next used); dropping the key logs "
                f"them out (all have run out by {ends})"
            )
        if waiting:
            raise CommandError(
                f"under an old key still: {count(waiting, 'stored value', 'stored values')}; run `radshare keys "
                "rotate`, and keep RADSHARE_OLD_SECRET_KEYS until this says they can go",
                returncode=1,
            )
        self.stdout.write(
            "Nothing needs an old key: RADSHARE_OLD_SECRET_KEYS can be emptied."
            if old_listed
            else "Everything is under the current key."
        )


def _operator(detail: dict[str, Any]) -> dict[str, Any]:
    return {"actor_type": ActorType.OPERATOR, "actor_label": "radshare keys rotate", "detail": detail}
