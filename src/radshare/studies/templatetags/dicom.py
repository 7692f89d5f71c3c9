"""Template filters for DICOM values."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def person_name(value: str) -> str:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` (PS3.5 6.2) as people write it: "Family, Given Middle"."""
    alphabetic = (value or "").split("=")[0]  # the ideographic/phonetic groups are not shown
    family, _, rest = alphabetic.partition("^")
    given = " ".join(p for p in rest.split("^")[:2] if p)
    return f"{family}, {given}" if family and given else (family or given)
