"""Moments of a share's life that the apps above announce to their users (docs/architecture.md "A share's
life"). The shares app knows nothing of e-mail: delivery listens and writes to its outbox in the same transaction
(docs/security.md R3), so "ready" and "to be mailed" commit together.
"""

from django.dispatch import Signal

# Each is sent inside the transaction that changes the share, with ``share=``.
share_ready = Signal()  # every study is rendered: the recipient may be told
share_opened = Signal()  # the recipient's first login
share_ended = Signal()  # revoked or expired: nothing more goes out
# Sent after ``share_ended`` when the share was revoked because one of its studies moved to another patient (a
# correction from the PACS, ``shares/conflicts.py``): its sender is told.
share_revoked_by_correction = Signal()

# Sent by the share's portal page with ``share=``; each receiver returns a dict the page adds to its context.
share_page = Signal()
