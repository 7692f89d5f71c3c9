"""Audit entries in words a sender reads (the trail on a share's page); unknown actions show their code."""

from __future__ import annotations

from django import template
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

register = template.Library()

ACTION_LABELS: dict[str, Promise] = {
    "share.create": _("Share made"),
    "share.ready": _("Studies ready"),
    "share.revoke": _("Revoked"),
    "share.expire": _("Expired"),
    "share.resend": _("E-mail sent again (requested)"),
    "share.unlock": _("Unlocked"),
    "share.retry": _("Preparation started again"),
    "share.letter": _("Letter made"),
    "portal.share.view": _("Share page viewed"),
    "api.share.view": _("Share read through the API"),
    "notification.sent": _("Notification sent"),
    "notification.failed": _("Notification failed"),
    "recipient.code": _("Recipient: link opened"),
    "recipient.birth_date": _("Recipient: date of birth"),
    "recipient.sms_code.send": _("Recipient: SMS code sent"),
    "recipient.sms_code": _("Recipient: wrong SMS code"),
    "recipient.login": _("Recipient logged in"),
    "recipient.studies.list": _("Recipient: study list"),
    "recipient.study.view": _("Recipient: study viewed"),
    "recipient.report.view": _("Recipient: report opened"),
    "recipient.download.start": _("Recipient: download started"),
    "recipient.download.end": _("Recipient: download ended"),
    "recipient.logout": _("Recipient logged out"),
    "recipient.dicomweb.query": _("Recipient: DICOMweb search"),
    "recipient.dicomweb.retrieve": _("Recipient: DICOMweb retrieve"),
    "recipient.dicomweb.metadata": _("Recipient: DICOMweb metadata"),
    "pacs.query": _("PACS searched"),
    "pacs.retrieve": _("Retrieved from the PACS"),
}


@register.filter
def action_label(action: str) -> str:
    label = ACTION_LABELS.get(action)
    return str(label) if label is not None else action
