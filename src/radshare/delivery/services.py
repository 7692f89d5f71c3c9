"""What delivery does for a share (docs/architecture.md "A share's life"): it listens to the share's moments and
writes the messages they call for into the outbox, in the share's own transaction (docs/security.md R3); and the
sender's "send again", which the portal and the API both call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from radshare.audit.actions import Action
from radshare.delivery import outbox
from radshare.delivery.forms import ResendForm
from radshare.delivery.models import Notification
from radshare.shares.models import Share
from radshare.shares.services import Actor, ShareConflictError, ShareError, audit, locked_for_change


def on_share_ready(sender: object, share: Share, **kwargs: object) -> None:
    """A ready share delivered by e-mail gets its e-mail now."""
    if share.delivery == Share.Delivery.EMAIL:
        outbox.queue_share_email(share)


def on_share_opened(sender: object, share: Share, **kwargs: object) -> None:
    """The sender is told of the first login when they asked (docs/requirements.md B6.7)."""
    outbox.queue_opened_notice(share)


def on_share_ended(sender: object, share: Share, **kwargs: object) -> None:
    """Nothing unsent goes out for a share that ended."""
    outbox.drop_pending(share)


def on_share_revoked_by_correction(sender: object, share: Share, **kwargs: object) -> None:
    """The share was revoked because its study moved to another patient: its sender is told."""
    outbox.queue_revoked_notice(share)


def can_resend(share: Share) -> bool:
    return share.delivery == Share.Delivery.EMAIL and share.status in Share.OPENABLE


# What each notice to the sender would have told them, for the share's page when it did not reach them.
NOTICE_TEXTS: dict[str, Promise] = {
    Notification.Kind.OPENED: _("The recipient opened the share for the first time."),
    Notification.Kind.LOCKED: _("Wrong attempts locked the share."),
    Notification.Kind.REVOKED: _("The share was revoked after a correction from the PACS."),
}


@dataclass(frozen=True)
class UnsentNotice:
    """A notice to the sender that did not reach them: when, what it said, and whether for want of an address."""

    created_at: datetime
    text: str
    no_address: bool


def unsent_notices(share: Share) -> list[UnsentNotice]:
    return [
        UnsentNotice(n.created_at, str(NOTICE_TEXTS[n.kind]), n.last_error == outbox.NO_SENDER_ADDRESS)
        for n in outbox.unsent_sender_notices(share)
        if n.kind in NOTICE_TEXTS
    ]


def share_page(sender: object, share: Share, **kwargs: object) -> dict[str, Any]:
    """What the share's portal page shows of its delivery: the e-mail's state, the form to send it again, and the
    notices to the sender that could not be sent (no address, or delivery failed)."""
    return {
        "notification": outbox.link_notification(share),
        "resend_form": ResendForm(initial={"email": share.email}),
        "can_resend": can_resend(share),
        "unsent_notices": unsent_notices(share),
    }


def resend(share: Share, actor: Actor, email: str = "") -> Notification:
    """Send the e-mail with the link again, to a corrected address when one is given (B5.3)."""
    with transaction.atomic():
        share = locked_for_change(share)
        if share.delivery != Share.Delivery.EMAIL:
            raise ShareConflictError(
                "not_email", _("This share is not delivered by e-mail: print the letter or show the link.")
            )
        if share.status not in Share.OPENABLE:
            raise ShareConflictError(
                "not_ready", _("The e-mail goes out by itself as soon as the studies are ready.")
            )
        email = email.strip()
        changed = bool(email) and email != share.email
        if changed:
            try:
                validate_email(email)
            except ValidationError:
                raise ShareError("email_invalid", _("Enter a valid e-mail address."), "email") from None
            share.email = email
            share.save(update_fields=["email"])
        notification = outbox.queue_share_email(share)
        audit(Action.SHARE_RESEND, share, actor, email_changed=changed, notification=notification.pk)
    return notification
