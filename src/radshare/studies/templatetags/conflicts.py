"""The portal navigation's count of open corrections from the PACS (organisation admins only)."""

from __future__ import annotations

from typing import Any

from django import template

from radshare.studies import conflicts

register = template.Library()


@register.simple_tag
def open_conflicts(user: Any) -> int:
    """How many corrections from the PACS wait for an admin of ``user``'s organisation; 0 for anyone else."""
    if not getattr(user, "is_org_admin", False):
        return 0
    return conflicts.open_conflict_count(getattr(user, "organisation_id", None))
