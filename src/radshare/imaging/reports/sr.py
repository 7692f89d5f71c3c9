"""SR documents as readable text (PS3.3 C.17.2 SR Document General Module, C.17.3 SR Document Content Module,
C.18 Content Item Macros). Pure functions: a pydicom ``Dataset`` in, plain data out; the result holds no markup
(report text is untrusted: templates autoescape it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from pydicom.dataset import Dataset
from pydicom.uid import UID

from radshare.imaging.reports.values import (
    READ_ERRORS,
    as_str,
    code_meaning,
    date_and_time,
    format_date,
    format_datetime,
    format_time,
    parse_date,
    parse_datetime,
    parse_time,
    text_value,
)
from radshare.studies.templatetags.dicom import person_name

# A crafted SR must not take the page down: beyond these, the rest is left out (and the reader is told).
MAX_DEPTH = 24
MAX_ITEMS = 5000

# Labels for content items that have no Concept Name (allowed for by-value references, PS3.3 C.17.3.2.4).
DEFAULT_LABELS: dict[str, Promise] = {
    "IMAGE": _("Image"),
    "COMPOSITE": _("Document"),
    "WAVEFORM": _("Waveform"),
    "SCOORD": _("Coordinates"),
    "SCOORD3D": _("Coordinates"),
    "TCOORD": _("Time points"),
}
REFERENCE_TYPES = frozenset({"IMAGE", "COMPOSITE", "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD"})


@dataclass
class SrItem:
    """One content item (PS3.3 C.17.3.2): a heading (CONTAINER) or "concept name: value", with its children."""

    value_type: str
    name: str
    value: str = ""
    relationship: str = ""
    depth: int = 0
    children: list[SrItem] = field(default_factory=list)

    @property
    def is_heading(self) -> bool:
        return self.value_type == "CONTAINER"

    @property
    def is_reference(self) -> bool:
        """A pointer to an image, document, waveform or coordinates: shown as a short note."""
        return self.value_type in REFERENCE_TYPES

    @property
    def label(self) -> str:
        return self.name or str(DEFAULT_LABELS.get(self.value_type, ""))


@dataclass(frozen=True)
class Observer:
    name: str
    organisation: str = ""
    when: dt.datetime | dt.date | None = None

    @property
    def when_text(self) -> str:
        return format_datetime(self.when) if self.when is not None else ""

    def __str__(self) -> str:
        text = self.name or "?"
        if self.organisation:
            text += f" ({self.organisation})"
        return f"{text}, {self.when_text}" if self.when_text else text


def sr_status(completion_flag: str, verification_flag: str) -> str:
    """Completion and verification (PS3.3 C.17.2) in the reader's language, e.g. "final, verified"."""
    parts = []
    if completion_flag:
        parts.append(gettext("final") if completion_flag == "COMPLETE" else gettext("preliminary (partial)"))
    if verification_flag:
        parts.append(gettext("verified") if verification_flag == "VERIFIED" else gettext("not verified"))
    return ", ".join(parts)


@dataclass
class SrDocument:
    """A Structured Report as readable parts: title, status, date, authors and the content tree."""

    title: str
    sop_class_uid: str
    completion_flag: str = ""  # COMPLETE | PARTIAL (PS3.3 C.17.2)
    verification_flag: str = ""  # VERIFIED | UNVERIFIED
    content_datetime: dt.datetime | dt.date | None = None
    authors: list[str] = field(default_factory=list)
    verifiers: list[Observer] = field(default_factory=list)
    items: list[SrItem] = field(default_factory=list)
    truncated: bool = False  # deeper or longer than MAX_DEPTH / MAX_ITEMS: the rest is not shown

    @property
    def is_complete(self) -> bool:
        return self.completion_flag == "COMPLETE"

    @property
    def is_verified(self) -> bool:
        return self.verification_flag == "VERIFIED"

    @property
    def date_text(self) -> str:
        return format_datetime(self.content_datetime) if self.content_datetime is not None else ""

    @property
    def status(self) -> str:
        return sr_status(self.completion_flag, self.verification_flag)

    def as_text(self) -> str:
        """The report as plain text (UTF-8 safe, no markup), headings underlined, items indented by depth."""
        lines = [self.title, "=" * max(len(self.title), 3)]
        if self.status:
            lines.append(f"{gettext('Status')}: {self.status}")
        if self.date_text:
            lines.append(f"{gettext('Date')}: {self.date_text}")
        if self.authors:
            lines.append(f"{gettext('Author')}: {'; '.join(self.authors)}")
        if self.verifiers:
            lines.append(f"{gettext('Verified by')}: {'; '.join(str(v) for v in self.verifiers)}")
        lines.append("")
        for item, depth in _walk_items(self.items):
            lines.extend(_item_lines(item, depth))
        if self.truncated:
            lines += [
                "",
                f"({gettext('The report is longer than can be shown here; the rest is left out.')})",
            ]
        return "\n".join(lines).rstrip() + "\n"


