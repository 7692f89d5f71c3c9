"""Every action the audit trail knows (docs/security.md A16), with the words the trail page shows for it.

``record`` takes an ``Action`` only, so mypy finds an action that is not declared here. The stored value is the
dotted code (``share.revoke``): exports and queries keep working as new actions are added.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Action(models.TextChoices):
    # Staff authentication (organisations); the site is the portal or the operators' admin.
    PORTAL_LOGIN = "portal.login", _("Logged in to the portal")
    PORTAL_LOGIN_FAILED = "portal.login.failed", _("Portal login failed")
    PORTAL_LOGIN_THROTTLED = "portal.login.throttled", _("Portal login refused: too many attempts")
    PORTAL_LOGIN_SLOWED = "portal.login.slowed", _("Portal login slowed down")
    PORTAL_LOGIN_LOCKED = "portal.login.locked", _("Portal account locked")
    PORTAL_LOGOUT = "portal.logout", _("Logged out of the portal")
    # The second login step (docs/security.md A9): a code from an authenticator app (TOTP) or a recovery code.
    PORTAL_2FA_VERIFIED = "portal.2fa.verified", _("Portal login: code accepted")
    PORTAL_2FA_FAILED = "portal.2fa.failed", _("Portal login: wrong code")
    PORTAL_2FA_THROTTLED = "portal.2fa.throttled", _("Portal login: code refused, too many attempts")
    PORTAL_2FA_ENROLLED = "portal.2fa.enrolled", _("Portal login: authenticator app set up")
    PORTAL_2FA_RECOVERY_USED = "portal.2fa.recovery_used", _("Portal login: recovery code used")
    PORTAL_2FA_RECOVERY_CODES = "portal.2fa.recovery_codes", _("Portal login: new recovery codes made")
    PORTAL_2FA_RESET = "portal.2fa.reset", _("Two-step login reset by an organisation admin")
    ADMIN_LOGIN = "admin.login", _("Logged in to the operator admin")
    ADMIN_LOGIN_FAILED = "admin.login.failed", _("Operator admin login failed")
    ADMIN_LOGIN_THROTTLED = "admin.login.throttled", _("Operator admin login refused: too many attempts")
    ADMIN_LOGIN_SLOWED = "admin.login.slowed", _("Operator admin login slowed down")
    ADMIN_LOGIN_LOCKED = "admin.login.locked", _("Operator admin account locked")
    ADMIN_2FA_VERIFIED = "admin.2fa.verified", _("Operator admin login: code accepted")
    ADMIN_2FA_FAILED = "admin.2fa.failed", _("Operator admin login: wrong code")
    ADMIN_2FA_THROTTLED = "admin.2fa.throttled", _("Operator admin login: code refused, too many attempts")
    ADMIN_2FA_ENROLLED = "admin.2fa.enrolled", _("Operator admin login: authenticator app set up")
    ADMIN_2FA_RECOVERY_USED = "admin.2fa.recovery_used", _("Operator admin login: recovery code used")
    ADMIN_2FA_RECOVERY_CODES = "admin.2fa.recovery_codes", _("Operator admin login: new recovery codes made")
    ADMIN_2FA_RESET = "admin.2fa.reset", _("Two-step login reset by the operator")
    API_AUTH_FAILED = "api.auth.failed", _("API key refused")
    API_AUTH_THROTTLED = "api.auth.throttled", _("API refused: too many wrong keys from this address")
    KEYS_ROTATE = "keys.rotate", _("Keys rotated: stored values moved to the current key")
    AUDIT_PRUNE = "audit.prune", _("Old audit entries removed: their retention period is over")

    # The organisation's admin pages.
    PORTAL_APIKEY_CREATE = "portal.apikey.create", _("API key made")
    PORTAL_APIKEY_REVOKE = "portal.apikey.revoke", _("API key revoked")
    PORTAL_PACSNODE_CREATE = "portal.pacsnode.create", _("PACS node added")
    PORTAL_PACSNODE_EDIT = "portal.pacsnode.edit", _("PACS node changed")
    PORTAL_PACSNODE_DELETE = "portal.pacsnode.delete", _("PACS node removed")
    PORTAL_PACSNODE_TEST = "portal.pacsnode.test", _("PACS connection tested")
    PORTAL_CONFLICTS_LIST = "portal.conflicts.list", _("Corrections from the PACS viewed")
    PORTAL_CONFLICT_VIEW = "portal.conflict.view", _("Correction from the PACS opened")
    PORTAL_CONFLICT_ACCEPT = "portal.conflict.accept", _("Correction from the PACS accepted: study moved")
    PORTAL_CONFLICT_DISMISS = "portal.conflict.dismiss", _("Correction from the PACS dismissed")
    PORTAL_SENDER_LOG_ADMIN = "portal.sender.log_admin", _("Log administrator role given or taken away")
    PORTAL_AUDIT_VIEW = "portal.audit.view", _("Audit trail read")
    PORTAL_AUDIT_EXPORT = "portal.audit.export", _("Audit trail exported")
    # A sender's own account page.
    PORTAL_ACCOUNT_EMAIL = "portal.account.email", _("Own e-mail address changed")

    # Studies: what came in, and who looked.
    DICOM_ASSOCIATION_REJECTED = "dicom.association.rejected", _("DICOM sender refused")
    DICOM_STORE = "dicom.store", _("Images received")
    DICOM_STORE_CONFLICT = "dicom.store.conflict", _("Image received again with other content")
    DICOM_STORE_PATIENT_CONFLICT = (
        "dicom.store.patient_conflict",
        _("Images refused: their study is filed under another patient"),
    )
    PORTAL_UPLOAD = "portal.upload", _("Images uploaded")
    PORTAL_STUDIES_LIST = "portal.studies.list", _("Study list viewed")
    PORTAL_STUDY_VIEW = "portal.study.view", _("Study viewed")
    PORTAL_REPORT_VIEW = "portal.report.view", _("Report viewed")
    PORTAL_REPORT_ATTACH = "portal.report.attach", _("Report attached")
    API_STUDIES_LIST = "api.studies.list", _("Studies read through the API")
    PACS_QUERY = "pacs.query", _("PACS searched")
    PACS_RETRIEVE = "pacs.retrieve", _("Retrieved from the PACS")
    STUDY_DESTROY = "study.destroy", _("Study destroyed: images, renders and index removed")
    # Journal mode's held images (docs/operations.md "Journal mode"), by the operator's `radshare held`.
    HELD_FILE = "held.file", _("Held images filed after the correction")
    HELD_DELETE = "held.delete", _("Held images deleted")

    # A share's life.
    SHARE_CREATE = "share.create", _("Share made")
    SHARE_READY = "share.ready", _("Studies ready")
    SHARE_REVOKE = "share.revoke", _("Revoked")
    SHARE_EXPIRE = "share.expire", _("Expired")
    SHARE_RESEND = "share.resend", _("E-mail sent again (requested)")
    SHARE_UNLOCK = "share.unlock", _("Unlocked")
    SHARE_RETRY = "share.retry", _("Preparation started again")
    SHARE_LETTER = "share.letter", _("Letter made")
    # Onward sharing (docs/architecture.md "Onward shares"): the patient passes their share on to a care provider.
    SHARE_ONWARD_CREATE = "share.onward.create", _("Passed on by the patient to a care provider")
    SHARE_ONWARD_END = "share.onward.end", _("Passed-on share ended by the patient")
    SHARE_ONWARD_REVOKED = "share.onward.revoked", _("Passed-on share ended: the original share was revoked")
    SHARE_ONWARD_REFUSED = "share.onward.refused", _("Passing on refused")
    PORTAL_SHARES_LIST = "portal.shares.list", _("Share list viewed")
    PORTAL_SHARE_NEW = "portal.share.new", _("Share dialog opened")
    PORTAL_SHARE_VIEW = "portal.share.view", _("Share page viewed")
    PORTAL_SHARE_REVOKE = "portal.share.revoke", _("Revoke asked for")
    PORTAL_SHARE_RESEND = "portal.share.resend", _("Sending again asked for")
    PORTAL_SHARE_UNLOCK = "portal.share.unlock", _("Unlock asked for")
    PORTAL_SHARE_RETRY = "portal.share.retry", _("New preparation asked for")
    PORTAL_SHARE_LETTER = "portal.share.letter", _("Letter asked for")
    API_SHARE_VIEW = "api.share.view", _("Share read through the API")
    NOTIFICATION_SENT = "notification.sent", _("Notification sent")
    NOTIFICATION_FAILED = "notification.failed", _("Notification failed")

    # The recipient.
    RECIPIENT_CODE = "recipient.code", _("Recipient: link opened")
    RECIPIENT_BIRTH_DATE = "recipient.birth_date", _("Recipient: date of birth")
    RECIPIENT_SMS_CODE_SEND = "recipient.sms_code.send", _("Recipient: SMS code sent")
    RECIPIENT_SMS_CODE = "recipient.sms_code", _("Recipient: wrong SMS code")
    RECIPIENT_LOGIN = "recipient.login", _("Recipient logged in")
    RECIPIENT_LOGOUT = "recipient.logout", _("Recipient logged out")
    RECIPIENT_STUDIES_LIST = "recipient.studies.list", _("Recipient: study list")
    RECIPIENT_STUDY_VIEW = "recipient.study.view", _("Recipient: study viewed")
    RECIPIENT_REPORT_VIEW = "recipient.report.view", _("Recipient: report opened")
    RECIPIENT_DOWNLOAD_START = "recipient.download.start", _("Recipient: download started")
    RECIPIENT_DOWNLOAD_END = "recipient.download.end", _("Recipient: download ended")
    RECIPIENT_DICOMWEB_QUERY = "recipient.dicomweb.query", _("Recipient: DICOMweb search")
    RECIPIENT_DICOMWEB_RETRIEVE = "recipient.dicomweb.retrieve", _("Recipient: DICOMweb retrieve")
    RECIPIENT_DICOMWEB_METADATA = "recipient.dicomweb.metadata", _("Recipient: DICOMweb metadata")


def label(code: str) -> str:
    """The words for a stored action; an action no longer declared shows its code."""
    try:
        return str(Action(code).label)
    except ValueError:
        return code
