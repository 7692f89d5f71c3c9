"""Audit entries in words a sender reads (the trail on a share's page); the words are the Action's labels."""

from __future__ import annotations

from django import template

from radshare.audit import actions

register = template.Library()


@register.filter
def action_label(action: str) -> str:
    return actions.label(action)