def _walk_items(items: list[SrItem], depth: int = 0) -> Iterable[tuple[SrItem, int]]:
    for item in items:
        yield item, depth
        yield from _walk_items(item.children, depth + 1)


def _item_lines(item: SrItem, depth: int) -> list[str]:
    indent = "  " * depth
    if item.is_heading:
        return ["", f"{indent}{item.name}"] if item.name else []
    if item.is_reference:
        note = f"{item.label}: {item.value}" if item.value else item.label
        return [f"{indent}[{note}]"]
    first, *rest = item.value.split("\n") if item.value else [""]
    head = f"{indent}{item.label}: {first}" if item.label else f"{indent}{first}"
    return [head.rstrip()] + [f"{indent}  {line}".rstrip() for line in rest]


def _numeric(ds: Dataset) -> str:
    """NUM: value and unit (PS3.3 C.18.1 Numeric Measurement Macro); UCUM units by their code ("mm")."""
    measured = ds.get("MeasuredValueSequence") or []
    if not len(measured):
        return code_meaning(ds, "NumericValueQualifierCodeSequence")
    value = as_str(measured[0].get("NumericValue"))
    units = measured[0].get("MeasurementUnitsCodeSequence") or []
    unit = ""
    if len(units):
        code, scheme = as_str(units[0].get("CodeValue")), as_str(units[0].get("CodingSchemeDesignator"))
        if scheme == "UCUM" and code and not code.startswith("{"):
            unit = "" if code == "1" else code
        else:
            unit = as_str(units[0].get("CodeMeaning"))
    return f"{value} {unit}".strip()


def _reference(ds: Dataset) -> str:
    """IMAGE/COMPOSITE/WAVEFORM: the kind of object referenced (PS3.3 C.18.3-C.18.5), e.g. "CT Image";
    SCOORD/TCOORD: the graphic or temporal range type."""
    refs = ds.get("ReferencedSOPSequence") or []
    if len(refs):
        sop_class = UID(as_str(refs[0].get("ReferencedSOPClassUID")))
        name = sop_class.name
        return name.removesuffix(" Storage") if name and name != str(sop_class) else ""
    return as_str(ds.get("GraphicType") or ds.get("TemporalRangeType"))


def _item_value(ds: Dataset, value_type: str) -> str:
    """The value of one content item as text (PS3.3 C.17.3.2.1, Table C.17-5 value types)."""
    if value_type == "TEXT":
        return text_value(ds.get("TextValue"))
    if value_type == "CODE":
        return code_meaning(ds, "ConceptCodeSequence")
    if value_type == "NUM":
        return _numeric(ds)
    if value_type == "DATE":
        date = parse_date(ds.get("Date"))
        return format_date(date) if date else as_str(ds.get("Date"))
    if value_type == "TIME":
        time = parse_time(ds.get("Time"))
        return format_time(time) if time else as_str(ds.get("Time"))
    if value_type == "DATETIME":
        when = parse_datetime(ds.get("DateTime"))
        return format_datetime(when) if when else as_str(ds.get("DateTime"))
    if value_type == "PNAME":
        return person_name(as_str(ds.get("PersonName")))
    if value_type == "UIDREF":
        return as_str(ds.get("UID"))
    if value_type in REFERENCE_TYPES:
        return _reference(ds)
    return ""


