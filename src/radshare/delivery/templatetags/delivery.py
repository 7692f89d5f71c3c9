"""Filters for the outbound messages' templates (``templates/delivery/<message>/``)."""

from __future__ import annotations

from django import template
from django.utils.html import urlize
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter(is_safe=True, needs_autoescape=True)
def link_urls(text: str, autoescape: bool = True) -> SafeString:
    """Plain text with its web addresses as links and the rest escaped: Django's ``urlize`` without the
    ``rel="nofollow"`` its filter adds for addresses that visitors post; the notices link to radshare's own pages.
    """
    return mark_safe(urlize(text, autoescape=autoescape))  # noqa: S308 - urlize escapes all but its own links
