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


@register.filter
def person_initials(value: str) -> str:
    """The initials of a DICOM PN (PS3.5 6.2): given and middle names, then the family name, as a letter names
    someone without naming them: ``Jansen^Anna^Maria`` -> "A.M.J.", ``van der Berg^Jan`` -> "J.v.d.B."."""
    alphabetic = (value or "").split("=")[0]
    family, _, rest = alphabetic.partition("^")
    given = [w for part in rest.split("^")[:2] for w in part.replace("-", " ").split()]
    words = [w[0].upper() for w in given] + [w[0] for w in family.split()]
    return "".join(f"{initial}." for initial in words if initial.isalnum())