class _Walker:
    """Walks a content tree depth-first within MAX_DEPTH and MAX_ITEMS (robust to missing or broken parts)."""

    def __init__(self) -> None:
        self.count = 0
        self.truncated = False

    def items(self, parent: Dataset, depth: int) -> list[SrItem]:
        result: list[SrItem] = []
        try:
            sequence = parent.get("ContentSequence") or []
        except READ_ERRORS:
            self.truncated = True
            return result
        for ds in sequence:
            if self.count >= MAX_ITEMS or depth >= MAX_DEPTH:
                self.truncated = True
                break
            item = self.item(ds, depth)
            if item is not None:
                result.append(item)
        return result

    def item(self, ds: Dataset, depth: int) -> SrItem | None:
        try:
            value_type = as_str(ds.get("ValueType")).upper()
            if not value_type:
                return None  # by-reference relationship (PS3.3 C.17.3.2.5): its target is shown where it is
            self.count += 1
            item = SrItem(
                value_type=value_type,
                name=code_meaning(ds, "ConceptNameCodeSequence"),
                value=_item_value(ds, value_type),
                relationship=as_str(ds.get("RelationshipType")),
                depth=depth,
            )
        except READ_ERRORS:
            self.truncated = True
            return None
        item.children = self.items(ds, depth + 1)
        return item


def observer_names(ds: Dataset, items: list[SrItem]) -> list[str]:
    """Authors: Author Observer Sequence (PS3.3 C.17.2, persons and devices), else the person observers of
    the document's observation context (TID 1002, HAS OBS CONTEXT PNAME items at the top of the tree)."""
    names: list[str] = []
    for observer in ds.get("AuthorObserverSequence") or []:
        if as_str(observer.get("ObserverType")) == "DEV":
            name = as_str(observer.get("DeviceObserverName")) or as_str(
                observer.get("DeviceObserverModelName")
            )
        else:
            name = person_name(as_str(observer.get("PersonName")))
        if name and name not in names:
            names.append(name)
    if not names:
        for item in items:
            if item.relationship == "HAS OBS CONTEXT" and item.value_type == "PNAME" and item.value:
                names.append(item.value)
    return names


def verifiers(ds: Dataset) -> list[Observer]:
    return [
        Observer(
            name=person_name(as_str(v.get("VerifyingObserverName"))),
            organisation=as_str(v.get("VerifyingOrganization")),
            when=parse_datetime(v.get("VerificationDateTime")),
        )
        for v in ds.get("VerifyingObserverSequence") or []
    ]


def document_datetime(ds: Dataset) -> dt.datetime | dt.date | None:
    """Content Date/Time (PS3.3 C.17.2, type 1), else the root's Observation DateTime, else creation date."""
    return (
        date_and_time(ds, "ContentDate", "ContentTime")
        or parse_datetime(ds.get("ObservationDateTime"))
        or date_and_time(ds, "InstanceCreationDate", "InstanceCreationTime")
    )


def sr_title(ds: Dataset) -> str:
    """Document title: the root container's Concept Name (PS3.3 C.17.3), else the series description."""
    return code_meaning(ds, "ConceptNameCodeSequence") or as_str(ds.get("SeriesDescription"))


def render_sr(ds: Dataset) -> SrDocument:
    """An SR document (Basic Text, Enhanced, Comprehensive, ...) as readable parts.

    Header from the SR Document General Module (PS3.3 C.17.2): completion and verification flags, content date and
    time, verifying observers, author observers. Body from the SR Document Content Module (PS3.3 C.17.3): the
    content tree walked depth-first; CONTAINER items are headings, TEXT/CODE/NUM/DATE/TIME/DATETIME/PNAME/UIDREF
    items "concept name: value", references to images and other objects a short note. Missing or broken parts
    are left out; the result never holds markup (escape it when writing HTML).
    """
    walker = _Walker()
    items = walker.items(ds, 0)
    return SrDocument(
        title=sr_title(ds) or gettext("Report"),
        sop_class_uid=as_str(ds.get("SOPClassUID")),
        completion_flag=as_str(ds.get("CompletionFlag")).upper(),
        verification_flag=as_str(ds.get("VerificationFlag")).upper(),
        content_datetime=document_datetime(ds),
        authors=observer_names(ds, items),
        verifiers=verifiers(ds),
        items=items,
        truncated=walker.truncated,
    )
